"""Run a function as a replayed CUDA graph, recaptured when its tensors move.

Generic: knows nothing of rescaling. The caller gives the function and a key
(the addresses of every tensor it reads or writes); a call replays the graph
while the key holds, else runs the function eagerly and captures it again.
"""
import inspect
import warnings
from typing import Any, Callable, Hashable, Optional

import torch

# Captures after which the inputs are taken to be reallocated on every call (a
# norm that rebinds running_var each forward): each capture synchronizes and
# empties the allocator's cache, which costs more than it saves.
MAX_CAPTURES = 8


def _supports_thread_local_capture() -> bool:
    graph = getattr(torch.cuda, 'graph', None)
    return graph is not None and 'capture_error_mode' in inspect.signature(graph).parameters


class GraphedCall:
    """``fn`` replayed from a CUDA graph captured on ``device``.

    Args:
        fn: The work; must only launch kernels (no host reads).
        key: Returns a hashable of the tensors ``fn`` touches; a change
            recaptures.
        name: What the work is, for warnings.
        enabled: ``False`` runs ``fn`` eagerly on every call.
        max_captures: Recaptures allowed before running eagerly for good.
    """

    def __init__(self, fn: Callable[[], None], key: Callable[[], Hashable],
                 name: str = 'call', enabled: bool = True, max_captures: int = MAX_CAPTURES):
        self.fn, self.key, self.name = fn, key, name
        self.enabled = bool(enabled)
        self.max_captures = max_captures
        self.captures = 0
        self.graph: Optional[Any] = None
        self._graph_key: Optional[Hashable] = None

    def __call__(self, device: torch.device) -> None:
        if not self.enabled:
            self.fn()
            return
        if self.graph is not None and self.key() == self._graph_key:
            self.graph.replay()
            return
        # This call runs eagerly (creating what the graph will read), then
        # records the same work for the next calls.
        self.fn()
        self.graph, self._graph_key = None, None
        if self.captures >= self.max_captures:
            self._give_up(f'its tensors were reallocated {self.captures} times (e.g. a '
                          'norm rebinds running_var every forward), and each recapture '
                          'synchronizes')
            return
        if not _supports_thread_local_capture():
            self._give_up(f'torch {torch.__version__} has no thread-local capture '
                          '(torch.cuda.graph(capture_error_mode=...), torch >= 2.1)')
            return
        self.captures += 1
        graph = torch.cuda.CUDAGraph()
        try:
            # Pinned to the tensors' device: a capture records the current
            # device's stream only, and work on another device's tensors would
            # run eagerly, leaving an empty graph that replays nothing.
            # thread_local: other threads' CUDA calls (a dataloader's pin-memory
            # thread) are none of this capture's business.
            with torch.cuda.device(device), \
                    torch.cuda.graph(graph, capture_error_mode='thread_local'):
                self.fn()
        except Exception as exc:  # noqa: BLE001 (an uncapturable op: stay eager)
            self._give_up(f'capturing it failed ({exc})')
            return
        self.graph, self._graph_key = graph, self.key()

    def _give_up(self, why: str) -> None:
        self.enabled = False
        warnings.warn(f'WRS: running the {self.name} without a CUDA graph from now on: '
                      f'{why}.', RuntimeWarning, stacklevel=4)
