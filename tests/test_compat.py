"""mmwrs.compat: the supported-version check, and each fix applied only where needed."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

import mmwrs
from mmwrs import compat

from conftest import REPO


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's mmwrs."""
    prelude = f'import sys; sys.path.insert(0, {REPO!r})\n'
    return subprocess.run([sys.executable, '-c', prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


def _import_with_versions(fake: dict) -> subprocess.CompletedProcess:
    """``import mmwrs`` with the version strings the check reads replaced."""
    return _python(f'''
        import importlib.metadata as metadata
        real = metadata.version
        metadata.version = lambda name: {fake!r}.get(name) or real(name)
        import mmwrs
    ''')


def test_version_numbers():
    assert compat.version_tuple('2.1.2+cu121') == (2, 1, 2)
    assert compat.version_tuple('2.0.0rc4') == (2, 0, 0)
    assert compat.version_tuple('0.10') == (0, 10, 0)
    assert compat.in_range('0.10.7', '0.10.0', '1.0.0')
    assert not compat.in_range('1.0.0', '0.10.0', '1.0.0')
    assert not compat.in_range('0.9.1', '0.10.0', '1.0.0')
    assert compat.in_range('2.13.0+cpu', '2.0.0')
    with pytest.raises(ValueError, match="'dev'"):
        compat.version_tuple('dev')


def test_installed_stack_is_supported_and_imports():
    result = _python('import mmwrs, torch, mmengine; print(mmwrs.__version__)')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mmwrs.__version__


def test_unsupported_versions_stop_with_one_message():
    result = _import_with_versions({'mmengine': '0.9.1', 'mmdet': '2.28.2'})
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: mmwrs ')
    # Both offenders, with their installed versions, and every supported range.
    assert 'mmengine 0.9.1' in last and 'mmdet 2.28.2' in last
    for supported in ('torch>=2.0.0', 'mmengine>=0.10.0,<1.0.0', 'mmdet>=3.0.0,<4.0.0',
                      'mmsegmentation>=1.0.0,<2.0.0'):
        assert supported in last
    assert 'compatibility table' in last
    # No AttributeError from inside a patch: the check comes first.
    assert 'AttributeError' not in result.stderr


@pytest.mark.parametrize('fake, named', [
    ({'torch': '1.13.1'}, 'torch 1.13.1'),
    ({'mmengine': '1.0.0'}, 'mmengine 1.0.0'),
    ({'mmsegmentation': '0.30.0'}, 'mmsegmentation 0.30.0'),
])
def test_each_range_is_checked(fake, named):
    result = _import_with_versions(fake)
    assert result.returncode != 0
    assert f'does not support the installed {named}.' in result.stderr


def test_checkpoint_allow_list_only_where_torch_loads_safely_by_default():
    assert compat.needs_checkpoint_allow_list('2.6.0', 'torch.load(filename, map_location)')
    assert compat.needs_checkpoint_allow_list('2.13.0+cpu', 'torch.load(f)')
    # torch < 2.6 does not load in safe mode by default (and before 2.4 has no
    # add_safe_globals at all).
    assert not compat.needs_checkpoint_allow_list('2.5.1', 'torch.load(f)')
    assert not compat.needs_checkpoint_allow_list('2.1.2+cu121', 'torch.load(f)')
    # An mmengine that says weights_only itself needs no allow-list.
    assert not compat.needs_checkpoint_allow_list('2.13.0', 'torch.load(f, weights_only=False)')


def test_fixes_applied_on_import_match_this_stack():
    result = _python('''
        import torch, mmwrs
        from mmengine.fileio.backends import local_backend
        from mmengine.logging import HistoryBuffer
        from mmwrs import compat
        from mmwrs.compat.atomic_checkpoints import atomic_put
        from mmwrs.compat.history_buffer import getstate_without_builtin_statistics
        allowed = (HistoryBuffer in torch.serialization.get_safe_globals()
                   if hasattr(torch.serialization, 'get_safe_globals') else False)
        print('allow-list', allowed)
        print('getstate', HistoryBuffer.__getstate__ is getstate_without_builtin_statistics)
        print('atomic-put', local_backend.LocalBackend.put is atomic_put)
        compat.apply_tool_fixes()
        print('atomic-put after tool fixes', local_backend.LocalBackend.put is atomic_put)
    ''')
    assert result.returncode == 0, result.stderr
    lines = dict(line.rsplit(' ', 1) for line in result.stdout.strip().splitlines())
    safe_by_default = compat.in_range(torch.__version__, '2.6.0')
    assert lines['allow-list'] == str(safe_by_default)
    assert lines['getstate'] == 'True'  # mmengine 0.10.x on both tested stacks
    # Kill-safe checkpoint writes are what mmwrs's tools promise, not import mmwrs.
    assert lines['atomic-put'] == 'False'
    assert lines['atomic-put after tool fixes'] == 'True'


def test_mmengine_fixes_stay_off_outside_the_versions_they_were_written_for(monkeypatch):
    import mmengine
    from mmengine.dist import utils
    from mmengine.logging import HistoryBuffer
    from mmengine.runner import Runner

    getstate, init_dist = HistoryBuffer.__getstate__, utils._init_dist_pytorch
    resume = Runner.resume
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    assert compat.picklable_history_buffers() is False
    assert compat.cpu_distributed_init() is False
    assert compat.kill_safe_checkpoints() is False
    assert compat.guard_resume() is False
    assert HistoryBuffer.__getstate__ is getstate
    assert utils._init_dist_pytorch is init_dist and Runner.resume is resume


def test_a_fix_applies_once_and_only_in_its_range(monkeypatch):
    import mmengine

    from mmwrs.compat import patching
    calls = []
    needed = [True]

    @patching.version_fix('mmengine', '0.10.0', '0.11.0', needed=lambda: needed[0])
    def example_fix():
        calls.append(1)

    needed[0] = False
    assert example_fix() is False and calls == []
    needed[0] = True
    assert example_fix() is True and example_fix() is True and calls == [1]
    assert 'test_compat.test_a_fix_applies_once_and_only_in_its_range.<locals>.example_fix' \
        in patching.installed
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    assert example_fix() is False and calls == [1]
    # Every fix mmwrs ships goes through the same mechanism.
    assert all(hasattr(fix, '__wrapped__') for fix in compat.FIXES_ON_IMPORT + compat.TOOL_FIXES)


def test_torch_2_1_style_loading_still_reads_checkpoints(tmp_path):
    """A checkpoint's message hub round-trips with the getstate fix on any torch."""
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    path = tmp_path / 'hub.pth'
    torch.save({'buffer': buffer}, path)
    loaded = torch.load(path, weights_only=False)['buffer']
    assert loaded.current() == 1.5 and loaded.mean() == 1.5


def test_overlay_paths_and_scope(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import HOOKS

    from mmwrs.configs import main, overlay_path, overlays
    assert {'wd', 'wrs', 'fixnorm', 'sgdp', 'adamp', 'ws', 'eps_l2', 'ws_eps_l2',
            'wrs_adamw'} <= set(overlays())
    assert overlay_path('wrs').endswith(osp.join('mmwrs', 'configs', 'regularizers', 'wrs.py'))
    with pytest.raises(ValueError, match="no regularizer overlay named 'wsr'.*'wrs'"):
        overlay_path('wsr')
    assert main([]) == 1
    # The repo's configs/_base_/regularizers is the same folder (experiment configs).
    assert osp.samefile(osp.join(REPO, 'configs/_base_/regularizers/wrs.py'), overlay_path('wrs'))
    user = tmp_path / 'user.py'
    user.write_text("_base_ = ['mmwrs::regularizers/ws_eps_l2.py']\n")
    cfg = Config.fromfile(str(user))
    assert [h['type'] for h in cfg.custom_hooks] == [
        'WeightStandardizationHook', 'EpsShiftedL2Hook']
    assert all(h['_scope_'] == 'mmwrs' for h in cfg.custom_hooks)
    # Built in the mmwrs scope, the hooks resolve from mmengine's root registry.
    hook = HOOKS.build(cfg.custom_hooks[1])
    assert type(hook).__name__ == 'EpsShiftedL2Hook'
