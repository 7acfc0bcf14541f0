"""Router diagnostics over fits: the gate recorded along EM, res.routing_report(), SharedRouted routers."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat import routing

G = ms.gating


@pytest.fixture(scope="module")
def sim():
    return ms.datasets.load_sim_moe2()


def np_top1(coef, x):
    """(n, k) one-hot argmax of the softmax gate written out in NumPy (ties to the lower index)."""
    eta = coef[:, :1] + coef[:, 1:2] * x[None]
    return np.eye(coef.shape[0], dtype=bool)[np.argmax(eta, axis=0)]


@pytest.mark.parametrize("algorithm", ["em", "cem"])    # the speculative softmax loop and the plain loop
def test_recorded_gate_path(sim, algorithm):
    model = ms.GaussianMoE(2)
    plain = model.fit("y ~ x", data=sim, algorithm=algorithm, polish=False, n_init=2)
    rec = model.fit("y ~ x", data=sim, algorithm=algorithm, polish=False, n_init=2, record_gate=True)
    # recording changes nothing in the fit
    assert rec.loglik == plain.loglik and rec.n_iter == plain.n_iter
    np.testing.assert_array_equal(rec.params_tree.gate.coef, plain.params_tree.gate.coef)
    assert plain.gate_trace is None and plain.routing_report().iterations is None
    coef = np.asarray(rec.gate_trace.coef)
    assert coef.shape == (2000, 2, 2)
    T = rec.n_iter + (1 if rec.converged else 0)                 # a converged run records its final E-step too
    assert np.isfinite(coef[:T]).all() and np.isnan(coef[T:]).all()
    np.testing.assert_allclose(coef[T - 1], rec.params_tree.gate.coef, rtol=0, atol=1e-12)
    # saturation / change rate from the recorded coefficients, recomputed in NumPy
    x = sim["x"].to_numpy()
    E = np.stack([np_top1(coef[t], x) for t in range(T)])
    sat = np.array([(E[t] & E[-1]).sum(1).mean() for t in range(T)])
    chg = np.array([np.nan] + [(E[t] & ~E[t - 1]).sum(1).mean() for t in range(1, T)])
    it = rec.routing_report().iterations
    assert len(it) == T
    np.testing.assert_allclose(it["saturation"], sat, rtol=0, atol=1e-15)
    np.testing.assert_allclose(it["change_rate"], chg, rtol=0, atol=1e-15)
    assert it["saturation"].iloc[-1] == 1.0 and it["saturation"].iloc[0] < 1.0


def test_routing_report_values(sim):
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim, n_init=2)
    rep = res.routing_report(q=3.0)
    p = res.predict(kind="gate")
    share = p.mean(0)
    np.testing.assert_allclose(rep.experts["weight_share"], share, rtol=1e-12)
    loads = np.bincount(p.argmax(1), minlength=2)
    np.testing.assert_array_equal(rep.experts["topk_load"], loads)
    s = rep.summary
    assert s["jain_weight"] == pytest.approx(share.sum() ** 2 / (2 * (share ** 2).sum()), rel=1e-12)
    assert s["jain_topk"] == pytest.approx(loads.sum() ** 2 / (2 * (loads ** 2).sum()), rel=1e-12)
    assert s["load_imbalance"] == pytest.approx(loads.max() / loads.mean(), rel=1e-12)
    assert s["entropy"] == pytest.approx(np.mean(-(p * np.log(p)).sum(1)), rel=1e-12)
    assert s["tsallis"] == pytest.approx(np.mean((1 - (p ** 3).sum(1)) / 2), rel=1e-12)
    assert s["top_k"] == 1 and list(rep.experts.index) == [1, 2]
    assert rep.summary is not None and rep.iterations is None


def test_router_of_shared_routed_gate_is_the_routed_block():
    gate = G.SharedRouted(n_shared=2, routed="softmax")
    coef = np.array([[0.0, 0.0], [0.5, 2.0], [-1.0, 1.0]])
    params = G.SharedRoutedParams(shared=jnp.array([0.3, 0.7]), routed=G.SoftmaxParams(jnp.asarray(coef)))
    x = np.linspace(-2, 2, 9)
    Xg = jnp.asarray(np.vstack([np.ones_like(x), x]))
    p = routing.router_probs(gate, params, Xg)
    eta = coef[:, :1] + coef[:, 1:] * x
    want = (np.exp(eta) / np.exp(eta).sum(0)).T
    np.testing.assert_allclose(p, want, rtol=1e-13)
    assert routing.router(gate)[1] == 2 and routing.default_top_k(gate) == 1
    assert routing.default_top_k(G.TopK(k=2)) == 2 and routing.default_top_k(G.ExpertPrototyping(groups=3)) == 3


def test_routing_summary_hand_values():
    p = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    s = routing.routing_summary(p, top_k=1, q=2.0)
    # top-1 (ties low): experts 0, 0, 1 -> loads (2, 1); weight shares (1.75, 1.25) / 3
    assert s["jain_topk"] == pytest.approx(9 / (2 * 5))
    assert s["jain_weight"] == pytest.approx(9 / (2 * (1.75 ** 2 + 1.25 ** 2)))
    assert s["load_imbalance"] == pytest.approx(2 / 1.5)
    assert s["entropy"] == pytest.approx((np.log(2) + 0 + -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))) / 3)
    assert s["tsallis"] == pytest.approx((0.5 + 0 + (1 - 0.0625 - 0.5625)) / 3)
