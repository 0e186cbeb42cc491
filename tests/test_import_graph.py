"""The package's import graph, read from the source with ``ast`` (every import, also those inside functions):
the layers below the composition root never reach up, nothing below the api imports it, and there is no
import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "matchdetr"

# Layers that models/, losses/ and matching/ must not import: what configures, trains, converts or runs them.
ABOVE = {"config", "losses", "matching", "engine", "interop", "api", "cli", "compose", "data", "analysis",
         "presets", "inference", "reports"}
PACKAGE = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``matchdetr...`` name an import statement of ``path`` refers to (``from a import b``: ``a.b``, which
    :func:`graph` resolves to module ``a.b`` or, when ``b`` is a name defined in ``a``, to ``a``). A package's
    ``__init__`` that runs only because one of its submodules is imported is not an edge, as for any submodule."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("matchdetr"):
                out |= {f"{target}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("matchdetr")}
    return out


def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (names resolved to the module that defines them)."""
    raw = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}

    def resolve(name: str) -> str:
        while name and name not in raw:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    return {m: {resolve(t) for t in targets if resolve(t) and resolve(t) != m} for m, targets in raw.items()}


def cycles(g: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_graph_reader_sees_relative_and_lazy_imports() -> None:
    g = graph()
    assert "matchdetr.compose.model_config" in g["matchdetr.config.schema"]  # from ..compose.model_config import ...
    assert "matchdetr.models.detector" in g["matchdetr.compose.detectors"]  # from ..models.detector import
    assert "matchdetr.engine.run_dir" in g["matchdetr.api"]  # an import inside a function


# What each lower layer may not import (the criterion holds a matcher, so losses may import matching). The
# engine trains what the composition root builds: it may use compose, data and config, never the user-facing
# layers (api, cli), the commands' analyses, the converters or the presets (the composition root in turn may
# hand the criterion the engine's all-reduce); data reads only its config section; ops import nothing above; io (decoding, atomic writes, safe loading, output
# paths, progress) sits at the bottom and imports nothing of the package.
FORBIDDEN = {"models": ABOVE, "losses": (ABOVE - {"losses", "matching"}) | {"models"},
             "matching": (ABOVE - {"matching"}) | {"models"},
             "engine": {"api", "cli", "analysis", "interop", "presets", "inference", "reports"},
             "compose": {"api", "cli", "analysis", "presets", "inference", "reports"},
             "io": PACKAGE - {"io", "__init__", "__main__"},
             "data": (ABOVE - {"data", "config"}) | {"models"}, "ops": ABOVE | {"models"}}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upwards(layer: str) -> None:
    bad = {}
    for module, targets in graph().items():
        if module != f"matchdetr.{layer}" and not module.startswith(f"matchdetr.{layer}."):
            continue
        up = {t for t in targets if len(t.split(".")) > 1 and t.split(".")[1] in FORBIDDEN[layer]}
        if up:
            bad[module] = sorted(up)
    assert not bad, bad


def test_no_import_circles() -> None:
    assert not [sorted(c) for c in cycles(graph())]


def test_only_the_entry_point_imports_the_cli() -> None:
    g = graph()
    users = {m for m, targets in g.items() if any(t.startswith("matchdetr.cli") for t in targets)}
    assert {m for m in users if not m.startswith("matchdetr.cli")} == {"matchdetr.__main__"}
