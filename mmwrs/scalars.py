"""Read the scalars an mmengine run logged (``<work_dir>/<timestamp>/vis_data/scalars.json``).

mmengine's ``LocalVisBackend`` appends one JSON object per line: the values
logged together at one ``step`` (training lines also carry ``iter``; the
LoggerHook's validation lines carry the metrics at ``step`` = iteration, or
epoch for epoch-based logging). Plain Python, no torch or mmengine, so
plotting and sweep tools can import it cheaply.
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Sequence, Tuple

Series = List[Tuple[int, float]]


def find_scalars_files(work_dir: str) -> List[str]:
    """Every ``<work_dir>/<timestamp>/vis_data/scalars.json``, oldest first.

    mmengine names the run directories by start time (``YYYYmmdd_HHMMSS``), and
    a resumed run starts a directory of its own.

    Raises:
        FileNotFoundError: ``work_dir`` is missing or has no such file.
    """
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'{work_dir}: not a directory')
    found = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(f'{work_dir}: no */vis_data/scalars.json (is it the work_dir '
                                'of an mmengine run with the default LocalVisBackend?)')
    return found


def read_scalars(path: str) -> Dict[str, Series]:
    """Every numeric key of a ``scalars.json`` as ``[(step, value), ...]`` by step.

    Several lines can share a step (the LoggerHook's and a hook's own); a key
    logged twice at one step keeps its last value. Non-numeric values and the
    bookkeeping keys ``step``/``iter``/``epoch`` are left out.

    Raises:
        ValueError: A line is not a JSON object with a ``step``; the message
            names the file and line.
    """
    series: Dict[str, Dict[int, float]] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record['step'])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f'{path}:{number}: not a scalars record with a step '
                                 f'({type(exc).__name__}: {exc})') from None
            for key, value in record.items():
                if key in ('step', 'iter', 'epoch') or isinstance(value, bool) \
                        or not isinstance(value, (int, float)):
                    continue
                series.setdefault(key, {})[step] = float(value)
    return {key: sorted(values.items()) for key, values in series.items()}


def load_work_dir(work_dir: str) -> Dict[str, Series]:
    """The scalars of the whole run in ``work_dir``.

    Every run directory's file is read, oldest first, and merged by step: a
    run resumed from a checkpoint keeps the history logged before it, and the
    steps it logged again after resuming take their newer values.
    """
    merged: Dict[str, Dict[int, float]] = {}
    for path in find_scalars_files(work_dir):
        for key, series in read_scalars(path).items():
            merged.setdefault(key, {}).update(series)
    return {key: sorted(values.items()) for key, values in merged.items()}


def present(scalars: Dict[str, Series], keys: Sequence[str]) -> List[str]:
    """Those of ``keys`` that ``scalars`` holds, in the order given."""
    return [key for key in keys if scalars.get(key)]
