"""The EM loop's arithmetic shortcuts: moment statistics (moestat.fitting.moments) equal the direct weighted sums they
replace, and the element-wise log (moestat._math.log_positive) equals numpy.log."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat.fitting import em, moments, newton
from moestat._math import klogsumexp, log_positive
from moestat.data.design import make_data
from moestat.experts.gaussian import gram_from_moments, gram_stats


def _random(p, N, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(p, N))), jnp.asarray(rng.uniform(0, 2, size=(3, N)))


@pytest.mark.parametrize("p", [1, 3, 5])
def test_features_and_split_give_the_weighted_sums(p):
    D, R = _random(p, 500)
    total, linear, gram = moments.split(moments.contract(R, moments.features(D)), p)
    assert moments.features(D).shape[0] == moments.n_features(p) == 1 + p + p * (p + 1) // 2
    Dn, Rn = np.asarray(D), np.asarray(R)
    np.testing.assert_allclose(total, Rn.sum(1), rtol=1e-13)
    np.testing.assert_allclose(linear, Rn @ Dn.T, rtol=1e-12)
    np.testing.assert_allclose(gram, np.einsum("rn,in,jn->rij", Rn, Dn, Dn), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("leading_one", [False, True])
@pytest.mark.parametrize("p,q", [(1, 1), (1, 3), (3, 4), (2, 5)])
def test_leading_features_are_the_features_of_the_first_rows(p, q, leading_one):
    D, _ = _random(q, 50, seed=p + q)
    if leading_one:
        D = D.at[0].set(1.0)
    idx = moments.leading_features(p, q, leading_one)
    np.testing.assert_array_equal(moments.features(D, leading_one)[idx], moments.features(D[:p], leading_one))
    with pytest.raises(ValueError, match="p <= q"):
        moments.leading_features(q + 1, q)


@pytest.mark.parametrize("k,intercept", [(2, True), (3, True), (3, False), (4, True), (5, True)])
def test_one_joint_contraction_gives_the_two_contractions_fit(monkeypatch, k, intercept):
    """Shared gate and expert design: the gate's rows contracted with the experts' features (one dot, k <= 4)
    run the same EM as separate contractions with each design's own features (JOINT_CONTRACTION_ROWS = 0)."""
    rng = np.random.default_rng(k)
    n = 3000
    x = rng.normal(size=(n, 2))
    z = rng.integers(0, k, n)
    y = z * 1.5 + x @ np.array([0.5, -0.3]) * (1 + z) + 0.4 * rng.normal(size=n)
    Xd = np.column_stack([np.ones(n), x]) if intercept else np.column_stack([1.0 + 0.1 * x[:, 0], x])
    model = ms.GaussianMoE(k)
    dat = make_data(Xd, Xd, y, np.ones(n))
    cfg = em.with_intercepts(model.config(max_iter=40), Xd, Xd, np.ones(n))
    assert cfg.shared_design and cfg.gate_intercept == intercept and em._use_moments(dat, cfg)
    ctl = model.control({"var_y": float(np.var(y))}, tol=-1.0)
    G = np.zeros((k, 3))
    G[1:] = rng.normal(size=(k - 1, 3)) * 0.3
    C = np.column_stack([np.linspace(-1, 1, k) * 2, rng.normal(size=(k, 2))])
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(G)[None]),
                      ms.experts.GaussianParams(jnp.asarray(C)[None], jnp.full((1, k), 1.0)))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    keys = jax.random.split(jax.random.PRNGKey(0), 1)

    def run():
        return jax.jit(em.fit_restarts, static_argnames=("cfg", "batch_size"))(p0, dat, ctl, fixed, keys, cfg)
    joint = run()
    monkeypatch.setattr(em, "JOINT_CONTRACTION_ROWS", 0)
    jax.clear_caches()
    two = run()
    jax.clear_caches()
    tj, t2 = np.asarray(joint.trace[0]), np.asarray(two.trace[0])
    assert np.all(np.isfinite(tj)) and tj[-1] > tj[0] + 1.0           # EM moved
    np.testing.assert_allclose(tj, t2, rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(joint.params), jax.tree_util.tree_leaves(two.params)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_softmax_newton_statistics_from_moments_equal_the_direct_ones():
    rng = np.random.default_rng(1)
    X = jnp.asarray(np.vstack([np.ones(400), rng.normal(size=(2, 400))]))
    eta = jnp.asarray(rng.normal(size=(4, 400)))
    pi = jax.nn.softmax(eta, axis=0)
    tau = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 400))), axis=0)
    w = jnp.asarray(rng.uniform(0, 1, 400))
    g0, H0 = newton.softmax_newton_stats(pi, tau, w, X)
    rows = newton.softmax_moment_rows(pi, tau, w)
    _, lin, gram = moments.split(moments.contract(rows, moments.features(X)), 3)
    g1, H1 = newton.softmax_stats_from_moments(lin, gram, 3)
    np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H1, H0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(H1, H1.T, rtol=0, atol=1e-12)


