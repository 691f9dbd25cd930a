"""Imports run one way: CLI -> harness -> strategies -> runtime, model interface, tools. Read from the source
with ``ast`` (every import, also those inside functions), so a new arrow the wrong way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Where each installed package's source lives in the repository (see pyproject's package-dir).
PACKAGES = {
    "agentkit": ROOT / "agentkit",
    "agentkit.tools": ROOT / "tools",
    "agentkit.eval": ROOT / "eval",
    "agentkit.prompts": ROOT / "prompts",
}
# Higher layers may import lower ones, never the reverse.
LAYERS = [("agentkit.cli", 3), ("agentkit.eval", 2), ("agentkit.strategies", 1)]  # everything else: 0


def layer(module: str) -> int:
    return next((rank for prefix, rank in LAYERS if module == prefix or module.startswith(prefix + ".")), 0)


def modules() -> dict[str, Path]:
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            parts = path.relative_to(directory).with_suffix("").parts
            if package == "agentkit" and parts[0] in ("tools", "eval", "prompts"):
                continue
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The agentkit modules ``path`` imports (``from agentkit.x import y`` counts as ``agentkit.x``, or
    ``agentkit.x.y`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    known = modules()
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in known
            )
    return {name for name in found if name == "agentkit" or name.startswith("agentkit.")}


ALL = modules()


def test_the_walk_sees_every_layer():
    assert {
        "agentkit.cli",
        "agentkit.cli.run",
        "agentkit.eval.runner",
        "agentkit.strategies.react",
        "agentkit.tools.sandbox",
        "agentkit.runtime",
        "agentkit.llm",
    } <= set(ALL)


@pytest.mark.parametrize("module", sorted(ALL))
def test_no_module_imports_a_layer_above_it(module):
    wrong = sorted(name for name in imports(ALL[module]) if layer(name) > layer(module))
    assert not wrong, f"{module} (layer {layer(module)}) imports {wrong} from a layer above it"


def test_no_import_cycles_at_module_level():
    graph = {m: {i for i in imports(p, top_level_only=True) if i in ALL and i != m} for m, p in ALL.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_library_imports_without_click():
    """The library runs without the command line's dependency (a fresh interpreter, click made unimportable)."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['click'] = None\n"
        "import agentkit.eval.runner, agentkit.strategies.react, agentkit.strategies.chat, agentkit.records\n"
        "from agentkit.strategies import load_strategy; from agentkit.llm import ScriptedLLM\n"
        "print(load_strategy('cot', ScriptedLLM([' The answer is 4.']))('2+2?').answer)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "4"
