import json
import math
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'analysis', 'methods_table.py')
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))

from methods_table import compare, merge  # noqa: E402
from sweep import mean_std, method_summary  # noqa: E402


def entry(values, regularizer='wd', decay=None, lr=0.1, optimizer='sgd', method=None):
    mean, std = mean_std(values)
    return dict(regularizer=regularizer, decay=decay, values=list(values),
                seeds=list(range(len(values))), missing=[], lr=lr, optimizer=optimizer,
                method=method, no_predictions=[], mean=mean, std=std)


def results(settings, metric='mIoU'):
    return dict(config='c.py', metric=metric, settings=settings, done=0, total=0)


WD = results({'sgd lr=0.1 wd=0.0005': entry([70, 72, 74], decay=5e-4, method='sgd+wd'),
              'sgd lr=0.2 wd=0.0005': entry([60, 61, 62], decay=5e-4, lr=0.2,
                                            method='sgd+wd')})
SGDP = results({'lr=0.1 sgdp': entry([68, 69, 70], regularizer='sgdp', optimizer=None,
                                     method='sgdp'),
                'lr=0.2 sgdp': entry([50, 52, 54], regularizer='sgdp', lr=0.2,
                                     optimizer=None, method='sgdp')})
# Two sweeps of one method under different fixed options: the same setting names.
LAM_A = results({'sgd lr=0.4 ws_eps_l2': entry([63, 64, 65], regularizer='ws_eps_l2',
                                               lr=0.4, method='sgd+ws_eps_l2')})
LAM_B = results({'sgd lr=0.4 ws_eps_l2': entry([40, 41, 42], regularizer='ws_eps_l2',
                                               lr=0.4, method='sgd+ws_eps_l2')})


def test_every_method_is_a_row_compared_with_weight_decays_best():
    settings, metric = merge([(WD, None), (SGDP, None), (LAM_A, 'eps lam 1e-5'),
                              (LAM_B, 'eps lam 1e-3')])
    methods = compare(method_summary(settings), {'sgdp': 'sgd+wd'})
    assert metric == 'mIoU'
    assert set(methods) == {'sgd+wd', 'sgdp', 'eps lam 1e-5', 'eps lam 1e-3'}
    sgdp = methods['sgdp']
    assert sgdp['best']['mean'] == 69 and sgdp['worst']['mean'] == 52
    assert sgdp['spread'] == 17
    # best vs best: 69 - 72, standard error from both cells' seed stds (1 and 2, n = 3).
    assert sgdp['vs_wd']['difference'] == pytest.approx(-3)
    assert sgdp['vs_wd']['error'] == pytest.approx(math.sqrt(1 / 3 + 4 / 3))
    # A labelled sweep keeps its optimizer, so it is compared with sgd+wd by itself.
    assert methods['eps lam 1e-3']['vs_wd']['difference'] == pytest.approx(41 - 72)


def test_two_sweeps_with_one_setting_name_must_be_labelled():
    with pytest.raises(ValueError, match='label one of them'):
        merge([(LAM_A, None), (LAM_B, None)])


def test_a_reference_that_is_not_in_the_results_is_named():
    settings, _ = merge([(SGDP, None)])
    with pytest.raises(ValueError, match="no method 'sgd\\+wd'"):
        compare(method_summary(settings), {'sgdp': 'sgd+wd'})


def test_cli_prints_one_row_per_method(tmp_path):
    paths = []
    for name, res in (('wd', WD), ('sgdp', SGDP), ('lam', LAM_A)):
        path = tmp_path / f'{name}.json'
        path.write_text(json.dumps(res))
        paths.append(str(path))
    out = subprocess.run([sys.executable, SCRIPT, paths[0], paths[1], f'{paths[2]}:eps 1e-5',
                          '--reference', 'sgdp=sgd+wd'],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith('| ') and '---' not in line]
    assert [r.split(' | ')[0] for r in rows[1:]] == ['| sgd+wd', '| sgdp', '| eps 1e-5']
    assert '(reference)' in rows[1] and '-3.00 ± 1.29' in rows[2]
