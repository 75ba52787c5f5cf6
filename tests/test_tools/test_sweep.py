"""tools/analysis/sweep.py: a real tiny grid on the demo segmentor, killed and resumed."""
import json
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from conftest import REPO, SEG_DEMO, load_tool

SWEEP = osp.join(REPO, 'tools/analysis/sweep.py')


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/sweep.py')


@pytest.fixture
def tiny_config(make_cfg, tmp_path):
    path = str(tmp_path / 'tiny_fcn.py')
    make_cfg(SEG_DEMO, iters=2).dump(path)
    return path


def test_killed_sweep_resumes_without_retraining_and_reports(tool, tiny_config, tmp_path,
                                                             capsys):
    sweep_dir = tmp_path / 'sweep'
    argv = [tiny_config, '--sweep-dir', str(sweep_dir), '--decays', '1e-4', '1e-3',
            '--seeds', '0', '--iters', '2', '--monitor-interval', '1']
    runs = sweep_dir / 'runs'
    first, second = runs / 'wd0.0001_seed0', runs / 'wd0.001_seed0'
    # A sweep killed as a whole (its own process group: the sweep and the
    # training it runs) once the first run is done and the second has started.
    process = subprocess.Popen([sys.executable, SWEEP, *argv], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.time() + 300
    while not (first / 'done.json').exists() or not (second / 'train.log').exists():
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.time() < deadline, 'the first run did not finish in 300 s'
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (second / 'done.json').exists()
    assert '[sweep] 1/3 wd=0.0001 seed=0 ... done mIoU=' in process.stdout.read()
    finished = {p: os.stat(first / p).st_mtime_ns for p in ('done.json', 'train.log')}

    assert tool.main(argv) == 0
    out = capsys.readouterr().out
    assert '[sweep] 1/3 wd=0.0001 seed=0 ... already done mIoU=' in out
    assert '[sweep] 2/3 wd=0.001 seed=0 ... restarting' in out
    assert '[sweep] 3/3 wrs seed=0 ... training' in out
    assert {p: os.stat(first / p).st_mtime_ns for p in finished} == finished  # not retrained
    # The restarted run started clean: one training in its log, not two.
    with open(second / 'train.log') as f:
        assert f.read().count('$ ') == 1

    for run, decay in (('wd0.0001_seed0', 1e-4), ('wd0.001_seed0', 1e-3),
                       ('wrs_seed0', None)):
        with open(runs / run / 'done.json') as f:
            done = json.load(f)
        assert 0.0 <= done['metrics']['mIoU'] <= 100.0
        # The decay each run trained with (WRS: 0 on the rescaled weights, the
        # config's 5e-4 on the rest).
        checkpoint = torch.load(runs / run / 'iter_2.pth', map_location='cpu')
        decays = {g['weight_decay'] for g in checkpoint['optimizer']['param_groups']}
        assert decays == ({decay} if decay else {0.0, 5e-4}), run

    # Every run trained with the monitor appended to its overlay's hooks.
    composed = Config.fromfile(str(sweep_dir / 'configs' / 'wrs_seed0.py'))
    assert [h['type'] for h in composed.custom_hooks] == ['WRSHook', 'NormMonitorHook']

    results = json.loads((sweep_dir / 'results.json').read_text())
    assert results['metric'] == 'mIoU' and results['done'] == results['total'] == 3
    assert list(results['settings']) == ['wd=0.0001', 'wd=0.001', 'wrs']
    table = (sweep_dir / 'results.md').read_text()
    for setting in ('wd=0.0001', 'wd=0.001', 'wrs'):
        entry = results['settings'][setting]
        assert f'| {setting} |' in table and f'{entry["mean"]:.4f} (one seed)' in table
    assert 'spread (max - min of the means)' in table
    assert (sweep_dir / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    # --collect alone rebuilds the same results without training.
    os.remove(sweep_dir / 'results.json')
    assert tool.main([*argv, '--collect']) == 0
    assert json.loads((sweep_dir / 'results.json').read_text()) == results


def test_slurm_emission_writes_scripts_for_runs_not_done(tool, tiny_config, tmp_path, capsys):
    sweep_dir = tmp_path / 'sweep'
    done_dir = sweep_dir / 'runs' / 'wd0.0001_seed0'
    done_dir.mkdir(parents=True)
    (done_dir / 'done.json').write_text(json.dumps(dict(metrics={'mIoU': 50.0})))
    argv = [tiny_config, '--sweep-dir', str(sweep_dir), '--decays', '1e-4', '--seeds', '0', '1',
            '--regularizers', 'wrs', 'sgdp', '--iters', '40', '--slurm', 'cpu',
            '--gpus', '2', '--gpus-per-node', '0', '--cpus-per-task', '1',
            '--cfg-options', 'train_dataloader.batch_size=4']
    assert tool.main(argv) == 0
    scripts = sorted(os.listdir(sweep_dir / 'slurm'))
    assert scripts == ['sgdp_seed0.sh', 'sgdp_seed1.sh', 'wd0.0001_seed1.sh',
                       'wrs_seed0.sh', 'wrs_seed1.sh']
    assert 'wd=0.0001 seed=0 ... already done' in capsys.readouterr().out

    text = (sweep_dir / 'slurm' / 'wd0.0001_seed1.sh').read_text()
    subprocess.run(['bash', '-n', str(sweep_dir / 'slurm' / 'wd0.0001_seed1.sh')], check=True)
    work_dir = str(sweep_dir / 'runs' / 'wd0.0001_seed1')
    composed = str(sweep_dir / 'configs' / 'wd0.0001_seed1.py')
    assert '#SBATCH --partition=cpu\n#SBATCH --nodes=1\n#SBATCH --ntasks=2\n' in text
    assert '#SBATCH --ntasks-per-node=2\n#SBATCH --cpus-per-task=1\n' in text
    assert '--gres' not in text
    assert 'export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}' in text
    line = next(li for li in text.splitlines() if 'slurm_train.sh' in li)
    words = shlex.split(line)
    assert words[:6] == ['GPUS=2', 'GPUS_PER_NODE=2', 'CPUS_PER_TASK=1', 'USE_GRES=0',
                         f'PYTHON={sys.executable}', 'SRUN_ARGS=']
    assert words[6:] == [
        osp.join(REPO, 'tools/slurm_train.sh'), 'cpu', 'sweep-wd0.0001_seed1', composed,
        work_dir, '--resume', '--cfg-options', 'randomness.seed=1',
        'optim_wrapper.optimizer.weight_decay=0.0001', 'train_cfg.max_iters=40',
        'train_cfg.val_interval=40', 'train_dataloader.batch_size=4']
    assert text.rstrip().endswith(f'--mark-done {work_dir} --seconds "$SECONDS"')
    assert osp.isdir(work_dir)  # Slurm opens the output file there before the job runs
    # The composed configs are the config plus the overlay.
    hooks = Config.fromfile(composed).get('custom_hooks', [])
    assert hooks == []
    wrs = Config.fromfile(str(sweep_dir / 'configs' / 'wrs_seed0.py'))
    assert [h['type'] for h in wrs.custom_hooks] == ['WRSHook']
    assert 'weight_decay' not in (sweep_dir / 'slurm' / 'wrs_seed0.sh').read_text()

    # GPU partitions: whole nodes, --gres per node.
    assert tool.main([*argv[:-10], '--slurm', 'gpu', '--gpus', '16', '--gpus-per-node', '8']) == 0
    text = (sweep_dir / 'slurm' / 'wrs_seed1.sh').read_text()
    assert '#SBATCH --nodes=2\n#SBATCH --ntasks=16\n#SBATCH --ntasks-per-node=8\n' in text
    assert '#SBATCH --gres=gpu:8' in text and 'USE_GRES=1' in text


def test_monitor_hook_is_appended_to_the_overlay_hooks(tool, tiny_config, tmp_path):
    runs = tool.plan([1e-4], [0], ['wrs'])
    sweep = tool.Sweep(tiny_config, str(tmp_path), runs, monitor_interval=10)
    wd = Config.fromfile(sweep.composed(runs[0]))
    assert wd.custom_hooks == [dict(type='NormMonitorHook', interval=10)]
    wrs = Config.fromfile(sweep.composed(runs[1]))
    assert [h['type'] for h in wrs.custom_hooks] == ['WRSHook', 'NormMonitorHook']
    assert wrs.custom_hooks[0]['granularity'] == 'filter'  # the overlay's options kept


def test_results_table_mean_std_and_spread(tool):
    assert tool.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert tool.mean_std([0.5]) == (0.5, None) and tool.mean_std([]) == (None, None)
    settings = {
        'wd=1e-05': dict(decay=1e-5, values=[0.5, 0.7], seeds=[0, 1], missing=[]),
        'wd=0.001': dict(decay=1e-3, values=[0.2], seeds=[0], missing=[1]),
        'wrs': dict(decay=None, values=[0.8, 0.8], seeds=[0, 1], missing=[]),
    }
    for entry in settings.values():
        entry['mean'], entry['std'] = tool.mean_std(entry['values'])
    table = tool.results_table(dict(config='x.py', metric='mIoU', settings=settings,
                                    done=5, total=6))
    assert '| wd=1e-05 | 1e-05 | 0.6000 ± 0.1414 | 2 (0, 1) | - |' in table
    assert '| wd=0.001 | 0.001 | 0.2000 (one seed) | 1 (0) | 1 |' in table
    assert 'best wd=1e-05 (0.6000), worst wd=0.001 (0.2000), spread' in table
    assert 'the means) 0.4000.' in table
    assert 'wrs: 0.8000 ± 0.0000 (+0.2000 vs the best decay, +0.6000 vs the worst).' in table


def test_bad_input_is_refused_with_the_reason(tool, tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"regularizer 'wrz'.*available: .*wrs"):
        tool.main([tiny_config, '--sweep-dir', str(tmp_path), '--regularizers', 'wrz'])
    # Epoch-based configs (mmdet's 1x) take their schedule in epochs.
    detector = osp.join(REPO, 'configs/faster_rcnn/faster-rcnn_r50_fpn_wrs_1x_coco.py')
    with pytest.raises(ValueError, match=r"no train_cfg.max_iters .*EpochBasedTrainLoop.*"
                       r"train_cfg.max_epochs=N"):
        tool.main([detector, '--sweep-dir', str(tmp_path), '--iters', '10'])
    with pytest.raises(ValueError, match='--monitor-interval must be >= 0'):
        tool.main([tiny_config, '--sweep-dir', str(tmp_path), '--monitor-interval', '-1'])
    # Overlays that swap the optimizer (or reset the lr) would undo the sweep.
    with pytest.raises(ValueError, match=r"--regularizers wrs_adamw: the overlay replaces the "
                       r"optimizer with 'AdamW'.*--optimizers adamw --regularizers wrs"):
        tool.main([tiny_config, '--sweep-dir', str(tmp_path), '--optimizers', 'adamw',
                   '--regularizers', 'wrs_adamw'])


def test_overlay_optimizer_hook_trains_at_the_swept_lr(tool, tiny_config, tmp_path):
    """adamp's ReplaceOptimizerHook sets lr=1e-4 itself: --lrs must reach it."""
    from mmengine.config import Config
    runs = tool.plan_grid([], [0], ['adamp', 'wrs'], lrs=[0.004])
    sweep = tool.Sweep(tiny_config, str(tmp_path), runs)
    hooks = {run.regularizer: Config.fromfile(sweep.composed(run)).custom_hooks for run in runs}
    replace = [h for h in hooks['adamp'] if h['type'] == 'ReplaceOptimizerHook']
    assert [h['lr'] for h in replace] == [0.004]
    assert replace[0]['optimizer']['type'] == 'AdamP'
    assert sweep.options(runs[0])[1] == 'optim_wrapper.optimizer.lr=0.004'
    assert not any(h['type'] == 'ReplaceOptimizerHook' for h in hooks['wrs'])


def test_resume_flag_reaches_train_py_only_for_interrupted_runs(tool, tiny_config, tmp_path):
    run = tool.plan([1e-4], [3], [])[0]
    sweep = tool.Sweep(tiny_config, str(tmp_path), [run], iters=2)
    assert sweep.train_args(run, resume=True)[:4] == [
        str(tmp_path / 'configs' / 'wd0.0001_seed3.py'), '--work-dir',
        str(tmp_path / 'runs' / 'wd0.0001_seed3'), '--resume']
    assert '--resume' not in sweep.train_args(run, resume=False)


def test_lr_and_optimizer_reach_the_runs_and_a_grown_grid_skips_finished_runs(
        tool, tiny_config, tmp_path, capsys):
    """AdamW (replacing the config's SGD) at 2 lrs x 1 decay + WRS, 1 seed."""
    sweep_dir = tmp_path / 'sweep'
    base = [tiny_config, '--sweep-dir', str(sweep_dir), '--optimizers', 'adamw',
            '--decays', 'adamw:0.01', '--seeds', '0', '--regularizers', 'wrs', '--iters', '2']
    assert tool.main([*base, '--lrs', '1e-3']) == 0
    out = capsys.readouterr().out
    assert '[sweep] 1/2 adamw lr=0.001 wd=0.01 seed=0 ... training' in out
    assert '[sweep] 2/2 adamw lr=0.001 wrs seed=0 ... training' in out
    runs = sweep_dir / 'runs'
    first = ('adamw_lr0.001_wd0.01_seed0', 'adamw_lr0.001_wrs_seed0')
    stamps = {run: os.stat(runs / run / 'done.json').st_mtime_ns for run in first}

    # The same sweep with a second lr: the finished runs are skipped, not retrained.
    assert tool.main([*base, '--lrs', '1e-3', '2e-3']) == 0
    out = capsys.readouterr().out
    assert '[sweep] 1/4 adamw lr=0.001 wd=0.01 seed=0 ... already done mIoU=' in out
    assert '[sweep] 2/4 adamw lr=0.001 wrs seed=0 ... already done mIoU=' in out
    assert '[sweep] 3/4 adamw lr=0.002 wd=0.01 seed=0 ... training' in out
    assert '[sweep] 4/4 adamw lr=0.002 wrs seed=0 ... training' in out
    assert {run: os.stat(runs / run / 'done.json').st_mtime_ns for run in first} == stamps

    for lr in (1e-3, 2e-3):
        for kind, decays in (('wd0.01', {0.01}), ('wrs', {0.0, 0.05})):
            name = f'adamw_lr{lr:g}_{kind}_seed0'
            composed = Config.fromfile(str(sweep_dir / 'configs' / f'{name}.py'))
            assert composed.optim_wrapper.optimizer.type == 'AdamW', name
            assert 'momentum' not in composed.optim_wrapper.optimizer  # SGD's, deleted
            # What the run trained with: AdamW groups (betas, no momentum) at
            # the swept lr (the scheduler's base value), the swept decay (WRS:
            # 0 on the rescaled weights, AdamW's 0.05 on the rest).
            groups = torch.load(runs / name / 'iter_2.pth',
                                map_location='cpu')['optimizer']['param_groups']
            assert all(g['betas'] == (0.9, 0.999) and 'momentum' not in g for g in groups)
            assert {g['initial_lr'] for g in groups} == {lr}, name
            assert {g['weight_decay'] for g in groups} == decays, name

    results = json.loads((sweep_dir / 'results.json').read_text())
    assert results['done'] == results['total'] == 4
    assert set(results['methods']) == {'adamw+wd', 'adamw+wrs'}
    assert results['methods']['adamw+wrs']['settings'] == ['adamw lr=0.001 wrs',
                                                           'adamw lr=0.002 wrs']
    table = (sweep_dir / 'results.md').read_text()
    assert '| adamw+wd | 2 (0) |' in table and 'Best vs best: adamw+wrs - adamw+wd = ' in table
    assert '(one seed: no error estimate)' in table
    assert (sweep_dir / 'results.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plan_grid_lr_x_wd_x_seed_for_decay_and_lr_x_seed_for_wrs(tool):
    runs = tool.plan_grid(['1e-4', '1e-3', 'adamw:0.05'], [0, 1], ['wrs'],
                          ['sgd:0.01', 'sgd:0.02', 'adamw:1e-3'], ['sgd', 'adamw'])
    by_method = {}
    for run in runs:
        by_method.setdefault(run.method, []).append((run.lr, run.decay, run.seed))
    assert by_method['sgd+wd'] == [(lr, d, s) for lr in (0.01, 0.02) for d in (1e-4, 1e-3)
                                   for s in (0, 1)]
    assert by_method['sgd+wrs'] == [(lr, None, s) for lr in (0.01, 0.02) for s in (0, 1)]
    assert by_method['adamw+wd'] == [(1e-3, d, s) for d in (1e-4, 1e-3, 0.05) for s in (0, 1)]
    assert by_method['adamw+wrs'] == [(1e-3, None, 0), (1e-3, None, 1)]
    assert len({run.name for run in runs}) == len(runs)  # one work dir each
    assert runs[0].name == 'sgd_lr0.01_wd0.0001_seed0'
    assert runs[0].setting == 'sgd lr=0.01 wd=0.0001'
    # Without --lrs/--optimizers it is the decay x seed grid of before, same names.
    assert tool.plan_grid([1e-4], [0], ['wrs']) == tool.plan([1e-4], [0], ['wrs'])
    assert [r.name for r in tool.plan([1e-4], [0], ['wrs'])] == ['wd0.0001_seed0', 'wrs_seed0']
    with pytest.raises(ValueError, match=r"--optimizers 'rmsprop': unknown; available: sgd"):
        tool.plan_grid([], [0], ['wrs'], [], ['rmsprop'])
    with pytest.raises(ValueError, match=r"--lrs 'adamw:1e-3': 'adamw' is not a swept"):
        tool.plan_grid([], [0], ['wrs'], ['adamw:1e-3'], ['sgd'])
    with pytest.raises(ValueError, match=r"--lrs '0': must be a finite number > 0"):
        tool.plan_grid([], [0], ['wrs'], ['0'])
    with pytest.raises(ValueError, match=r"--decays 'x': not a number"):
        tool.plan_grid(['x'], [0], [])


def test_regularizer_lrs_give_wrs_its_own_grid_and_keep_run_names(tool):
    runs = tool.plan_grid(['1e-4'], [0, 1], ['wrs'], ['sgd:0.05', 'sgd:0.1', 'adamw:1e-3'],
                          ['sgd', 'adamw'], ['sgd:0.1', 'sgd:0.2'])
    by_method = {}
    for run in runs:
        by_method.setdefault(run.method, []).append((run.lr, run.seed))
    assert by_method['sgd+wd'] == [(lr, s) for lr in (0.05, 0.1) for s in (0, 1)]
    assert by_method['sgd+wrs'] == [(lr, s) for lr in (0.1, 0.2) for s in (0, 1)]
    # adamw has no regularizer lrs of its own: its --lrs.
    assert by_method['adamw+wrs'] == [(1e-3, 0), (1e-3, 1)]
    # The lr 0.1 setting of both methods sits together; names are those of --lrs.
    names = [run.name for run in runs]
    assert names.index('sgd_lr0.1_wrs_seed0') == names.index('sgd_lr0.1_wd0.0001_seed1') + 1
    assert len(set(names)) == len(runs)
    assert tool.plan_grid(['1e-4'], [0], ['wrs'], ['0.05'], ['sgd'], None) == tool.plan_grid(
        ['1e-4'], [0], ['wrs'], ['0.05'], ['sgd'])
    with pytest.raises(ValueError, match=r"--regularizer-lrs '-1': must be a finite number > 0"):
        tool.plan_grid([], [0], ['wrs'], [], [], ['-1'])


def test_method_summary_best_worst_median_spread_and_best_vs_best(tool):
    # sgd+wd: 2 lrs x 2 decays; sgd+wrs: 2 lrs; adamw+wd one setting, no seeds done.
    raw = {
        'sgd lr=0.01 wd=0.0001': ('sgd', 0.01, 1e-4, 'wd', [70.0, 72.0]),
        'sgd lr=0.01 wd=0.001': ('sgd', 0.01, 1e-3, 'wd', [60.0, 62.0]),
        'sgd lr=0.02 wd=0.0001': ('sgd', 0.02, 1e-4, 'wd', [50.0, 54.0]),
        'sgd lr=0.02 wd=0.001': ('sgd', 0.02, 1e-3, 'wd', [64.0, 66.0]),
        'sgd lr=0.01 wrs': ('sgd', 0.01, None, 'wrs', [73.0, 75.0]),
        'sgd lr=0.02 wrs': ('sgd', 0.02, None, 'wrs', [68.0]),
        'adamw lr=0.001 wd=0.05': ('adamw', 1e-3, 0.05, 'wd', []),
    }
    settings = {}
    for name, (optimizer, lr, decay, regularizer, values) in raw.items():
        method = f'{optimizer}+{"wd" if decay is not None else regularizer}'
        settings[name] = dict(optimizer=optimizer, lr=lr, decay=decay, method=method,
                              regularizer=regularizer, values=values, seeds=[0, 1][:len(values)],
                              missing=[1] if len(values) == 1 else [])
        settings[name]['mean'], settings[name]['std'] = tool.mean_std(values)
    methods = tool.method_summary(settings)
    wd, wrs = methods['sgd+wd'], methods['sgd+wrs']
    assert wd['best'] == dict(setting='sgd lr=0.01 wd=0.0001', mean=71.0, std=2 ** 0.5, seeds=2)
    assert wd['worst'] == dict(setting='sgd lr=0.02 wd=0.0001', mean=52.0, std=8 ** 0.5,
                               seeds=2)
    assert wd['median'] == 63.0 and wd['spread'] == 19.0  # means 71, 61, 52, 65
    assert wrs['best']['mean'] == 74.0 and wrs['worst'] == dict(
        setting='sgd lr=0.02 wrs', mean=68.0, std=None, seeds=1)
    assert wrs['median'] == 71.0 and wrs['spread'] == 6.0
    # 74 - 71 = +3, with sqrt(2/2 + 2/2) = sqrt(2) from the seed stds.
    assert wrs['vs_wd']['difference'] == 3.0
    assert abs(wrs['vs_wd']['error'] - 2 ** 0.5) < 1e-12
    assert 'vs_wd' not in wd
    assert methods['adamw+wd']['best'] is None
    assert methods['adamw+wd']['missing_settings'] == ['adamw lr=0.001 wd=0.05']

    table = tool.results_table(dict(config='x.py', metric='mIoU', settings=settings,
                                    done=11, total=14, methods=methods))
    assert ('| sgd+wd | 4 (0) | 71.0000 ± 1.4142 (sgd lr=0.01 wd=0.0001, 2 seeds) | '
            '52.0000 ± 2.8284 (sgd lr=0.02 wd=0.0001, 2 seeds) | 63.0000 | 19.0000 |') in table
    assert '| sgd+wrs | 2 (0) |' in table
    assert '68.0000 (one seed) (sgd lr=0.02 wrs, 1 seeds)' in table
    assert '| adamw+wd | 0 (1) | n/a | n/a | n/a | n/a |' in table
    assert 'Best vs best: sgd+wrs - sgd+wd = +3.0000 ± 1.4142 (standard error' in table
    assert 'Across weight-decay values' not in table  # one line over all optimizers would mislead


def test_slurm_and_collect_paths_carry_the_lr_and_optimizer(tool, tiny_config, tmp_path):
    sweep_dir = tmp_path / 'sweep'
    argv = [tiny_config, '--sweep-dir', str(sweep_dir), '--optimizers', 'sgd', 'adamw',
            '--lrs', 'sgd:0.01', 'adamw:1e-3', '--decays', 'sgd:1e-4', '--seeds', '0',
            '--regularizers', 'wrs']
    assert tool.main([*argv, '--slurm', 'cpu', '--gpus', '1', '--gpus-per-node', '0']) == 0
    assert sorted(os.listdir(sweep_dir / 'slurm')) == [
        'adamw_lr0.001_wrs_seed0.sh', 'sgd_lr0.01_wd0.0001_seed0.sh', 'sgd_lr0.01_wrs_seed0.sh']
    text = (sweep_dir / 'slurm' / 'adamw_lr0.001_wrs_seed0.sh').read_text()
    assert 'optim_wrapper.optimizer.lr=0.001' in text and 'weight_decay' not in text
    composed = Config.fromfile(str(sweep_dir / 'configs' / 'adamw_lr0.001_wrs_seed0.py'))
    assert composed.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    # SGD keeps the config's lr and decay unless swept, with momentum.
    sgd = Config.fromfile(str(sweep_dir / 'configs' / 'sgd_lr0.01_wrs_seed0.py'))
    assert sgd.optim_wrapper.optimizer == dict(type='SGD', momentum=0.9, lr=0.02,
                                               weight_decay=5e-4)
    # --collect with nothing finished: every setting missing, no best yet.
    assert tool.main([*argv, '--collect']) == 0
    results = json.loads((sweep_dir / 'results.json').read_text())
    assert results['done'] == 0 and results['total'] == 3
    assert {m: s['best'] for m, s in results['methods'].items()} == {
        'sgd+wd': None, 'sgd+wrs': None, 'adamw+wrs': None}


def test_a_detector_that_predicts_nothing_counts_as_zero_and_is_marked(tool, tmp_path):
    config = tmp_path / 'det.py'
    config.write_text('')
    runs = tool.plan_grid(['1e-3'], [0, 1], [], ['0.1'], ['sgd'])
    sweep = tool.Sweep(str(config), str(tmp_path / 'sweep'), runs)
    for run, lines in zip(runs, (
            [{'coco/bbox_mAP': 0.4, 'step': 800}],  # seed 0: a metric
            [{'loss': 0.7, 'step': 800}])):  # seed 1: training finished, no box predicted
        vis = osp.join(sweep.work_dir(run), '20260101_000000', 'vis_data')
        os.makedirs(vis)
        with open(osp.join(vis, 'scalars.json'), 'w') as f:
            f.write(''.join(json.dumps(line) + '\n' for line in lines))
    work_dir = sweep.work_dir(runs[1])
    # A run without the message is not finished: it never validated.
    with pytest.raises(RuntimeError, match='no final metric'):
        tool.mark_done(work_dir)
    with open(osp.join(work_dir, 'train.log'), 'w') as f:
        f.write('Evaluating bbox...\n' f'ERROR - coco_metric.py - {tool.NO_PREDICTIONS}.\n')
    assert tool.mark_done(work_dir)['no_predictions'] is True
    tool.mark_done(sweep.work_dir(runs[0]))
    results = sweep.collect()
    entry = results['settings']['sgd lr=0.1 wd=0.001']
    assert results['metric'] == 'coco/bbox_mAP'
    assert entry['values'] == [0.4, 0.0] and entry['no_predictions'] == [1]
    table = (tmp_path / 'sweep' / 'results.md').read_text()
    assert '0 = no box predicted: seed 1' in table
    # The lr x decay grid: one row per lr, the partly empty mean marked.
    assert '| lr | wd 0.001 |' in table and '| 0.1 | 0.2 ± 0.28 * |' in table
