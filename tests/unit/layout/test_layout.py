"""The layout rules of docs/architecture.md, checked on the source tree (no imports executed).

* no import cycle between tortie modules (imports at module level; lazy imports inside functions
  are how a composition root reaches up, and do not run at import time);
* no module in src/ over 600 lines;
* the netlink header framed in one module (tortie.kernel.netlink);
* no fake outside tortie.testing;
* product code never imports tortie.cli or tortie.testing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"
PACKAGE = SRC / "tortie"


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def _resolve(name: str, known: set[str]) -> str | None:
    """The tortie module an imported name lives in (a module, or the package defining the name)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    known = {name for name, _ in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in modules():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        edges: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports never run
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("tortie."):
                    found = _resolve(target, known)
                    if found is not None and found != name:
                        edges.add(found)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph(top_level_only=True)
    assert "tortie.kernel.netlink" in graph["tortie.kernel.rtnl"]  # the graph is read, not empty
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > 600}
    assert not long, long


def test_the_netlink_header_is_framed_in_one_module() -> None:
    # struct nlmsghdr: u32 length, u16 type, u16 flags, u32 seq, u32 pid
    framing = {name for name, path in modules() if "=IHHII" in path.read_text()}
    assert framing == {"tortie.kernel.netlink"}, framing


def test_no_fake_outside_testing() -> None:
    fakes = []
    for name, path in modules():
        if name.startswith("tortie.testing"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.startswith("Fake"):
                fakes.append(f"{name}.{node.name}")
    assert not fakes, fakes


def test_product_code_never_imports_the_cli_or_the_testing_package() -> None:
    graph = import_graph(top_level_only=False)
    offenders = {name for name, edges in graph.items()
                 if not name.startswith(("tortie.cli", "tortie.testing"))
                 and any(e.startswith(("tortie.cli", "tortie.testing")) for e in edges)}
    assert not offenders, offenders
