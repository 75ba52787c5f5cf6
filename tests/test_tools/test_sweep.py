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


def test_resume_flag_reaches_train_py_only_for_interrupted_runs(tool, tiny_config, tmp_path):
    run = tool.plan([1e-4], [3], [])[0]
    sweep = tool.Sweep(tiny_config, str(tmp_path), [run], iters=2)
    assert sweep.train_args(run, resume=True)[:4] == [
        str(tmp_path / 'configs' / 'wd0.0001_seed3.py'), '--work-dir',
        str(tmp_path / 'runs' / 'wd0.0001_seed3'), '--resume']
    assert '--resume' not in sweep.train_args(run, resume=False)
