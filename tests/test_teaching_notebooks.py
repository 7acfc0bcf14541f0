"""Execute the teaching notebooks in quick mode and check the numbers each collects in ``RESULTS``.

As in ``tests/test_notebooks.py`` (whose kernel set-up is reused): every
notebook runs end to end with ``MOESTAT_NOTEBOOK_QUICK=1``, an appended cell
prints its ``RESULTS`` dict as JSON, and the tests compare those numbers with
references computed outside moestat (NumPy/scipy formulas in the notebooks,
stored benchmark files) or with exact identities.  A further test checks that
the committed notebooks hold the outputs of a run: figures and no errors.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from test_notebooks import KERNEL, _kernel_manager  # noqa: E402

pytestmark = pytest.mark.slow   # skipped by the fast tier (pytest -m "not slow"); CI runs it

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TEACHING = ("fitting_a_mixture_of_experts", "why_softmax_gating_is_slow", "gates_side_by_side",
            "reproducing_a_paper_figure", "classification_with_multinomial_experts", "scaling_out")


def _execute(name: str, folder: Path) -> dict:
    nb = nbformat.read(NOTEBOOKS / (name + ".ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import json; print(json.dumps(RESULTS, default=float))"))
    client = nbclient.NotebookClient(nb, km=_kernel_manager(folder), timeout=900, kernel_name=KERNEL,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    res = json.loads(out)
    assert res["quick"] is True
    return res


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _execute(name, tmp_path_factory.mktemp("kernels"))
        return cache[name]
    return get


@pytest.mark.parametrize("name", TEACHING)
def test_committed_notebook_has_figures_and_no_errors(name):
    nb = nbformat.read(NOTEBOOKS / (name + ".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "not executed end to end"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


def test_fitting_notebook(run):
    r = run("fitting_a_mixture_of_experts")
    assert r["max_abs_z_vs_truth"] < 4.0                  # every estimate within 4 SE of the truth
    assert all(0.4 < v < 2.5 for v in r["bse_ratio"])      # bootstrap SE vs observed information (B = 20)
    assert r["bootstrap_valid"] >= 18
    assert r["predict_identity"] < 1e-12                   # mean = sum_i g_i * expert mean
    assert abs(r["gate_at_0.4"] - 0.5) < 0.2               # the true gate is 1/2 at x = 0.4
    assert r["best_k_bic"] == 2
    assert r["restarts_at_best"] >= 1
    assert r["n_params"] == 8                              # 2 x (2 coef + sigma) + 2 gate coefficients


def test_gates_notebook(run):
    r = run("gates_side_by_side")
    gap = r["loglik_minus_truth"]
    # models that contain the truth reach at least its log-likelihood (computed with scipy in the notebook)
    for name in ("softmax", "temperature 0.5", "dense-to-sparse 5 -> 0.5", "top-2 of 3"):
        assert gap[name] > -1e-6, name
    # softmax with a fixed temperature is the softmax family: the same maximum
    assert gap["temperature 0.5"] == pytest.approx(gap["softmax"], abs=1e-5)
    assert gap["shared 1 + routed 2"] < gap["softmax"]     # half the weight is never routed
    assert r["normalized_sigmoid_check"] < 1e-12
    assert set(r["sweep_slopes"]) >= {"modified_softmax", "normalized_sigmoid", "topk", "temperature_softmax"}
    assert -0.7 < r["sweep_slopes"]["topk"] < -0.3


def test_reproduce_notebook(run):
    r = run("reproducing_a_paper_figure")
    assert {"demystifying-k2", "demystifying-k3", "demystifying-k4"} <= set(r["specs"])
    total = r["sizes"] * r["replicates"]
    assert r["first"] == r["sizes"] * (r["replicates"] // 2)
    assert r["resumed"] == total - r["first"] and r["stored"] == total     # resume runs only what is missing
    assert r["slope_harness"] == pytest.approx(r["slope_numpy"], abs=1e-10)
    lo, hi = r["slopes"]["D1"]["ci_low"], r["slopes"]["D1"]["ci_high"]
    assert lo <= r["slopes"]["D1"]["slope"] <= hi
    med = r["near_truth_median_slopes"]
    for k in ("k3", "k4"):                                  # near-truth starts: steeper over-fitted curves
        assert med["demystifying-%s|paper" % k] < med["demystifying-%s|mle" % k] - 0.5


def test_classification_notebook(run):
    r = run("classification_with_multinomial_experts")
    assert r["classes"] == [0, 1, 2]
    assert r["proba_sum_error"] < 1e-12 and r["proba_mixture_error"] < 1e-12
    assert r["accuracy"] > r["bayes_accuracy"] - 0.05       # Bayes accuracy from the true probabilities
    assert r["tv_to_truth"] < 0.15
    assert r["study_fits"] == 8 and r["study_tv_max"] < 0.3


def test_scaling_notebook(run):
    r = run("scaling_out")
    assert r["pool_equals_serial"] is True and r["dask_equals_serial"] is True
    assert r["slopes_equal"] is True and r["stored"] == 4
    gpu = json.loads((ROOT / "benchmarks" / "results" / "gpu_check.json").read_text())
    assert r["gpu_batch_speedup"] == pytest.approx(
        gpu["replicates_batch_1"]["seconds"] / gpu["replicates_batch_32"]["seconds"])
