"""No import cycle among mmwrs's modules (issue 19: compat and resume_guard imported each other).

The graph is read from the source (AST), so lazy imports inside functions count too: a
cycle hidden in a function still ties the modules together.
"""
import ast
import os.path as osp
from pathlib import Path

from conftest import REPO

PACKAGE = Path(REPO) / 'mmwrs'


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _imports(path: Path, name: str, modules: set) -> set:
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub where there is one.
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                       for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph() -> dict:
    paths = {_module_name(path): path for path in PACKAGE.rglob('*.py')}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict):
    """One cycle as a list of module names (first repeated at the end), or None."""
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 'open':
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_graph_sees_the_modules():
    graph = import_graph()
    assert 'mmwrs.compat.resume_guard' in graph and osp.isdir(PACKAGE)
    assert find_cycle({'a': {'b'}, 'b': {'a'}}) == ['a', 'b', 'a']


def test_no_import_cycle_in_mmwrs():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle in mmwrs: ' + ' -> '.join(cycle)
