"""tools/analysis/fixnorm_tune.py: real short trainings of the demo segmentor."""
import os.path as osp

import pytest
import torch

from conftest import SEG_DEMO, load_tool


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/fixnorm_tune.py')


def test_two_stage_tuning_reports_the_best_trial_and_resumes(tool, make_cfg, tmp_path,
                                                             capsys):
    path = str(tmp_path / 'tiny_fcn.py')
    make_cfg(SEG_DEMO, iters=2).dump(path)
    root = str(tmp_path / 'tune')
    argv = [path, '--lrs', '0.01', '0.04', '--base-classifier-norm', '2',
            '--classifier-norms', '2', '0.5', '--work-dir-root', root]
    result = tool.main(argv)
    out = capsys.readouterr().out

    trials = result['trials']
    # Stage 1: both lrs at the base norm; stage 2: only the new norm, at the best lr.
    assert [(t['stage'], t['classifier_norm']) for t in trials] == [
        ('lr', 2.0), ('lr', 2.0), ('norm', 0.5)]
    assert [t['lr'] for t in trials[:2]] == [0.01, 0.04]
    assert all(t['status'] == 'done' for t in trials), [t['status'] for t in trials]
    values = [t['metrics']['mIoU'] for t in trials]
    stage1_best = trials[values.index(max(values[:2]))]
    assert trials[2]['lr'] == stage1_best['lr']
    assert result['metric'] == 'mIoU'
    assert result['value'] == max(values)
    best = trials[values.index(max(values))]
    assert (result['lr'], result['classifier_norm']) == (best['lr'], best['classifier_norm'])
    assert f'best: lr={best["lr"]:g}, classifier_norm={best["classifier_norm"]:g}' in out
    assert out.count('cn2') >= 2 and 'lr' in out

    # Each trial trained with its pair: FixNorm held both class-logit layers at
    # the trial's norm and the optimizer ran at the trial's lr with no decay.
    for trial in trials:
        checkpoint = torch.load(osp.join(trial['work_dir'], 'iter_2.pth'), map_location='cpu')
        for name in ('decode_head.conv_seg.weight', 'auxiliary_head.conv_seg.weight'):
            norm = float(checkpoint['state_dict'][name].norm())
            assert norm == pytest.approx(trial['classifier_norm'], rel=1e-5), name
        groups = checkpoint['optimizer']['param_groups']
        assert all(g['lr'] == pytest.approx(trial['lr']) for g in groups)
        assert all(g['weight_decay'] == 0.0 for g in groups)

    # Running the same command again trains nothing and gives the same answer.
    again = tool.main(argv)
    assert 'done before, reused' in capsys.readouterr().out
    assert (again['lr'], again['classifier_norm']) == (result['lr'], result['classifier_norm'])


@pytest.mark.parametrize('argv, error, message', [
    (['--lrs', '0', '0.1'], ValueError, "--lrs: every value must be a positive number, got 0.0"),
    (['--classifier-norms', '-1'], ValueError,
     '--classifier-norms: every value must be a positive number, got -1.0'),
])
def test_bad_values_are_refused_before_training(tool, tmp_path, argv, error, message):
    with pytest.raises(error, match=message):
        tool.main([SEG_DEMO, '--work-dir-root', str(tmp_path), *argv])
    assert not osp.exists(osp.join(str(tmp_path), tool.RESULTS))


def test_config_with_other_custom_hooks_is_a_clear_error(tool, tmp_path):
    child = tmp_path / 'with_hooks.py'
    child.write_text(f'_base_ = [{SEG_DEMO!r}]\n'
                     "custom_hooks = [dict(type='EMAHook')]\n")
    with pytest.raises(ValueError, match=r"custom_hooks \['EMAHook'\] without a FixNormHook"):
        tool.main([str(child), '--work-dir-root', str(tmp_path / 'root')])


def test_config_that_has_a_fixnorm_hook_is_used_as_is(tool, tmp_path):
    child = tmp_path / 'own.py'
    child.write_text(f'_base_ = [{SEG_DEMO!r}]\n'
                     "custom_hooks = [dict(type='EMAHook'), dict(type='FixNormHook')]\n")
    config, index = tool.prepare_config(str(child), str(tmp_path / 'out'))
    assert (config, index) == (str(child), 1)
    config, index = tool.prepare_config(SEG_DEMO, str(tmp_path / 'out'))
    assert config.endswith('fcn_r18-d8_shapes_fixnorm.py') and index == 0
