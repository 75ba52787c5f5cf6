"""tools/analysis/zoo.py: the stock-zoo check, on two real stock configs and on
tiny models where the right answers are known."""
import os

import pytest
import torch
from torch import nn

from mmwrs.core import DiscoveryResult, discover_scale_invariant

from conftest import load_tool

zoo = load_tool('tools/analysis/zoo.py')


class _Tiny(nn.Module):
    """conv_a -> BN (invariant); conv_b -> ReLU -> BN (invariant, but not straight
    into the norm: discovery misses it); conv_c -> output (not invariant)."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(4)
        self.conv_c = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.conv_c(self.bn_b(torch.relu(self.conv_b(self.bn_a(self.conv_a(x))))))


def _tiny():
    torch.manual_seed(0)
    model = _Tiny()
    x = torch.randn(4, 3, 8, 8)
    forward = lambda: model(x)  # noqa: E731
    return model, forward, discover_scale_invariant(model, forward)


def test_oracle_recall_finds_what_discovery_misses():
    model, forward, result = _tiny()
    assert [w.name for w in result.invariant] == ['conv_a.weight']
    zoo.oracle_mode(model)
    found = zoo.oracle(model, forward, result)
    assert found['sound']
    assert found['missed'] == ['conv_b.weight']  # ReLU is positively homogeneous
    assert found['oracle_invariant'] == 2


def test_oracle_flags_an_unsound_claim():
    model, forward, result = _tiny()
    wrong = discover_scale_invariant(model, forward, granularity='filter')
    # Claim conv_c (it feeds the output) as invariant too, with conv_a's layout.
    claim = type(wrong.invariant[0])(**{**vars(wrong.invariant[0]), 'name': 'conv_c.weight',
                                        'param': model.conv_c.weight, 'num_units': 2})
    zoo.oracle_mode(model)
    found = zoo.oracle(model, forward, DiscoveryResult(wrong.invariant + [claim], []))
    assert not found['sound']
    assert found['unsound_first_order'] == ['conv_c.weight']


def test_composition_names_the_hooks_a_recipe_loses():
    stock = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
    replaced, _ = zoo.composes(stock, 'custom_hooks')
    assert not replaced['ok']
    assert {'custom_hooks EMAHook', 'custom_hooks PipelineSwitchHook'} <= set(replaced['lost'])
    merged, cfg = zoo.composes(stock, 'default_hooks')
    assert merged['ok'], merged['lost']
    assert cfg.default_hooks.wrs.type == 'WRSHook'


def test_no_pretrained_drops_every_download():
    cfg = zoo.load(
        'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
    assert 'Pretrained' in str(cfg.model) and 'SyncBN' in str(cfg.model)
    model = zoo.no_pretrained(cfg.model)
    assert 'Pretrained' not in str(model) and 'SyncBN' not in str(model)
    assert model.pretrained is None


# YOLOX-s: its batch augment reads the message hub during discovery (failed
# before mmwrs.engine.discovery_pass), and its base config has three custom hooks.
@pytest.mark.parametrize('name', ['YOLOX-s', 'FCN R50-d8'])
def test_zoo_rows_on_stock_configs(tmp_path, name):
    out, md = tmp_path / 'zoo', tmp_path / 'zoo.md'
    data = str(tmp_path / 'data')
    [row] = zoo.main(['--out', str(out), '--only', name, '--table', str(md), '--data', data])
    assert not [k for k in row if k.endswith('_error')], row.get('trace')
    assert row['compose']['ok']
    assert row['controlled'] > 0 and row['sound'] and row['eval_ok'] and row['train_ok']
    assert row['unsound_first_order'] == []
    assert row['missed'] == []
    # Each controlled weight is confirmed by the oracle or has no gradient to
    # test (YOLOX: two whose gradient is at rounding level).
    assert row['oracle_invariant'] + row['unused'] + row['zero'] >= row['controlled']
    assert f'| {name} |' in md.read_text()
    # Resumable: a second run reads the JSON instead of redoing the config.
    [path] = list(out.iterdir())
    mtime = os.path.getmtime(path)
    [again] = zoo.main(['--out', str(out), '--only', name, '--data', data])
    assert os.path.getmtime(path) == mtime and again['seconds'] == row['seconds']


def _committed_rows():
    import json
    rows = []
    for _, stock, _ in zoo.CONFIGS:
        path = os.path.join(zoo.REPO, 'docs', 'zoo', zoo.slug(stock) + '.json')
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def test_committed_table_is_the_tools_output_with_every_cell_filled():
    rows = _committed_rows()
    assert len(rows) >= 24
    for row in rows:
        cells = zoo.row_md(row).split(' | ')
        assert len(cells) == 12 and all(c.strip('| ') for c in cells), row['name']
    with open(os.path.join(zoo.REPO, 'docs', 'zoo.md')) as f:
        assert f.read() == zoo.table(rows, rows[0]['recipe'])


def test_rerun_of_one_row_keeps_the_others(tmp_path):
    import argparse
    import json
    import shutil
    rows = _committed_rows()[:3]
    out = tmp_path / 'zoo'
    out.mkdir()
    for row in rows:
        shutil.copy(os.path.join(zoo.REPO, 'docs', 'zoo', zoo.slug(row['config']) + '.json'),
                    out)
    redone = json.loads(json.dumps(rows[1]))
    redone['seconds'] = 12345.0
    args = argparse.Namespace(out=str(out), table=str(tmp_path / 'zoo.md'),
                              recipe='default_hooks')
    zoo._write_table(args, [redone])
    text = (tmp_path / 'zoo.md').read_text()
    assert all(f"| {row['name']} |" in text for row in rows)
    assert '| 12345 |' in text
    assert f'of {len(rows)} configs pass every check' in text
