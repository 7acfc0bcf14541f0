"""Polynomial, single-neuron (ReLU/GELU) and stacked experts: features, M-steps, identification, errors."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat.fitting import em
from moestat.experts import GaussianParams, NeuronParams, Stacked, StackedParams

from _inference_helpers import np_ascent, np_loglik
from _truths import monotone

CTL = em.make_control(var_floor=1e-10)


@partial(jax.jit, static_argnums=(0, 7))
def _m_step(expert, params, tau, X, y, w, ctl, max_halvings, fixed):
    return expert.m_step(params, tau, X, y, w, ctl, max_halvings, fixed)


def _q(expert, params, tau, X, y, w):
    """This expert family's part of the EM objective, sum_n w_n sum_i tau_in log f_i(y_n | x_n)."""
    return float(jnp.sum(tau * expert.log_density(params, X, y) * w[None]))


def _random_problem(seed, n=400, k=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    X = jnp.asarray(np.vstack([np.ones(n), x]))
    y = jnp.asarray(np.where(x > 0, 3 * x, -x) + 0.3 * rng.standard_normal(n))
    tau = rng.dirichlet(np.ones(k), size=n).T
    w = np.ones(n)
    w[-20:] = 0.0  # padding must not matter
    return X, y, jnp.asarray(tau), jnp.asarray(w), rng


# ------------------------------------------------------------------ polynomial experts

def test_polynomial_features_and_term_names():
    pe = ms.experts.GaussianPolynomial(degree=3)
    X = np.column_stack([np.ones(4), [1.0, 2, 3, 4], [0.5, -1, 2, 0]])
    F = pe.transform_design(X, intercept=True)
    names = pe.term_names(["Intercept", "x1", "x2"], F.shape[1])
    assert names == ["Intercept", "x1", "x2", "x1^2", "x1:x2", "x2^2", "x1^3", "x1^2:x2", "x1:x2^2", "x2^3"]
    np.testing.assert_allclose(F[:, names.index("x1^2:x2")], X[:, 1] ** 2 * X[:, 2])
    np.testing.assert_allclose(F[:, names.index("x2^3")], X[:, 2] ** 3)
    # without an intercept the degree-0 term is absent and column 0 is a covariate
    F0 = pe.transform_design(X[:, 1:], intercept=False)
    assert F0.shape[1] == 9
    assert pe.term_names(["a", "b"], 9)[2:5] == ["a^2", "a:b", "b^2"]
    with pytest.raises(ValueError, match="degree must be an integer >= 1"):
        ms.experts.GaussianPolynomial(degree=0)


@pytest.mark.slow
def test_polynomial_fit_recovers_quadratic_experts_and_is_the_maximum():
    rng = np.random.default_rng(3)
    n = 300
    x = rng.uniform(-2, 2, n)
    z = rng.random(n) < 1 / (1 + np.exp(-3 * x))
    y = np.where(z, 1 - x + 2 * x ** 2, -2 + 0.5 * x - x ** 2) + 0.1 * rng.standard_normal(n)
    res = ms.GaussianMoE(2, expert=ms.experts.GaussianPolynomial(degree=2)).fit(x, y, n_init=3, polish=False,
                                                                                 tol=1e-12)
    f = res.params_frame()
    coefs = sorted([tuple(np.round(f[(f.block == "expert") & (f.expert == i)].set_index("term")
                                    .loc[["Intercept", "x", "x^2"], "estimate"].to_numpy(), 1)) for i in (1, 2)])
    assert coefs == [(-2.0, 0.5, -1.0), (1.0, -1.0, 2.0)]
    assert monotone(res) >= -1e-12
    # the maximum of an independent NumPy likelihood (softmax gate on [1, x], Gaussian experts on [1, x, x^2])
    X, Xg, P = np.column_stack([np.ones(n), x, x ** 2]), np.column_stack([np.ones(n), x]), res.params_tree
    par = (P.gate.coef, P.expert.coef, np.sqrt(P.expert.sigma2))
    assert res.loglik == pytest.approx(np_loglik(X, Xg, y, *par), abs=1e-8 * abs(res.loglik))
    assert np_ascent(lambda *q: np_loglik(X, Xg, y, *q), *par) <= 1e-6
    # predict() rebuilds the polynomial features for new covariates
    pred = res.predict(np.array([1.5]), kind="experts")[0]
    assert sorted(np.round(pred, 1).tolist()) == sorted([round(1 - 1.5 + 2 * 2.25, 1), round(-2 + 0.75 - 2.25, 1)])


# ------------------------------------------------------------------ single-neuron experts

@pytest.mark.parametrize("name", ["relu", "gelu"])
def test_neuron_m_step_never_lowers_its_objective(name):
    expert = ms.experts.get_expert(name)
    X, y, tau, w, rng = _random_problem(1)
    k = tau.shape[0]
    none = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), expert.init_params(k, 2, {"var_y": 1.0}))
    for trial in range(4):
        p = NeuronParams(coef=jnp.asarray(rng.normal(0, 2, (k, 2))), scale=jnp.asarray(rng.normal(0, 2, k)),
                         sigma2=jnp.asarray(rng.uniform(0.1, 3, k)))
        fixed = none if trial < 2 else none._replace(coef=none.coef.at[0, 1].set(True), sigma2=none.sigma2.at[2].set(True))
        new = _m_step(expert, p, tau, X, y, w, CTL, 8, fixed)
        assert _q(expert, new, tau, X, y, w) >= _q(expert, p, tau, X, y, w) - 1e-12 * abs(_q(expert, p, tau, X, y, w))
        if trial >= 2:  # fixed entries are honoured exactly
            assert float(new.coef[0, 1]) == float(p.coef[0, 1]) and float(new.sigma2[2]) == float(p.sigma2[2])


