"""The DeepSeekMoE experiment's four true models (theory.md §2.5): written down, simulated, fitted with k1=2, k2=3."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import moestat as ms
from moestat.truths import deepseek

from _truths import monotone



def test_true_models_hold_the_published_values():
    t1 = deepseek.true_model("thm1")
    sh, ro = t1.params.expert.blocks
    assert (sh.coef.tolist(), sh.scale.tolist(), sh.sigma2.tolist()) == ([[0.0, 6.0]], [-8.0], [0.25])
    assert (ro.coef[:, 1].tolist(), ro.scale.tolist(), ro.sigma2.tolist()) == ([-12.0, 12.0], [4.0, 4.0], [0.4, 0.4])
    assert t1.params.gate.routed.coef.tolist() == [[-0.5, 5.0], [0.5, 5.0]]
    c = t1.canonical()   # softmax reference row 0; ReLU |scale| = 1
    assert c.gate.routed.coef.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert c.expert.blocks[0].coef.tolist() == [[0.0, 48.0]] and c.expert.blocks[0].scale.tolist() == [-1.0]
    t2 = deepseek.true_model("thm2")
    sh, ro = t2.params.expert.blocks
    assert (sh.coef.tolist(), sh.sigma2.tolist()) == ([[0.0, 2.0]], [0.2])
    assert (ro.coef.tolist(), ro.sigma2.tolist()) == ([[2.0, 8.0], [1.0, -6.0]], [0.4, 0.4])
    spec = json.loads(json.dumps(t1.spec_section()))
    assert spec["expert"] == {"name": "stacked", "blocks": [["relu", 1], [{"name": "relu", "bias": False}, 2]]}
    assert spec["k"] == 3 and spec["params"]["expert"]["blocks"][1]["scale"] == [4.0, 4.0]
    m = deepseek.fitted_model("thm1")
    assert (m.n_shared, m.n_routed) == (2, 3) and m.expert.blocks[1][0] == ms.experts.ReLUExpert(bias=False)
    with pytest.raises(ValueError, match="unknown DeepSeekMoE setting 'thm5'"):
        deepseek.true_model("thm5")


def test_simulated_data_follow_the_true_model():
    t = deepseek.true_model("thm2")
    x, y, z = t.simulate(20000, seed=[7, 20000])
    assert x.min() >= -3 and x.max() <= 3 and abs(np.mean(z == 0) - 0.5) < 0.015   # shared block weight 1/2
    # routed softmax gate is constant in x (equal slopes): P(z = 2 | routed) = e^0.5 / (e^-0.5 + e^0.5)
    r = z[z > 0]
    assert abs(np.mean(r == 2) - 1 / (1 + np.exp(-1.0))) < 0.015
    res0 = y[z == 0] - 2.0 * x[z == 0, 0]
    assert abs(res0.var() - 0.2) < 0.01            # tau is a variance
    res1 = y[z == 1] - (2.0 + 8.0 * x[z == 1, 0])
    assert abs(res1.var() - 0.4) < 0.02


SETTINGS = list(deepseek.SETTINGS)
N = 2000


def _fit(model, x, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        return model.fit(x, y, polish=False, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("setting", SETTINGS)
def test_overspecified_model_contains_the_truth_and_em_climbs_from_it(setting):
    t = deepseek.true_model(setting)
    x, y, _ = t.simulate(N, seed=[2025, N])
    model = deepseek.fitted_model(setting)          # k1 = 2 shared, k2 = 3 routed
    start = deepseek.overspecified_truth(t, 2, 3)
    res = _fit(model, x, y, init=start, max_iter=200)
    ll_true = t.loglik(x, y)
    np.testing.assert_allclose(res.loglik_trace[0], ll_true, rtol=1e-9)   # the same model, written with 5 experts
    assert res.loglik >= ll_true and monotone(res) >= -1e-12
    assert res.df == model.n_params(2, 2)
    if setting in ("thm1", "thm3"):                  # routed eta2 ReLU(eta1 x): eta0 stays 0
        assert np.all(res.params_tree.expert.blocks[1].coef[:, 0] == 0.0)


@pytest.mark.slow
def test_random_starts_reach_the_true_likelihood_thm1():
    """Default starts (k-means / random centres, rotated over shared and routed roles) on Thm 1 data."""
    t = deepseek.true_model("thm1")
    x, y, _ = t.simulate(N, seed=[2025, N])
    res = _fit(deepseek.fitted_model("thm1"), x, y, n_init=5, max_iter=600)
    assert res.loglik >= t.loglik(x, y) and monotone(res) >= -1e-12


@pytest.mark.parametrize("setting", deepseek.SETTINGS)
def test_true_models_match_the_monte_carlo_specs(setting):
    """The harness's experiment specs (moestat/simulations/deepseek-thm*.json), when installed, hold the same truth."""
    from importlib import resources
    path = resources.files("moestat") / "simulations" / ("deepseek-%s.json" % setting)
    if not path.is_file():
        raise AssertionError("the Monte Carlo spec for %s is missing from the package" % setting)
    spec = json.loads(path.read_text())["truth"]
    mine = deepseek.true_model(setting).spec_section()
    assert spec["params"] == mine["params"] and spec["k"] == mine["k"]
    t = deepseek.true_model(setting)

    def expert(f):
        if isinstance(f, str):
            return ms.experts.get_expert(f)
        return type(ms.experts.get_expert(f["name"]))(**{k: v for k, v in f.items() if k != "name"})
    gate = ms.gating.SharedRouted(**{k: v for k, v in spec["gate"].items() if k != "name"})
    assert gate == t.model.gate
    assert ms.experts.Stacked(tuple((expert(f), c) for f, c in spec["expert"]["blocks"])) == t.model.expert
