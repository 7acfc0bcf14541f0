"""Every shipped spec (and each of its variants) still sets up, simulates, starts and scores.

A run of every spec, even on a tiny grid, is dominated by compiling each
variant's EM program (30-100 s per variant on 2 cores), so this file checks
everything around EM for every variant -- families and true parameters,
the covariate law and simulator, the paper protocol's starts, the atom
adapters, the Voronoi and density losses -- and runs EM end to end once, on
a tiny two-variant spec whose variants share one compiled program.
"""
import copy
import json
import os

import jax
import numpy as np
import pandas as pd
import pytest

from moestat.losses import conditional_distance
from moestat.montecarlo import available_specs, load_spec, run_experiment
from moestat.montecarlo.runner import SLOPE_COLUMNS
from moestat.montecarlo.spec import Spec
from moestat.montecarlo.targets import is_target

#: zero-noise near-truth starts: the truth written in the fitted model's layout (duplicated atoms)
ZERO_NOISE = {"gate_sd": [0.0, 0.0], "expert_sd": [0.0, 0.0], "variance_sd": [0.0, 0.0], "n_tries": 1,
              "variance_start": "variance"}

VARIANTS = [(name, v.variant) for name in sorted(available_specs()) for v in load_spec(name).variants()]


def _variant(name, key):
    return next(v for v in load_spec(name).variants() if v.variant == key)


def test_every_experiment_of_the_issue_is_shipped():
    names = set(available_specs())
    expected = {"deepseek-thm%d" % i for i in range(1, 5)} | {"demystifying-k%d" % k for k in (2, 3, 4)} \
        | {"gaussian-gated-m%d" % m for m in range(1, 5)} \
        | {"multinomial-regime1", "multinomial-regime2", "multinomial-modified", "topk-exact", "topk-over"} \
        | {"sigmoid-vs-softmax", "temperature-vs-activation", "mendes-jiang-parametric", "mendes-jiang-tradeoff"}
    assert expected <= names
    for name in names:
        spec = load_spec(name)
        for v in spec.variants():
            for L in v.losses:
                assert isinstance(L.get("theory_row"), int), (name, L["name"])
        hashes = [v.hash for v in spec.variants()]
        assert len(set(hashes)) == len(hashes)


@pytest.mark.parametrize("name,key", VARIANTS, ids=["%s-%s" % nk if nk[1] else nk[0] for nk in VARIANTS])
def test_spec_sets_up_simulates_and_scores(name, key):
    from moestat.montecarlo.worker import compute_losses, experiment_for, replicate_data
    from moestat.montecarlo import protocols
    spec = _variant(name, key)
    raw = copy.deepcopy(spec.raw)
    target = is_target(raw["truth"])     # a named non-MoE truth: no near-truth starts, data-driven ones instead
    if not target:
        raw["protocol"] = "paper"
        raw.setdefault("protocols", {})["paper"] = dict(raw["protocols"].get("paper", {}), **ZERO_NOISE)
    raw.pop("reference", None)
    for L in raw["losses"]:
        (L.get("options") or {}).pop("against_reference", None)
    exp = experiment_for(raw)
    x, y, data = replicate_data(exp, 200, 0)
    assert x.shape == (200, int(raw["x"].get("d", 1))) and np.all(np.isfinite(x))
    assert float(np.asarray(data.w).sum()) == 200
    if exp.fit.expert.response == "categorical":
        assert set(np.unique(y)) <= set(range(exp.truth.expert.n_classes))
    if target:
        start = jax.tree_util.tree_map(lambda a: np.asarray(a)[0], protocols.starts(exp, 200, 0, x, y, data))
    else:
        start = protocols.near_truth_start(exp, 200, np.random.default_rng(0))
    losses, errs, perr = compute_losses(exp, exp.fit.canonical(start))
    assert set(losses) == {L["name"] for L in raw["losses"]}
    # every predicted per-parameter rate names an atom group and block this model's errors have
    for rule in spec.param_rates:
        for block in rule["blocks"]:
            assert any(k.startswith("%s.%s[" % (rule["group"], block)) for k in perr), (rule, sorted(perr))
    for L in raw["losses"]:
        v = losses[L["name"]]
        assert np.isfinite(v) and v >= 0, (L["name"], v)
        if L["kind"] in ("tv", "hellinger"):
            assert v <= 1 + errs[L["name"]]
    if target:
        return
    same_layout = exp.fit.k == exp.truth.k
    represents_truth = same_layout or getattr(exp.fit.gate, "name", "") == "gaussian"
    if represents_truth and type(exp.fit.gate) is type(exp.truth.gate):
        # the zero-noise start is the truth itself (exact fit), or the truth with each Gaussian-gate atom's
        # mass split over its copies (over-fit): every loss is 0
        for name_, v in losses.items():
            assert v == pytest.approx(0.0, abs=1e-9 + 2 * errs.get(name_, 0.0)), name_


def test_variants_share_data_and_keep_their_own_hash():
    spec = load_spec("gaussian-gated-m1")
    k4, k5 = spec.variants()
    assert (k4.variant, k5.variant) == ("k4", "k5")
    assert k4.raw["fit"]["k"] == 4 and k5.raw["fit"]["k"] == 5
    assert k4.raw["fit"]["gate"] == spec.raw["fit"]["gate"]            # fit updated key by key
    assert [L["name"] for L in k5.losses] == ["Dbar (k5)", "TV (k5)"]
    assert [L["published"] for L in k4.losses + k5.losses] == [-0.50554, None, -0.50464, None]
    assert k4.hash != k5.hash and k4.seed == k5.seed
    np.testing.assert_array_equal(k4.grid(False), k5.grid(False))
    assert k4.grid(False).size == 99 and k4.replicates(False) == 20     # the published design
    with pytest.raises(ValueError, match="unknown field"):
        Spec(dict(spec.raw, variants={"a": {"gate": "softmax"}})).variants()