def test_relu_dead_unit_is_revived_from_the_line_fit():
    """A unit with every pre-activation <= 0 has zero gradient; the M-step restarts it from the WLS line."""
    expert = ms.experts.ReLUExpert()
    X, y, tau, w, _ = _random_problem(2, k=1)
    dead = NeuronParams(coef=jnp.array([[-50.0, 0.0]]), scale=jnp.array([1.0]), sigma2=jnp.array([1.0]))
    assert float(jnp.max(dead.coef @ X)) < 0
    none = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), dead)
    p = dead
    for _ in range(30):
        p = _m_step(expert, p, tau, X, y, w, CTL, 8, none)
    # y = 3x (x > 0), -x (x < 0): the best single ReLU unit is 3 ReLU(x) (|scale| = 1 -> coef (0, 3))
    np.testing.assert_allclose(np.asarray(p.coef[0]), [0.0, 3.0], atol=0.08)
    assert float(p.scale[0]) == 1.0


def test_relu_canonical_scale_and_identification():
    e = ms.experts.ReLUExpert()
    p = NeuronParams(coef=jnp.array([[0.0, 6.0], [1.0, -2.0]]), scale=jnp.array([-8.0, 0.5]), sigma2=jnp.ones(2))
    c = e.canonical(p)
    np.testing.assert_allclose(np.asarray(c.coef), [[0.0, 48.0], [0.5, -1.0]])
    np.testing.assert_allclose(np.asarray(c.scale), [-1.0, 1.0])
    X = jnp.asarray(np.vstack([np.ones(50), np.linspace(-3, 3, 50)]))
    np.testing.assert_allclose(np.asarray(e.mean(c, X)), np.asarray(e.mean(p, X)), rtol=1e-14, atol=1e-12)
    # ReLU scale is not a free parameter (positive homogeneity); GELU's is
    assert e.n_free_params(2, 2) == 2 * (2 + 1)
    assert ms.experts.GELUExpert().n_free_params(2, 2) == 2 * (2 + 2)
    assert ms.experts.ReLUExpert(bias=False).n_free_params(2, 2) == 2 * (1 + 1)


@pytest.mark.parametrize("expert", [ms.experts.ReLUExpert(), ms.experts.ReLUExpert(bias=False), ms.experts.GELUExpert(),
                                    ms.experts.GaussianPolynomial(degree=2),
                                    Stacked((("relu", 2), ("linear", 1)))])
def test_free_mask_report_describe_are_consistent(expert):
    p_dim = 3 if isinstance(expert, ms.experts.GaussianPolynomial) else 2
    k = 3
    params = expert.init_params(k, p_dim, {"var_y": 2.0})
    n_mask = sum(int(np.sum(m)) for m in jax.tree_util.tree_leaves(expert.free_mask(params)))
    assert n_mask == expert.n_free_params(k, p_dim)
    rows = expert.describe(params, ["Intercept", "x"])
    np.testing.assert_allclose(np.asarray(expert.report(params)), [v for _, _, v in rows])
    # unconstrain/constrain round trip
    u = expert.unconstrain(params)
    back = expert.constrain(u)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(back)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14)


def test_neuron_bias_false_needs_an_intercept():
    x = np.linspace(-3, 3, 50)
    with pytest.raises(ValueError, match=r"bias=False\) fixes the coefficient .* has no intercept"):
        ms.GaussianMoE(2, expert=ms.experts.ReLUExpert(bias=False), intercept=False).fit(x, np.abs(x))
    e = ms.experts.ReLUExpert(bias=False)
    p = NeuronParams(coef=jnp.array([[5.0, 2.0]]), scale=jnp.array([1.0]), sigma2=jnp.array([1.0]))
    X = jnp.asarray(np.vstack([np.ones(50), x]))
    np.testing.assert_allclose(np.asarray(e.mean(p, X))[0], 2.0 * np.maximum(x, 0))   # the bias column is ignored
    assert [t for _, t, _ in e.describe(p, ["Intercept", "x"])] == ["x", "scale", "sigma"]


