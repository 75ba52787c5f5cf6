"""Writing files so that a reader, or a kill, never sees a partial one.

Plain Python. Checkpoints (through mmengine's ``LocalBackend.put``, see
:mod:`mmwrs.compat`), composed configs and the sweep tools' records all go
through :func:`write_atomic`.
"""
import os
import os.path as osp
from typing import Union


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """Write ``data`` (text or bytes) to ``path`` atomically.

    The data goes to a hidden temporary file beside ``path``, is flushed to
    disk, and is renamed over ``path`` (atomic on POSIX): ``path`` holds the
    old content or the new, never a part. Missing folders are created.
    """
    path = str(path)
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp-{os.getpid()}')
    with open(tmp, 'w' if isinstance(data, str) else 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
