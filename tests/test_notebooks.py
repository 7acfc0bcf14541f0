"""Execute the teaching notebook in quick mode and check the numbers it computes.

The notebook (``notebooks/why_softmax_gating_is_slow.ipynb``) collects every
number it reports in a dict ``RESULTS``; an extra cell appended here prints it
as JSON, and the tests read it back.  The kernel is this interpreter
(``sys.executable``) through a kernel spec written to a temporary folder, with
the repository root on ``PYTHONPATH``, so the test works from a fresh clone
without an installed kernel.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "why_softmax_gating_is_slow.ipynb"
KERNEL = "moestat-notebook-test"


def _kernel_manager(folder: Path) -> KernelManager:
    """A kernel manager that starts ``sys.executable -m ipykernel_launcher`` with quick mode on."""
    spec = folder / KERNEL
    spec.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {"MOESTAT_NOTEBOOK_QUICK": "1", "PYTHONPATH": path, "MPLBACKEND": "Agg",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "moestat notebook test", "language": "python", "env": env}))
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder)]))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print(json.dumps(RESULTS, default=float))"))
    km = _kernel_manager(tmp_path_factory.mktemp("kernels"))
    client = nbclient.NotebookClient(nb, km=km, timeout=900, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    return json.loads(out)


def test_ran_in_quick_mode(results):
    assert results["quick"] is True


def test_formulas_match_moestat_gates(results):
    for fam, err in results["formula_check"].items():
        assert err < 1e-12, fam


def test_pde_dependencies(results):
    pde = results["pde"]
    # softmax: heat equation + gate-expert PDE + its consequence; the modified and (dense) normalized
    # sigmoid gates keep only the heat equation; normalized sigmoid with beta1 = 0 gets all three back
    assert {k: v["n_zero"] for k, v in pde.items()} == {
        "softmax": 3, "modified softmax": 1, "normalized sigmoid": 1, "normalized sigmoid, β1 = 0": 3}
    for name, v in pde.items():
        assert v["sines"]["heat equation"] < 1e-12, name
        assert v["smallest"][0] < 1e-12, name
    assert pde["softmax"]["sines"]["gate–expert PDE"] < 1e-12
    assert pde["normalized sigmoid, β1 = 0"]["sines"]["gate–expert PDE"] < 1e-12
    assert 0.1 < pde["modified softmax"]["sines"]["gate–expert PDE"] < 0.5
    assert pde["normalized sigmoid"]["sines"]["gate–expert PDE"] > 0.5
    # the first non-identity singular value stays clear of rounding for the gates without the PDE
    assert pde["modified softmax"]["smallest"][1] > 1e-4


def test_normalized_sigmoid_tail_is_softmax(results):
    sines = results["ns_tail"]["sine"]
    assert all(a > b for a, b in zip(sines, sines[1:]))        # shrinks as beta0 -> -inf
    assert 0.8 < results["ns_tail_slope"] < 1.2                 # like e^beta0


def test_profile_orders(results):
    q = results["profile_orders"]
    assert 3.6 < q["softmax|β1"] < 4.4        # gate slope of a split expert: order 4 (n^-1/4)
    assert 7.3 < q["softmax|b"] < 8.7         # intercept: order 8 (n^-1/8), the heat equation
    assert 3.6 < q["modified softmax|β1"] < 4.6
    assert 6.0 < q["modified softmax|b"] < 8.7


def test_finite_sample_sweep(results):
    assert len(results["tv_here"]) == 12
    assert all(0.0 < tv < 0.2 for tv in results["tv_here"])
    for key, row in results["slopes_here"].items():
        assert all(math.isfinite(v) for v in row.values()), key
    # over-fitting (k = 3) costs accuracy in the expert parameters on the same data sets
    assert results["penalty_here"] > 1.2


def test_stored_sweep_analysis(results):
    assert results["sweep_source"].startswith("stored sweep")
    for key, row in results["slopes_sweep"].items():
        assert -0.6 < row["TV"] < -0.4, key                      # density: n^-1/2 for every gate and k
    for fam, pen in results["penalty_sweep"].items():
        assert pen["b"] > 2.0 and 1.0 < pen["TV"] < 2.0, fam
    assert results["sigmoid_level_truth"] > 0.5
    assert results["sigmoid_level_tail_share"] > 0.25
