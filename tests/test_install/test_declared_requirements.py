"""setup.py declares ranges, in step with what `import mmwrs` checks."""
import os.path as osp
import runpy
import setuptools

import pytest

from mmwrs.compat import SUPPORTED

from conftest import REPO


@pytest.fixture(scope='module')
def declared():
    captured = {}
    patch = pytest.MonkeyPatch()
    patch.setattr(setuptools, 'setup', lambda **kwargs: captured.update(kwargs))
    try:
        runpy.run_path(osp.join(REPO, 'setup.py'), run_name='__main__')
    finally:
        patch.undo()
    return captured


def _range(requirements, name):
    found = [r for r in requirements if r.split('>')[0].split('=')[0].split('<')[0] == name]
    assert len(found) == 1, (name, requirements)
    return found[0][len(name):]


def test_no_exact_pins_and_no_torch(declared):
    everything = declared['install_requires'] + sum(declared['extras_require'].values(), [])
    assert not any(r.startswith('torch') for r in everything)  # torch is the user's
    pinned = [r for r in everything if '==' in r]
    # The tests' reference implementation, and the lint tools (isort versions format
    # differently, so the pre-commit revisions).
    assert pinned == ['adamp==0.3.0', 'flake8==7.5.0', 'isort==9.0.2']
    assert set(declared['extras_require']) == {'det', 'seg', 'tests'}


def test_ranges_match_the_import_check(declared):
    def as_range(name):
        lowest, highest = SUPPORTED[name]
        return f'>={lowest}' + (f',<{highest}' if highest else '')
    assert _range(declared['install_requires'], 'mmengine') == as_range('mmengine')
    assert _range(declared['extras_require']['det'], 'mmdet') == as_range('mmdet')
    assert _range(declared['extras_require']['seg'], 'mmsegmentation') \
        == as_range('mmsegmentation')
    assert _range(declared['extras_require']['det'], 'mmcv') \
        == _range(declared['extras_require']['seg'], 'mmcv') == '>=2.0.0rc4,<2.2.0'


def test_tests_extra_is_what_setup_env_and_make_lint_install(declared):
    listed = []
    for name in ('tests.txt', 'lint.txt'):
        with open(osp.join(REPO, 'requirements', name)) as f:
            listed += [line.strip() for line in f if line.strip() and not line.startswith('#')]
    assert declared['extras_require']['tests'] == listed


def test_constraints_files_pin_each_tested_stack(declared):
    for name, torch in (('pinned-torch2.13.txt', '2.13.0'), ('classic-torch2.1.txt', '2.1.2')):
        with open(osp.join(REPO, 'requirements', 'constraints', name)) as f:
            pins = dict(line.strip().split('==') for line in f
                        if line.strip() and not line.startswith('#'))
        assert pins['torch'] == torch
        # Every tested stack lies inside the declared ranges.
        from mmwrs.compat import in_range
        for package in ('mmengine', 'mmdet', 'mmsegmentation', 'torch'):
            assert in_range(pins[package], *SUPPORTED[package]), (name, package)