def test_neuron_settings_are_validated():
    with pytest.raises(ValueError, match="newton_steps must be an integer >= 1"):
        ms.experts.ReLUExpert(newton_steps=0)
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        ms.experts.GELUExpert(damping=-1.0)


# ------------------------------------------------------------------ stacked experts

def test_stacked_concatenates_blocks_exactly():
    st = Stacked((("relu", 2), ("linear", 1)))
    relu, lin = st.blocks[0][0], st.blocks[1][0]
    pr = NeuronParams(coef=jnp.array([[0.1, 1.0], [0.2, -2.0]]), scale=jnp.array([1.0, -1.0]), sigma2=jnp.array([0.3, 0.4]))
    pl = GaussianParams(coef=jnp.array([[1.0, 0.5]]), sigma2=jnp.array([0.2]))
    P = StackedParams(blocks=(pr, pl))
    X, y, tau, w, _ = _random_problem(5, k=3)
    ld = np.asarray(st.log_density(P, X, y))
    np.testing.assert_array_equal(ld[:2], np.asarray(relu.log_density(pr, X, y)))
    np.testing.assert_array_equal(ld[2:], np.asarray(lin.log_density(pl, X, y)))
    fixed = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, bool), P)
    new = _m_step(st, P, tau, X, y, w, CTL, 8, fixed)
    np.testing.assert_array_equal(np.asarray(new.blocks[1].coef),
                                  np.asarray(_m_step(lin, pl, tau[2:], X, y, w, CTL, 8, fixed.blocks[1]).coef))
    z = jnp.asarray(np.arange(X.shape[1]) % 3)
    ys = np.asarray(st.sample(jax.random.PRNGKey(0), P, X, z))
    means = np.asarray(st.mean(P, X))
    resid = ys - means[np.asarray(z), np.arange(X.shape[1])]
    sd = np.sqrt(np.array([0.3, 0.4, 0.2]))[np.asarray(z)]
    assert abs(np.mean(resid / sd)) < 0.15 and abs(np.std(resid / sd) - 1) < 0.1
    assert [r[0] for r in st.describe(P, ["Intercept", "x"])][-3:] == [2, 2, 2]


def test_stacked_errors_are_clear():
    with pytest.raises(ValueError, match="n_experts=4 but the Stacked expert defines 3"):
        ms.GaussianMoE(4, expert=Stacked((("relu", 2), ("linear", 1)))).fit(np.arange(50.0), np.sin(np.arange(50.0)))
    with pytest.raises(ValueError, match="must use the same expert design"):
        Stacked((("linear", 1), (ms.experts.GaussianPolynomial(degree=2), 1))).transform_design(
            np.column_stack([np.ones(5), np.arange(5.0)]), True)
    with pytest.raises(ValueError, match="count of a block must be an integer >= 1"):
        Stacked((("linear", 0),))
    with pytest.raises(TypeError, match=r"pair \(expert, count\)"):
        Stacked(("linear",))
    st = Stacked((("relu", 2), ("linear", 2)))
    P = st.init_params(4, 2, {"var_y": 1.0})
    with pytest.raises(ValueError, match="within a block"):
        st.permute(P, [2, 1, 0, 3])


def test_unknown_expert_name_lists_families():
    with pytest.raises(ValueError, match="unknown expert family 'sigmoid'") as err:
        ms.GaussianMoE(2, expert="sigmoid")
    assert all("'%s'" % f in str(err.value) for f in ("gelu", "linear", "polynomial", "relu", "stacked"))


def test_new_sizes_in_a_bucket_reuse_the_program_and_padding_is_exact():
    """Same family/bucket as the polynomial test above: n = 300 and 310 share the 320-point bucket."""
    from moestat.data.design import bucket_size, make_data
    assert bucket_size(300) == bucket_size(310) == 320
    model = ms.GaussianMoE(2, expert=ms.experts.GaussianPolynomial(degree=2))
    rng = np.random.default_rng(8)
    x = rng.uniform(-2, 2, 310)
    y = np.where(rng.random(310) < 0.5, x ** 2, 1 - x) + 0.1 * rng.standard_normal(310)
    res = model.fit(x[:300], y[:300], n_init=3, polish=False, tol=1e-12)
    size = em.fit_restarts._cache_size()
    res2 = model.fit(x, y, n_init=3, polish=False, tol=1e-12)
    assert em.fit_restarts._cache_size() == size            # no recompilation inside the bucket
    assert res2.params_tree.expert.coef.dtype == np.float64 and np.asarray(res2.loglik_trace).dtype == np.float64
    # the log-likelihood does not depend on how much padding the data carry
    d = res.design
    P = jax.tree_util.tree_map(jnp.asarray, res.params_internal)
    lls = [float(em.evaluate(P, make_data(d.X, d.Xg, d.y, d.w, N=N), res._cfg)[0]) for N in (320, 1000)]
    assert lls[0] == pytest.approx(res.loglik, rel=1e-13) and lls[1] == pytest.approx(lls[0], rel=1e-13)
