"""The versions mmwrs supports, and each fix it applies, only where it is needed.

``import mmwrs`` calls :func:`check_versions` (one clear error outside the
supported ranges) and :func:`apply` (the fixes a user's own runs need, e.g.
mmdet's ``tools/train.py`` with ``custom_imports=['mmwrs']``). mmwrs's own
``tools/train.py`` and ``tools/test.py`` also call :func:`apply_tool_fixes`
(fixes for what those tools promise: kill-safe checkpoints, CPU launchers).

One module per fix, each stating why and for which versions; all of them apply
through :func:`~mmwrs.compat.patching.version_fix`: only when the installed
version is one the fix was written for (and, where it can be told, one that
still needs it), and once. The version policy is :mod:`mmwrs.compat.versions`.
Tested stacks: torch 2.13.0 + mmengine 0.10.7 (pinned) and torch 2.1.2 +
mmengine 0.10.3 (classic), both with mmcv 2.1.0, mmdet 3.3.0 and
mmsegmentation 1.2.2.
"""
from .atomic_checkpoints import kill_safe_checkpoints
from .checkpoint_loading import allow_mmengine_checkpoints, needs_checkpoint_allow_list
from .cpu_distributed import cpu_distributed_init
from .history_buffer import picklable_history_buffers
from .resume_guard import guard_resume
from .versions import SUPPORTED, check_versions, in_range, installed_version, version_tuple

# What every run with mmwrs needs (`import mmwrs`), and what mmwrs's own tools add.
FIXES_ON_IMPORT = (allow_mmengine_checkpoints, picklable_history_buffers, guard_resume)
TOOL_FIXES = (cpu_distributed_init, kill_safe_checkpoints)


def apply() -> None:
    """Apply the fixes every run with mmwrs needs (``import mmwrs`` calls this)."""
    for fix in FIXES_ON_IMPORT:
        fix()


def apply_tool_fixes() -> None:
    """The fixes mmwrs's own tools need on top of :func:`apply`."""
    apply()
    for fix in TOOL_FIXES:
        fix()


__all__ = [
    'SUPPORTED', 'check_versions', 'in_range', 'installed_version', 'version_tuple',
    'needs_checkpoint_allow_list', 'apply', 'apply_tool_fixes', 'FIXES_ON_IMPORT',
    'TOOL_FIXES', *[fix.__name__ for fix in FIXES_ON_IMPORT + TOOL_FIXES]]