def test_gram_from_moments_equals_gram_stats():
    X, tau = _random(3, 300, seed=2)
    y = jnp.asarray(np.random.default_rng(3).normal(size=300))
    w = jnp.asarray(np.random.default_rng(4).uniform(0, 1, 300))
    F = moments.features(jnp.concatenate([X, y[None]]))
    got = gram_from_moments(moments.contract(tau * w, F), 3)
    for a, b in zip(got, gram_stats(tau, w, X, y)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_softmax_gate_objective_from_the_responsibilities_moments_equals_the_direct_sum():
    """sum_n w_n sum_i tau_in log g_i(x_n) = sum_i coef_i . T_i - sum_n w_n lse_n (the speculative guard's form)."""
    rng = np.random.default_rng(8)
    k, n = 3, 600
    Xg = np.vstack([np.ones(n), rng.normal(size=(2, n))])
    coef = rng.normal(size=(k, 3))
    coef[0] = [0.3, -0.2, 0.1]                      # a reference row off zero: T_0 counts too
    tau = rng.dirichlet(np.ones(k), size=n).T
    w = rng.uniform(0, 2, n)
    w[:50] = 0.0
    eta = coef @ Xg
    log_g = eta - np.log(np.exp(eta).sum(0))         # NumPy transcription of the definition
    ref = float(np.sum(w * (tau * log_g).sum(0)))
    gate = ms.gating.Softmax()
    params = ms.gating.SoftmaxParams(jnp.asarray(coef))
    e, lse, g = gate.scores_and_probs(params, jnp.asarray(Xg))
    np.testing.assert_allclose(np.asarray(e) - np.asarray(lse)[None], log_g, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(g, np.exp(log_g), rtol=1e-13)
    got = gate.objective_from_moments(params, jnp.asarray((tau * w) @ Xg.T), jnp.dot(lse, jnp.asarray(w)))
    assert abs(float(got) - ref) <= 1e-12 * abs(ref)


def test_worthwhile_bounds_columns_and_memory():
    assert moments.worthwhile(3, 10 ** 6)
    assert not moments.worthwhile(moments.MAX_COLUMNS + 1, 1000)
    assert not moments.worthwhile(8, 10 ** 8)            # 45 rows x 1e8 points would not fit the byte cap


@pytest.mark.slow
def test_wide_designs_use_the_direct_sweep_and_reach_the_same_fit(monkeypatch):
    """Covariates beyond MAX_COLUMNS: the direct statistics serve, and the fit equals the guarded EM's."""
    rng = np.random.default_rng(5)
    n, d = 1500, moments.MAX_COLUMNS
    x = rng.normal(size=(n, d))
    z = (x[:, 0] > 0).astype(int)
    y = np.where(z == 1, 1 + x @ np.linspace(-1, 1, d), -1 - x[:, 0]) + 0.3 * rng.normal(size=n)
    model = ms.GaussianMoE(2)
    dat = make_data(np.column_stack([np.ones(n), x]), np.column_stack([np.ones(n), x]), y, np.ones(n))
    assert not em._use_moments(dat, model.config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        a = model.fit(x, y, n_init=2, seed=1, polish=False)
        monkeypatch.setattr(em, "_speculative", lambda cfg, data: False)
        jax.clear_caches()
        b = model.fit(x, y, n_init=2, seed=1, polish=False)
    jax.clear_caches()
    assert a.n_iter == b.n_iter
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-12)


def test_log_positive_matches_numpy_log_to_3_ulp():
    rng = np.random.default_rng(6)
    x = np.concatenate([1 + 2 * rng.random(20000),                       # sums of shifted exponentials: [1, k]
                        np.exp(rng.uniform(-700, 700, 20000)),           # the whole normal range
                        [1.0, 2.0, 3.0, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2.0), 2.0 ** -1022, 1e308]])
    got = np.asarray(log_positive(jnp.asarray(x)))
    ref = np.log(x)
    assert np.max(np.abs(got - ref) / np.spacing(np.abs(ref) + 1e-300)) <= 3.0
    assert np.max(np.abs(got - ref)) <= 2.3e-16 * np.max(np.abs(ref))
    assert np.asarray(log_positive(jnp.asarray([0.0])))[0] == -np.inf
    assert np.all(np.isnan(np.asarray(log_positive(jnp.asarray([np.nan, np.inf])))))


def test_klogsumexp_keeps_minus_inf_rows_and_matches_scipy():
    from scipy.special import logsumexp
    a = np.array([[0.0, -np.inf, 700.0, -1e3], [1.0, -np.inf, 699.0, -1e3 - 1], [-3.0, -np.inf, 0.0, -1e3 + 2]])
    got = np.asarray(klogsumexp(jnp.asarray(a)))
    ref = logsumexp(a, axis=0)
    assert got[1] == -np.inf
    np.testing.assert_allclose(got[[0, 2, 3]], ref[[0, 2, 3]], rtol=1e-15)


def test_log_positive_derivatives_are_those_of_log():
    x = jnp.asarray([1.0, 1.7, 2.9, 1e5])
    np.testing.assert_allclose(jax.vmap(jax.grad(log_positive))(x), 1 / np.asarray(x), rtol=1e-15)
    np.testing.assert_allclose(jax.vmap(jax.grad(jax.grad(log_positive)))(x), -1 / np.asarray(x) ** 2, rtol=1e-15)


def test_the_posterior_sum_marks_the_points_with_a_finite_maximum():
    """The moment sweep's mask of the points that count reads the posterior sum s = sum_i exp(l_i - m) (m the
    maximum, 0 where it is not finite): s is in [1, k] exactly when max_i l_i is finite."""
    from moestat._math import kmax, ksum
    rng = np.random.default_rng(4)
    k, n = 3, 4000
    L = rng.normal(scale=300.0, size=(k, n))
    specials = np.array([-np.inf, np.inf, np.nan, 0.0, 709.0, -745.0, 1e308, -1e308])
    pick = rng.random((k, n)) < 0.3
    L[pick] = rng.choice(specials, size=int(pick.sum()))
    L[:, :4] = [[-np.inf] * 4, [-np.inf, 1.0, np.nan, np.inf], [-np.inf, -np.inf, 0.0, 0.0]]

    @jax.jit
    def mask(L):
        m = kmax(L)
        s = ksum(jnp.exp(L - jnp.where(jnp.isfinite(m), m, 0.0)[None]))
        return jnp.logical_and(s >= 1.0, s <= k), jnp.isfinite(m)
    by_sum, finite_max = (np.asarray(a) for a in mask(jnp.asarray(L)))
    assert finite_max.sum() > 100 and (~finite_max).sum() > 100
    np.testing.assert_array_equal(by_sum, finite_max)
