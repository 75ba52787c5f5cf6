"""A WRS-trained checkpoint is a stock checkpoint: stock mmdet/mmseg load it without mmwrs."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from mmengine.runner import Runner

from mmwrs.compat import in_range
from mmwrs.launch import register_codebase

from conftest import DET_DEMO, SEG_DEMO

LOAD = '''
import importlib.util, json, sys
import torch
assert importlib.util.find_spec('mmwrs') is None, 'mmwrs must not be importable here'
config, checkpoint, image, detection = sys.argv[1:5]
if detection == '1':
    from mmdet.apis import inference_detector as infer, init_detector as init
else:
    from mmseg.apis import inference_model as infer, init_model as init
model = init(config, checkpoint, device='cpu')
saved = torch.load(checkpoint, map_location='cpu', weights_only=False)
state = model.state_dict()
missing = sorted(set(saved['state_dict']) ^ set(state))
same = all(torch.equal(state[k], saved['state_dict'][k]) for k in state)
result = infer(model, image)
out = result.pred_instances.bboxes if detection == '1' else result.pred_sem_seg.data
print(json.dumps(dict(missing=missing, same=same, shape=list(out.shape),
                      has_wrs='wrs' in saved, classes=list(model.dataset_meta['classes']))))
'''


@pytest.mark.parametrize('config, detection', [(DET_DEMO, True), (SEG_DEMO, False)])
def test_wrs_checkpoint_loads_in_stock_codebase_without_mmwrs(make_cfg, tmp_path, shapes_root,
                                                              config, detection):
    import torch
    cfg = make_cfg(config, ['wrs'], iters=2, work_dir=tmp_path / 'run')
    register_codebase(cfg)
    Runner.from_cfg(cfg).train()
    checkpoint = str(tmp_path / 'run' / 'iter_2.pth')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    if in_range(torch.__version__, '2.6.0'):
        # Stock mmengine 0.10.x calls torch.load without weights_only, and torch >= 2.6
        # then refuses the message hub of *any* mmengine checkpoint, WRS or not; this
        # is the variable torch documents for trusted files (mmwrs's allow-list is
        # not there, since mmwrs is not).
        env['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
    # The stock config (the demo config itself: no overlay, no custom_imports), run
    # from a folder where this checkout is not on sys.path.
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(LOAD), config, checkpoint,
         shapes_root + 'images/val/000000.png', '1' if detection else '0'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['has_wrs']  # the extra entry is plain data stock mmengine ignores
    assert report['missing'] == [] and report['same'], report
    assert report['classes'] and report['shape'][0] >= (0 if detection else 1)
