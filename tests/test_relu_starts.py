"""Kink search for single-neuron experts and starts for hard-to-start gates (branch relu5).

* the opt-in hinge search of :class:`moestat.experts.GaussianNeuron` (``hinge_candidates``: a global search
  over the ReLU kink proposed in every M-step) finds a kink that Gauss-Newton from the current neuron misses;
* gates with ``hold_in_starts`` (normalized sigmoid) keep their base parameters while starts are built.
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat.fitting import em
from moestat.data.design import make_data
from moestat.experts import NeuronParams
from moestat.truths.truth import TrueModel

from _truths import monotone

CTL = em.make_control(var_floor=1e-10)


@partial(jax.jit, static_argnums=(0,))
def _m_step(expert, params, tau, X, y, w):
    none = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), params)
    return expert.m_step(params, tau, X, y, w, CTL, 8, none)


def _hinge_problem(n=600):
    """y = 2 ReLU(x - 1.5) + noise on x ~ U(-3, 3), one expert, a neuron with its kink at x = -1.5."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-3, 3, n)
    X = jnp.asarray(np.vstack([np.ones(n), x]))
    y = jnp.asarray(2.0 * np.maximum(x - 1.5, 0.0) + 0.2 * rng.standard_normal(n))
    w = np.ones(n)
    w[-25:] = 0.0                    # padding rows must not matter (their x still spans the range)
    p0 = NeuronParams(coef=jnp.array([[1.5, 1.0]]), scale=jnp.array([1.0]), sigma2=jnp.array([1.0]))
    return X, y, jnp.ones((1, n)), jnp.asarray(w), p0


def _rss(expert, p, X, y, w):
    return float(jnp.sum(w * (y - expert.mean(p, X)[0]) ** 2))


def test_hinge_search_moves_the_kink_in_one_m_step():
    """One M-step with the hinge search lands next to the true kink; local Gauss-Newton alone does not."""
    X, y, tau, w, p0 = _hinge_problem()
    with_hinge, without = ms.experts.ReLUExpert(hinge_candidates=16), ms.experts.ReLUExpert()
    assert without.hinge_candidates == 0           # opt-in (its cost: see the ReLUExpert docstring)
    p1 = _m_step(with_hinge, p0, tau, X, y, w)
    kink = -float(p1.coef[0, 0] / p1.coef[0, 1])
    assert abs(kink - 1.5) < 0.1, kink
    truth = NeuronParams(coef=jnp.array([[-1.5, 1.0]]), scale=jnp.array([2.0]), sigma2=jnp.array([0.04]))
    rss_true = _rss(with_hinge, truth, X, y, w)
    assert _rss(with_hinge, p1, X, y, w) < 1.05 * rss_true
    q1 = _m_step(without, p0, tau, X, y, w)
    assert _rss(without, q1, X, y, w) > 1.5 * rss_true      # why the search is there
    assert float(p1.scale[0]) == 1.0                         # canonical |eta2| = 1


def test_hinge_search_needs_an_intercept_column():
    """Without an intercept column the hinge candidate is never used (the neuron has no bias to place a kink)."""
    X, y, tau, w, p0 = _hinge_problem()
    X2 = X.at[0].set(2.0)          # column 0 is not the intercept
    p0 = p0._replace(coef=jnp.array([[0.75, 1.0]]))
    a = _m_step(ms.experts.ReLUExpert(hinge_candidates=16), p0, tau, X2, y, w)
    b = _m_step(ms.experts.ReLUExpert(hinge_candidates=0), p0, tau, X2, y, w)
    np.testing.assert_array_equal(np.asarray(a.coef), np.asarray(b.coef))


def test_hinge_search_settings_are_validated():
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="hinge_candidates must be an integer >= 0"):
            ms.experts.ReLUExpert(hinge_candidates=bad)


def test_two_relu_experts_from_one_start_reach_the_truth():
    """Two ReLU experts under a softmax gate where one default start ends 726 below the truth without the search."""
    r = np.random.default_rng(1023)       # case 23 of the /tmp study reported on branch relu5 (45/60 -> 52/60)
    c, s = r.uniform(-2, 2, 2), r.choice([-1.0, 1.0], 2)
    b = r.uniform(1, 3, 2) * r.choice([-1, 1], 2)
    P = em.MoEParams(gate=ms.gating.SoftmaxParams(coef=np.array([[0.0, 0.0], [r.uniform(-1, 1), 2.0]])),
                     expert=NeuronParams(coef=np.column_stack([-s * c, s]), scale=b, sigma2=np.array([0.1, 0.1])))
    model = ms.GaussianMoE(2, expert=ms.experts.ReLUExpert(hinge_candidates=16))
    T = TrueModel(name="k2", model=model, params=P, x_law={"law": "uniform", "low": -3.0, "high": 3.0, "d": 1})
    x, y, _ = T.simulate(1000, seed=[23])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        res = model.fit(x, y, n_init=1, polish=False)
    assert res.loglik >= T.loglik(x, y), (res.loglik, T.loglik(x, y))
    assert monotone(res) >= -1e-12


@pytest.mark.parametrize("gate, held", [("normalized_sigmoid", True), ("softmax", False)])
def test_gate_held_at_its_base_while_starts_are_built(gate, held):
    model = ms.GaussianMoE(2, gating=gate)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 300)
    y = np.where(x > 0, 2 * x, -x) + 0.3 * rng.standard_normal(300)
    d = model.design(x, y)
    dat = make_data(d.X, d.Xg, d.y, d.w)
    info = model.expert.prepare(d.y, d.w)
    base = model.base_params(d.X.shape[1], d.Xg.shape[1], info)
    R = np.stack([np.where(x > 0, 0.95, 0.05), np.where(x > 0, 0.05, 0.95)])
    R = np.pad(R, ((0, 0), (0, dat.w.shape[0] - 300)), constant_values=0.5)[None]
    cfg = em.EMConfig(gate=model.gate, expert=model.expert, k=2, max_iter=1)
    out = em.params_from_resp(jnp.asarray(R), base, dat, model.control(info, 1e-8), em.no_fixed(base), cfg)
    coef = np.asarray(out.gate.coef)[0]
    assert model.gate.hold_in_starts is held
    if held:
        np.testing.assert_array_equal(coef, np.asarray(base.gate.coef))
    else:   # fitted to the partition x > 0: expert 1's gate slope is large and negative relative to expert 0
        assert coef[1, 1] - coef[0, 1] < -2.0, coef
    # the experts are fitted to the partition either way: expert 0 = WLS of y on (1, x) with weights R[0]
    A = np.column_stack([np.ones(300), x]) * np.sqrt(R[0, 0, :300])[:, None]
    wls = np.linalg.lstsq(A, y * np.sqrt(R[0, 0, :300]), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(out.expert.coef)[0, 0], wls, rtol=1e-8)
