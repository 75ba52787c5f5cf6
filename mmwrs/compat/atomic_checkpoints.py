"""A SIGKILL during an mmengine 0.10 checkpoint save must not cost the run its checkpoints."""
import functools
import glob
import os.path as osp
import re

from ..fileio import write_atomic
from .patching import version_fix


def atomic_put(self, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` that never leaves a partly written file behind."""
    write_atomic(filepath, obj)


def _numbered_checkpoints(path: str):
    found = []
    for name in glob.glob(osp.join(path, '*.pth')):
        match = re.fullmatch(r'(?:iter|epoch)_(\d+)\.pth', osp.basename(name))
        if match:
            found.append((int(match.group(1)), name))
    return [name for _, name in sorted(found, reverse=True)]


def _robust_find_latest(original):
    @functools.wraps(original)
    def find_latest_checkpoint(path):
        latest = original(path)
        if latest and osp.isfile(latest):
            return latest
        checkpoints = _numbered_checkpoints(path)
        return checkpoints[0] if checkpoints else None
    return find_latest_checkpoint


@version_fix('mmengine', '0.10.0', '0.11.0')
def kill_safe_checkpoints() -> None:
    """A SIGKILL during a save must not cost the run its checkpoints.

    Why: mmengine 0.10.x writes checkpoints (``LocalBackend.put``) in place, so
    a kill mid-write leaves a truncated ``iter_N.pth``; and ``last_checkpoint``
    is written in place too, so a kill there leaves it empty, and ``--resume
    auto`` then fails (or points at a file that is gone). Checkpoint files are
    now written to a temporary name and renamed (atomic on POSIX), and the
    latest checkpoint falls back to the highest-numbered complete one when
    ``last_checkpoint`` is empty or dangling.
    Versions: mmengine 0.10.x. Applied by mmwrs's tools (what the resumable
    sweeps and Slurm scripts rely on), not by ``import mmwrs``.
    """
    from mmengine.fileio.backends import local_backend
    from mmengine.runner import checkpoint, runner
    local_backend.LocalBackend.put = atomic_put
    robust = _robust_find_latest(checkpoint.find_latest_checkpoint)
    checkpoint.find_latest_checkpoint = robust
    runner.find_latest_checkpoint = robust
