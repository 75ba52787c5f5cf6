"""mmwrs installed as a user installs it, used from a config outside this repository.

mmwrs is installed with pip into a folder of its own (``--target``, ``--no-deps``:
the stack is the environment's), and everything then runs from a temporary
folder with that folder on ``PYTHONPATH``, never this checkout.
"""
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import DET_DEMO, REPO

SKIP = shutil.ignore_patterns('.git', '.venv*', 'work_dirs', 'data', 'build', '*.egg-info',
                              '__pycache__', 'docs', '.pytest_cache')


def _pip(*args, cwd):
    return subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    """A clean copy of the checkout (an in-tree build would reuse a stale build/)."""
    src = tmp_path_factory.mktemp('src') / 'mmwrs'
    shutil.copytree(REPO, src, symlinks=True, ignore=SKIP)
    return src


@pytest.fixture(scope='module')
def site(source, tmp_path_factory):
    target = tmp_path_factory.mktemp('site')
    result = _pip('install', '--no-deps', '--no-build-isolation', '--no-cache-dir',
                  '--target', str(target), str(source), cwd=str(target))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return target


def _user_env(site):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['PYTHONPATH'] = str(site)
    return env


def _python(code, site, cwd):
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=str(cwd),
                          env=_user_env(site), capture_output=True, text=True, timeout=600)


def test_package_ships_overlays_and_license(site, tmp_path):
    for folder in ('configs/regularizers', '.mim/configs/regularizers'):
        files = glob.glob(str(site / 'mmwrs' / folder / '*.py'))
        assert {'wrs.py', 'wd.py', 'fixnorm.py'} <= {osp.basename(f) for f in files}, folder
        assert not any(osp.islink(f) for f in files)
    assert (site / 'mmwrs' / '.mim' / 'model-index.yml').is_file()
    licenses = glob.glob(str(site / 'mmwrs-*.dist-info' / '**' / 'LICENSE*'), recursive=True)
    assert licenses and 'Apache License' in open(licenses[0]).read()
    result = _python('''
        import mmwrs
        print(mmwrs.__file__)
    ''', site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(site))
    printed = subprocess.run([sys.executable, '-m', 'mmwrs.configs', 'wrs'], cwd=str(tmp_path),
                             env=_user_env(site), capture_output=True, text=True)
    assert printed.stdout.strip() == str(site / 'mmwrs' / 'configs' / 'regularizers' / 'wrs.py')


def test_scoped_overlay_from_a_config_outside_the_repo(site, tmp_path):
    (tmp_path / 'my_wrs.py').write_text(
        "_base_ = ['mmwrs::regularizers/wrs.py']\n"
        "custom_hooks = [dict(type='WRSHook', target_norm='init')]\n")
    result = _python('''
        import mmwrs  # registers the mmwrs:: scope; mmwrs's own tools do this first
        from mmengine.config import Config
        from mmengine.registry import HOOKS
        cfg = Config.fromfile('my_wrs.py')
        hook = HOOKS.build(cfg.custom_hooks[0])
        print(type(hook).__name__, cfg.custom_imports.imports, hook.controller.target_norm)
    ''', site, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['WRSHook', "['mmwrs']", 'init']


def _mmdet_train_py():
    """mmdet's own tools/train.py, as its wheel ships it."""
    path = osp.join(osp.dirname(importlib.util.find_spec('mmdet').origin), '.mim', 'tools',
                    'train.py')
    assert osp.isfile(path), path
    return path


def test_mmdet_own_train_py_with_wrs_then_resume(site, make_cfg, tmp_path):
    """custom_imports + default_hooks in a user's config: the README's first example."""
    stock = make_cfg(DET_DEMO, iters=2)  # the demo detector, shrunk; no mmwrs in it
    stock.dump(str(tmp_path / 'stock_tiny.py'))
    (tmp_path / 'my_faster_rcnn_wrs.py').write_text(
        "_base_ = ['./stock_tiny.py']\n"
        "custom_imports = dict(imports=['mmwrs'], allow_failed_imports=False)\n"
        "default_hooks = dict(wrs=dict(type='WRSHook'))\n")
    work_dir = tmp_path / 'work_dir'
    command = [sys.executable, _mmdet_train_py(), 'my_faster_rcnn_wrs.py',
               '--work-dir', str(work_dir)]

    def run(*extra):
        result = subprocess.run(command + list(extra), cwd=str(tmp_path), env=_user_env(site),
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout + result.stderr

    def norms(checkpoint_name):
        checkpoint = torch.load(work_dir / checkpoint_name, map_location='cpu',
                                weights_only=False)
        names = sorted(checkpoint['wrs']['rescaler']['targets'])
        state = checkpoint['state_dict']
        return names, torch.cat([state[n].flatten(1).norm(dim=1) for n in names])

    log = run()
    # The start-up table, and the mmwrs that ran is the installed one.
    match = re.search(r'WRSHook: (\d+) weights \([\d,]+ parameters, [\d.]+% of the model\) '
                      r'held at their target norm', log)
    assert match and int(match.group(1)) >= 20, log[-3000:]
    names, filter_norms = norms('iter_2.pth')
    assert len(names) == int(match.group(1))
    assert torch.allclose(filter_norms, torch.ones_like(filter_norms), atol=1e-4)

    log = run('--resume', '--cfg-options', 'train_cfg.max_iters=4')
    assert 'resumed epoch: 0, iter: 2' in log
    _, filter_norms = norms('iter_4.pth')
    assert torch.allclose(filter_norms, torch.ones_like(filter_norms), atol=1e-4)
    checkpoint = torch.load(work_dir / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert checkpoint['meta']['iter'] == 4


@pytest.mark.parametrize('extra', ['det', 'seg'])
def test_pip_install_proposes_no_change_to_the_stack(source, tmp_path, extra):
    """``pip install .[det]`` into an environment with torch and mmcv installs only mmwrs."""
    report = tmp_path / 'report.json'
    result = _pip('install', '--dry-run', '--no-build-isolation', '--no-cache-dir',
                  '--report', str(report), f'{source}[{extra}]', cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    planned = {item['metadata']['name'].lower(): item['metadata']['version']
               for item in json.loads(report.read_text())['install']}
    assert set(planned) == {'mmwrs'}, planned