def test_protocol_grid_overrides_the_spec_grid_without_changing_the_hash():
    k3 = load_spec("demystifying-k3")
    mle = k3.with_protocol("mle")
    assert k3.grid(False).size == 200
    assert mle.grid(False)[0] == 10000 and mle.grid(False)[-1] == 100000 and mle.grid(False).size == 10
    raw = copy.deepcopy(mle.raw)
    del raw["protocols"]["mle"]["grid"]
    assert Spec(raw).hash == mle.hash


def test_gaussian_gate_near_truth_start_follows_the_aistats_protocol():
    from moestat.montecarlo import protocols
    from moestat.montecarlo.worker import experiment_for
    spec = _variant("gaussian-gated-m3", "k5")
    exp = experiment_for(spec.raw)
    n = 5000
    st = exp.settings
    sd_g = st["gate_sd"][0] * n ** st["gate_sd"][1]
    start = protocols.near_truth_start(exp, n, np.random.default_rng(3))
    c_true = np.array([-0.1, 0.1, 0.5])
    w = np.asarray(start.gate.weight)
    mean, cov = np.asarray(start.gate.mean), np.asarray(start.gate.cov)
    # each fitted atom: both centre coordinates moved by one scalar draw from its true centre
    j = np.argmin(np.abs(mean[:, :1] - c_true[None]), axis=1)
    shift = mean - c_true[j][:, None]
    np.testing.assert_allclose(shift[:, 0], shift[:, 1], atol=1e-15)
    assert np.all(np.abs(shift) < 6 * sd_g)
    # masses: pi*_j split equally over its copies (sum 1); covariances stay diagonal, variances grow
    np.testing.assert_allclose(w, np.array([0.3, 0.4, 0.3])[j] / np.bincount(j, minlength=3)[j], rtol=1e-12)
    assert np.all(cov[:, 0, 1] == 0) and np.all(np.diagonal(cov, axis1=1, axis2=2) >=
                                                np.array([0.042824, 0.0175, 0.01])[j][:, None])


def test_categorical_tv_matches_a_hand_computation():
    # two class-probability tables that do not depend on x: TV = (1/2) sum_c |p_c - q_c|
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    f = lambda P: (lambda X, y: np.log(np.broadcast_to(P, (X.shape[0], 3))))  # noqa: E731
    d = conditional_distance(f(p), f(q), x_uniform=(0, 1), categorical=True)
    assert d.value == pytest.approx(0.5 * (0.2 + 0.1 + 0.1), abs=1e-14)


def test_a_variant_spec_runs_end_to_end(tmp_path):
    raw = json.loads(json.dumps(load_spec("demystifying-k2").raw))
    raw.update(name="tiny-variants", grid={"full": [{"values": [150, 300]}], "quick": [{"values": [150, 300]}]},
               replicates={"full": 2, "quick": 2},
               losses=[{"name": "D1", "kind": "D1", "predicted": -0.5, "theory_row": 2}],
               variants={"loose": {"fit": {"tol": 1e-3}}, "tight": {"fit": {"tol": 1e-7}}})
    raw["protocols"]["paper"].pop("tol")  # the fit's tol decides (same compiled program for both variants)
    res = run_experiment(Spec(raw), out_dir=str(tmp_path), workers=1, progress=False, n_boot=50)
    slopes = pd.read_csv(os.path.join(tmp_path, "slopes.csv"))
    assert list(slopes.columns) == SLOPE_COLUMNS
    assert list(slopes["loss"]) == ["D1 (loose)", "D1 (tight)"] and set(slopes["experiment"]) == {"tiny-variants"}
    assert list(slopes["theory_row"]) == [2, 2]
    for key in ("loose", "tight"):
        per_rep = pd.read_csv(os.path.join(tmp_path, key, "results.csv"))
        assert len(per_rep) == 4 and per_rep["loss_D1 (%s)" % key].gt(0).all()
    loose = pd.read_csv(os.path.join(tmp_path, "loose", "results.csv"))
    tight = pd.read_csv(os.path.join(tmp_path, "tight", "results.csv"))
    assert (loose["n_iter"] <= tight["n_iter"]).all() and (loose["loglik"] <= tight["loglik"] + 1e-9).all()
    assert os.path.getsize(os.path.join(tmp_path, "tiny-variants-paper.png")) > 10000
    assert res.computed == 8


def test_command_column_records_a_replicate_override():
    from moestat.montecarlo.runner import command_line
    spec = load_spec("topk-exact")
    assert command_line(spec, True) == "moestat reproduce topk-exact --protocol mle --quick"
    assert command_line(spec, True, spec.replicates(True)) == command_line(spec, True)
    assert command_line(spec, True, 2).endswith("--quick --replicates 2")


def test_a_broken_variant_fails_before_any_variant_runs(tmp_path):
    raw = json.loads(json.dumps(load_spec("demystifying-k2").raw))
    raw["variants"] = {"ok": {"fit": {"k": 2}}, "bad": {"fit": {"expert": "nope"}}}
    with pytest.raises(ValueError, match="variant 'bad' cannot be set up"):
        run_experiment(Spec(raw), out_dir=str(tmp_path), workers=1, progress=False)
    assert not os.path.exists(os.path.join(tmp_path, "ok"))
