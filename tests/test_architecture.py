"""The import graph of vid2vid/ and flow/ (ARCHITECTURE.md): parsed from the source (every import, those inside
functions too), each sub-package of vid2vid counted as one unit. A unit imports only units of lower layers; flow
imports nothing of vid2vid; no circles anywhere (within flow, between vid2vid's units, or through them)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# vid2vid's units, bottom to top; a unit may import only units of the layers below its own (and flow).
LAYERS = [
    ["errors"],
    ["families", "imaging", "signals", "video_io"],
    ["config", "landmarks"],
    ["data", "reference_flow"],
    ["losses", "eval"],
    ["models"],
    ["temporal", "checkpoint"],
    ["interop", "render"],
    ["train"],
    ["demo", "app"],
    ["cli"],
    ["__main__"],
]
LEVEL = {f"vid2vid.{unit}": i for i, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST) -> list[str]:
    """The project modules an import statement names (`from vid2vid import checkpoint` names vid2vid.checkpoint)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module in ("vid2vid", "flow"):
            return [f"{node.module}.{alias.name}" for alias in node.names]
        return [node.module]
    return []


def _unit(module: str) -> str | None:
    """vid2vid.<module or sub-package>, flow.<module>, or None for anything else."""
    parts = module.split(".")
    if parts[0] not in ("vid2vid", "flow"):
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """{unit: {imported unit: ["file:line", ...]}} over vid2vid/ and flow/."""
    graph: dict[str, dict[str, list[str]]] = {}
    for package in ("vid2vid", "flow"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = _unit(_module_name(path))
            edges = graph.setdefault(source, {})
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                for module in _imported(node):
                    target = _unit(module)
                    if target is not None and target != source and target not in ("vid2vid", "flow"):
                        edges.setdefault(target, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One circle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node], _ = 2, path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


GRAPH = import_graph()


def test_every_vid2vid_unit_has_a_layer():
    units = {u for u in GRAPH if u.startswith("vid2vid.")}
    assert not units - set(LEVEL), f"add these to a layer in LAYERS (and ARCHITECTURE.md): {sorted(units - set(LEVEL))}"


def test_no_import_circles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(
        f"{a} ({GRAPH[a][b][0]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_imports_only_go_down():
    upward = [f"{src} -> {dst} ({where[0]})" for src, edges in GRAPH.items() if src.startswith("vid2vid.")
              for dst, where in edges.items() if dst.startswith("vid2vid.") and LEVEL[dst] >= LEVEL[src]]
    assert not upward, "imports that do not go to a lower layer: " + "; ".join(upward)


def test_flow_uses_nothing_of_vid2vid():
    leaks = [f"{src} -> {dst} ({where[0]})" for src, edges in GRAPH.items() if src.startswith("flow")
             for dst, where in edges.items() if dst.startswith("vid2vid")]
    assert not leaks, leaks


def test_every_imported_project_module_exists():
    """vid2vid/, flow/, tools/ and tests/ import only modules of this tree (a module moved away but still imported
    somewhere would otherwise be found in another checkout that an editable install points at)."""

    def exists(module: str) -> bool:
        path = ROOT.joinpath(*module.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    missing = []
    for folder in ("vid2vid", "flow", "tools", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.append(node.module)
                missing += [f"{path.relative_to(ROOT)}:{node.lineno}: {m}" for m in modules
                            if m.split(".")[0] in ("vid2vid", "flow") and not exists(m)]
    assert not missing, missing


@pytest.mark.parametrize("graph, circle", [
    ({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}, ["a", "b", "c", "a"]),
    ({"a": {"b": ["x"]}, "b": {}, "c": {"a": ["z"]}}, None),
])
def test_the_circle_finder_finds_circles(graph, circle):
    assert find_cycle(graph) == circle
