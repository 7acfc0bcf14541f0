"""The package's import graph: no circle, and every import points down the layers of docs/architecture.md.

Imports are read from the source (``ast``), at module level *and* inside
functions, so a circle cannot hide behind a function-level import.  A new
module must be given a layer in ``LAYERS`` (the test fails until it is).
"""
from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import textwrap
from collections import defaultdict

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "moestat"

#: lowest first; a module may import modules of its own layer or below, never above.
LAYERS = [
    ("foundation", ["moestat._config", "moestat._jax", "moestat._math", "moestat._pytree", "moestat._registry", "moestat._parallel",
                    "moestat.exceptions"]),
    ("data", ["moestat.data", "moestat.datasets"]),
    ("fitting", ["moestat.fitting"]),
    ("families", ["moestat.gating", "moestat.experts"]),
    ("derived", ["moestat.sampling", "moestat.losses", "moestat.diagnostics", "moestat.routing", "moestat.plot"]),
    ("inference", ["moestat.inference"]),
    ("estimators", ["moestat.estimators"]),
    ("truths", ["moestat.truths"]),
    ("front ends", ["moestat.sklearn", "moestat.montecarlo"]),
    ("command line", ["moestat.cli"]),
]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> moestat modules it imports (anywhere in its source)."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("moestat"):
                    continue
                for alias in node.names:
                    sub = target + "." + alias.name
                    graph[mod].add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                graph[mod].update(a.name for a in node.names if a.name.startswith("moestat"))
        graph.setdefault(mod, set())
    return dict(graph)


def layer_of(mod: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in prefixes):
            return i
    raise KeyError(mod)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _packages(graph):
    def top(m):
        return ".".join(m.split(".")[:2])
    pg: dict[str, set[str]] = defaultdict(set)
    for m, targets in graph.items():
        if m == "moestat":
            continue
        for t in targets:
            if t != "moestat" and top(m) != top(t):
                pg[top(m)].add(top(t))
    return pg


GRAPH = import_graph()


def test_tarjan_finds_a_planted_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_layer():
    missing = [m for m in GRAPH if m != "moestat" and not _has_layer(m)]
    assert not missing, "give these modules a layer in tests/test_architecture.py: %s" % missing


def _has_layer(m):
    try:
        layer_of(m)
        return True
    except KeyError:
        return False


def test_no_import_circle_between_modules():
    assert cycles(GRAPH) == []


def test_no_import_circle_between_packages():
    assert cycles(_packages(GRAPH)) == []


@pytest.mark.parametrize("mod", sorted(m for m in GRAPH if m != "moestat"))
def test_imports_point_down(mod):
    up = sorted(t for t in GRAPH[mod] if t != "moestat" and layer_of(t) > layer_of(mod))
    assert not up, "%s (layer %r) imports %s from a higher layer" % (mod, LAYERS[layer_of(mod)][0], up)


def test_import_moestat_loads_no_heavy_module():
    """``import moestat`` imports no numerical library: JAX, pandas, SciPy, statsmodels and matplotlib load on first use."""
    code = ("import sys, moestat; print(__import__('json').dumps(sorted(m for m in ('jax', 'pandas', 'scipy', "
            "'statsmodels', 'matplotlib', 'dask', 'numpy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(ROOT.parent))
    assert json.loads(out.stdout) == []


def test_float64_when_jax_is_imported_first():
    """The settings reach JAX whether it is imported after moestat (environment) or before (its config)."""
    for order in ("import moestat, jax", "import jax; import moestat; import moestat.fitting.em"):
        code = order + "; import jax.numpy as jnp; print(jnp.ones(1).dtype, jax.config.jax_default_matmul_precision)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=str(ROOT.parent))
        assert out.stdout.split() == ["float64", "highest"], (order, out.stdout)


def test_a_fit_of_arrays_does_not_import_pandas():
    """pandas (~0.2 s of a fresh process) loads only when a pandas object is asked for or passed in; the
    restart table is built on first access and equals the columns the fit kept."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import moestat as ms
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, 300)
        y = np.where(x > 0, 2 * x, -x) + 0.1 * rng.standard_normal(300)
        res = ms.GaussianMoE(2).fit(x[:, None], y, n_init=3, seed=1)
        before = "pandas" in sys.modules
        r = res.restarts
        print(json.dumps({"before": before, "after": "pandas" in sys.modules, "type": type(r).__name__,
                          "rows": len(r), "starts": r["start"].tolist(),
                          "n_best": res.n_best_starts}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(ROOT.parent))
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["before"] is False and got["after"] is True
    assert got["type"] == "DataFrame" and got["rows"] == 3 and got["starts"] == [0, 1, 2]
    assert 1 <= got["n_best"] <= 3
