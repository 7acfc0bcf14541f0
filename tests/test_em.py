"""The EM kernel: monotone, equal to the NumPy reference, exact under padding, compiled once per bucket."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat.fitting import em, pipeline
from references import numpy_em as ref
from moestat.data.design import bucket_size, make_data

from conftest import simulate_softmax_gaussian

GATE3 = [[0, 0, 0], [0.5, 2, -1], [-0.5, -1, 2]]
COEF3 = [[1, 2, -1], [-1, -2, 1], [0, 1, 1]]


def _setup(x, y, k, max_iter, tol=-1.0):  # tol < 0: run exactly max_iter iterations
    model = ms.GaussianMoE(k)
    design = model.design(x, y)
    info = model.expert.prepare(design.y, design.w)
    dat = make_data(design.X, design.Xg, design.y, design.w)
    cfg = em.with_intercepts(model.config(max_iter=max_iter), design.X, design.Xg, design.w)   # as fit makes it
    return model, design, dat, cfg, model.control(info, tol=tol)


def _random_params(rng, k, p, pg, m):
    gate = rng.normal(0, 2, size=(m, k, pg))
    gate[:, 0] = 0.0
    return em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(gate)),
                        ms.experts.GaussianParams(jnp.asarray(rng.normal(0, 2, size=(m, k, p))),
                                                  jnp.asarray(rng.uniform(0.5, 2.0, size=(m, k)))))


@pytest.mark.parametrize("k,d,n,seed", [(3, 2, 2000, 0), (2, 1, 500, 1), (3, 1, 3000, 2), (4, 2, 1500, 3)])
def test_loglik_never_decreases_from_random_starts(k, d, n, seed):
    rng = np.random.default_rng(seed)
    gate = rng.normal(0, 1.5, size=(k, d + 1)); gate[0] = 0
    coef = rng.normal(0, 2, size=(k, d + 1))
    x, y, _ = simulate_softmax_gaussian(n, gate, coef, rng.uniform(0.3, 1.0, k), seed)
    model, design, dat, cfg, ctl = _setup(x, y, k, max_iter=300)
    m = 6
    p0 = _random_params(rng, k, d + 1, d + 1, m)
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    out = em.fit_restarts(p0, dat, ctl, fixed, jax.random.split(jax.random.PRNGKey(0), m), cfg)
    tr = np.asarray(out.trace)
    n_it = np.asarray(out.n_iter)
    worst = 0.0
    for r in range(m):
        t = tr[r, : n_it[r] + 1]
        assert np.all(np.isfinite(t)) and t.size > 10
        worst = min(worst, float((np.diff(t) / np.abs(t[1:])).min()))
        # EM made real progress from the random start, and the reported loglik is the last one
        assert t[-1] - t[0] > 1.0
        assert float(out.loglik[r]) >= t[-1] - 1e-12 * abs(t[-1])
    assert worst >= -1e-12, worst


def test_jax_em_equals_numpy_reference():
    x, y, _ = simulate_softmax_gaussian(3000, GATE3, COEF3, [0.5, 0.5, 0.5], 5)
    model, design, dat, cfg, ctl = _setup(x, y, 3, max_iter=100)
    g0 = np.array(GATE3, float) + 0.3; g0[0] = 0
    c0, s0 = np.array(COEF3, float) * 0.8, np.full(3, 0.5)
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(g0)[None]),
                      ms.experts.GaussianParams(jnp.asarray(c0)[None], jnp.asarray(s0)[None]))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    out = em.fit_restarts(p0, dat, ctl, fixed, jax.random.split(jax.random.PRNGKey(0), 1), cfg)
    gN, cN, sN, trN = ref.fit(g0, c0, s0, design.X, design.Xg, design.y, design.w, 100)
    np.testing.assert_allclose(np.asarray(out.trace[0]), trN, rtol=1e-11)
    # after 100 iterations the parameters are those of 100 NumPy iterations (trN holds l before each step)
    np.testing.assert_allclose(np.asarray(out.params.expert.coef[0]), cN, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(out.params.expert.sigma2[0]), sN, rtol=1e-8)
    np.testing.assert_allclose(np.asarray(out.params.gate.coef[0]), gN, rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_padding_is_exact(sim_df):
    model = ms.GaussianMoE(2)
    d = model.design(sim_df[["x"]], sim_df["y"])
    small = make_data(d.X, d.Xg, d.y, d.w)
    big = make_data(d.X, d.Xg, d.y, d.w, N=4096)
    res = ms.GaussianMoE(2).fit(sim_df[["x"]], sim_df["y"])
    P = jax.tree_util.tree_map(jnp.asarray, res.params_tree)
    cfg = model.config()
    assert float(em.loglik(P, small, cfg)) == pytest.approx(float(em.loglik(P, big, cfg)), rel=1e-13)
    assert float(em.loglik(P, small, cfg)) == pytest.approx(res.loglik, rel=1e-12)


def test_bucket_grid():
    assert bucket_size(1) == 256 and bucket_size(256) == 256
    assert bucket_size(1000) == bucket_size(1100) == bucket_size(1200) == 1224
    for n in (257, 999, 12345, 10 ** 6):
        b = bucket_size(n)
        assert n <= b <= 1.26 * n and b % 8 == 0


def test_sizes_in_one_bucket_compile_once():
    rng = np.random.default_rng(0)
    fits = []
    before = None
    for n in (1000, 1100, 1200):
        x = rng.normal(size=(n, 1))
        y = np.where(x[:, 0] > 0, 2 * x[:, 0], -x[:, 0]) + 0.3 * rng.normal(size=n)
        fits.append(ms.GaussianMoE(2).fit(x, y, n_init=3, max_iter=500))
        if before is None:
            before = {f: f._cache_size() for f in (pipeline.run_from_resp, em.evaluate)}
    after = {f: f._cache_size() for f in before}
    assert after == before, "a new n inside the bucket recompiled"
    assert all(f.converged for f in fits)


@pytest.mark.slow
def test_cem_and_sem_run_and_classify(sim_df):
    cem = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, algorithm="cem", n_init=3)
    em_fit = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=3)
    assert cem.converged and cem.algorithm == "cem"
    # CEM maximises the classification likelihood: its observed log-likelihood cannot beat EM's MLE
    assert cem.loglik <= em_fit.loglik + 1e-9
    assert cem.loglik > em_fit.loglik - 10
    sem = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, algorithm="sem", n_init=2, max_iter=200, seed=4)
    assert sem.loglik <= em_fit.loglik + 1e-9 and sem.loglik > em_fit.loglik - 5


@pytest.mark.slow
@pytest.mark.parametrize("moment_pass", [True, False])
def test_speculative_gate_guard_gives_the_guarded_iterates(monkeypatch, moment_pass):
    """The softmax gate's guard checked in the next E-step (em._fit_one_speculative) = the in-step guard.

    A steep gate and wild starts make full Newton steps overshoot (measured: dozens of halvings over these
    starts), so the rollback path is exercised; the iterates must be the same, both with the statistics
    from the product-feature contractions (the default for linear experts) and from the direct products.
    """
    rng = np.random.default_rng(7)
    x, y, _ = simulate_softmax_gaussian(2000, [[0, 0], [2, 6], [-1, -5]], [[1, 2], [-1, -2], [0, 1]],
                                        [0.3, 0.4, 0.5], 3)
    model, design, dat, cfg, ctl = _setup(x, y, 3, max_iter=200, tol=1e-10)
    assert em._speculative(cfg, dat) and em._use_moments(dat, cfg)
    if not moment_pass:
        monkeypatch.setattr(em, "_use_moments", lambda data, cfg: False)
    m = 6
    gate = rng.normal(0, 6, size=(m, 3, 2))
    gate[:, 0] = 0
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(gate)),
                      ms.experts.GaussianParams(jnp.asarray(rng.normal(0, 2, size=(m, 3, 2))),
                                                jnp.asarray(rng.uniform(0.5, 2, size=(m, 3)))))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    keys = jax.random.split(jax.random.PRNGKey(0), m)
    jax.clear_caches()
    spec = em.fit_restarts(p0, dat, ctl, fixed, keys, cfg)
    monkeypatch.setattr(em, "_speculative", lambda cfg, data: False)
    jax.clear_caches()
    guarded = em.fit_restarts(p0, dat, ctl, fixed, keys, cfg)
    jax.clear_caches()
    np.testing.assert_array_equal(np.asarray(spec.n_iter), np.asarray(guarded.n_iter))
    t1, t2 = np.asarray(spec.trace), np.asarray(guarded.trace)
    np.testing.assert_array_equal(np.isnan(t1), np.isnan(t2))
    np.testing.assert_allclose(t1[~np.isnan(t1)], t2[~np.isnan(t2)], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(spec.loglik), np.asarray(guarded.loglik), rtol=1e-12)
    for a, b in zip(jax.tree_util.tree_leaves(spec.params), jax.tree_util.tree_leaves(guarded.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("designs", ["shared", "gate_subset", "no_intercept"])
def test_moment_sweep_data_flags_give_the_same_iterates(designs):
    """The intercept / shared-design flags only drop repeated product features and take the guard's
    moments from the experts' contraction: the iterates are those of the general sweep (wild starts, so
    the guard's rollback runs too), for a gate design equal to, smaller than, or without the intercept."""
    rng = np.random.default_rng(11)
    x, y, _ = simulate_softmax_gaussian(1500, [[0, 0, 0], [1, 4, -2], [-1, -3, 3]],
                                        [[1, 2, 0], [-1, -2, 1], [0, 1, -1]], [0.3, 0.4, 0.5], 4)
    X = np.column_stack([np.ones(len(y)), x])
    Xg = {"shared": X, "gate_subset": X[:, :2], "no_intercept": x}[designs]
    if designs == "no_intercept":
        X = x
    w = np.ones(len(y))
    w[::7] = 0.0                                  # zero-weight rows: ignored by the intercept check
    X = X.copy()
    X[::7, 0] = 5.0 if designs != "no_intercept" else X[::7, 0]
    if designs == "shared":
        Xg = X
    model = ms.GaussianMoE(3)
    dat = make_data(X, Xg, y, w)
    plain = model.config(max_iter=150)
    flagged = em.with_intercepts(plain, X, Xg, w)
    expect = {"shared": (True, True, True), "gate_subset": (True, True, False),
              "no_intercept": (False, False, True)}[designs]
    assert (flagged.expert_intercept, flagged.gate_intercept, flagged.shared_design) == expect
    assert em._speculative(flagged, dat) and em._use_moments(dat, flagged)
    ctl = model.control({"var_y": float(np.var(y))}, tol=1e-10)
    m = 5
    gate = rng.normal(0, 5, size=(m, 3, Xg.shape[1]))
    gate[:, 0] = 0
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(gate)),
                      ms.experts.GaussianParams(jnp.asarray(rng.normal(0, 2, size=(m, 3, X.shape[1]))),
                                                jnp.asarray(rng.uniform(0.5, 2, size=(m, 3)))))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    keys = jax.random.split(jax.random.PRNGKey(0), m)
    a = em.fit_restarts(p0, dat, ctl, fixed, keys, plain)
    b = em.fit_restarts(p0, dat, ctl, fixed, keys, flagged)
    np.testing.assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))
    t1, t2 = np.asarray(a.trace), np.asarray(b.trace)
    np.testing.assert_array_equal(np.isnan(t1), np.isnan(t2))
    np.testing.assert_allclose(t1[~np.isnan(t1)], t2[~np.isnan(t2)], rtol=1e-12)
    for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-8, atol=1e-10)


def test_leading_one_features_expand_to_the_full_moments():
    from moestat.fitting import moments
    rng = np.random.default_rng(3)
    D = np.vstack([np.ones(50), rng.normal(size=(3, 50))])
    rows = rng.normal(size=(4, 50))
    full = np.asarray(moments.contract(jnp.asarray(rows), moments.features(jnp.asarray(D))))
    short = moments.features(jnp.asarray(D), leading_one=True)
    assert short.shape[0] == 10 and moments.features(jnp.asarray(D)).shape[0] == 15
    np.testing.assert_allclose(np.asarray(moments.expand(moments.contract(jnp.asarray(rows), short), 4)), full,
                               rtol=1e-13)
    # by hand: the total, the linear sums and one product
    np.testing.assert_allclose(full[:, 0], rows.sum(1), rtol=1e-13)
    np.testing.assert_allclose(full[:, 2], rows @ D[1], rtol=1e-13)
    np.testing.assert_allclose(full[:, 1 + 4 + 4 + 1], rows @ (D[1] * D[2]), rtol=1e-13)


@pytest.mark.parametrize("flags", [True, False])
def test_starts_from_moments_equal_the_direct_m_steps(flags):
    """Start M-steps from fixed responsibilities by moments (softmax gate, linear Gaussian experts) = the
    repeated direct M-steps, for soft random responsibilities, zero-weight rows and a fixed gate entry."""
    rng = np.random.default_rng(5)
    x, y, _ = simulate_softmax_gaussian(1200, [[0, 0, 0], [1, 3, -2], [-1, -2, 2]],
                                        [[1, 2, 0], [-1, -2, 1], [0, 1, -1]], [0.3, 0.4, 0.5], 9)
    X = np.column_stack([np.ones(len(y)), x])
    w = rng.uniform(0.5, 2.0, len(y))
    w[::11] = 0.0
    model = ms.GaussianMoE(3)
    dat = make_data(X, X, y, w)
    cfg = model.config(max_iter=1)
    if flags:
        cfg = em.with_intercepts(cfg, X, X, w)
    ctl = model.control({"var_y": float(np.var(y))})
    info = model.expert.prepare(y, w)
    base = jax.tree_util.tree_map(jnp.asarray, model.base_params(3, 3, info))
    fixed = em.no_fixed(base)
    fixed = fixed._replace(gate=fixed.gate._replace(coef=np.asarray(fixed.gate.coef).copy()))
    fixed.gate.coef[2, 1] = True                   # one gate slope held at its start value
    eta = np.array([[0, 0, 0], [0.5, 2, -1], [-0.5, -1, 1.5]]) @ np.asarray(dat.Xg)   # responsibilities that
    R = np.exp(eta - eta.max(0)) / np.exp(eta - eta.max(0)).sum(0)                     # depend on x, softened
    R = 0.8 * R + 0.2 * rng.dirichlet(np.ones(3), size=R.shape[1]).T
    assert em._speculative(cfg, dat) and em._use_moments(dat, cfg)
    # a step for a step: the one-pass-per-trial Newton loop = the guarded steps; with an intercept the steps
    # begin at the gate's closed-form guess (Softmax.start_guess_from_moments): the same fixed point only
    for steps in ((25,) if flags else (1, 2, 3, 25)):
        by_moments = jax.jit(lambda t: em.start_from_resp(t, base, dat, ctl, fixed, cfg, steps))(jnp.asarray(R))
        direct = jax.jit(lambda t: em._repeat(lambda p: em.m_step(p, t, dat, cfg, ctl, fixed, observed=False),
                                              base, steps))(jnp.asarray(R))
        for a, b in zip(jax.tree_util.tree_leaves(by_moments), jax.tree_util.tree_leaves(direct)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)
    assert float(by_moments.gate.coef[2, 1]) == float(base.gate.coef[2, 1])
    assert np.abs(np.asarray(by_moments.gate.coef[1:])).max() > 0.5     # the gate did move


@pytest.mark.parametrize("theta0,n_steps", [(1.5, 25), (1.5, 1), (-2.0, 3), (0.3, 25)])
def test_speculative_newton_takes_the_guarded_steps(theta0, n_steps):
    """One pass per trial point (the direction comes with the guard's objective) gives the iterates of repeated
    guarded Newton steps, halvings included: maximise -log cosh(theta), whose full Newton step overshoots
    (from 1.5 the first trial, -3.5, is rejected and the half step accepted)."""
    from moestat.fitting import newton
    calls = []

    def at(th):
        calls.append(1)
        return -jnp.sinh(th) * jnp.cosh(th), -jnp.sum(jnp.log(jnp.cosh(th)))

    def step(th):
        d, q = at(th)
        return newton.guarded_step(th, d, lambda c: at(c)[1], q, 1e-13, 8)[0]

    th0 = jnp.asarray([theta0, 0.5 * theta0])
    fast = jax.jit(lambda t: em._speculative_newton(at, t, 1e-13, 8, n_steps))(th0)
    slow = jax.jit(lambda t: em._repeat(step, t, n_steps))(th0)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-14, atol=1e-16)   # fusion rounding
    if n_steps == 25:
        np.testing.assert_allclose(np.asarray(fast), 0.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["good", "worse", "unusable"])
def test_speculative_newton_begins_at_a_usable_guess(kind):
    """A usable guess no worse than theta0 is where the Newton steps begin: the same optimum in fewer passes;
    a guess below theta0's objective, or marked unusable, leaves the steps of a run without a guess."""
    calls = []

    def at(th):
        jax.debug.callback(lambda: calls.append(1))
        return -jnp.sinh(th) * jnp.cosh(th), -jnp.sum(jnp.log(jnp.cosh(th)))

    th0 = jnp.asarray([1.5, 0.75])
    q0 = -float(np.sum(np.log(np.cosh(np.asarray(th0)))))
    guess = {"good": ([0.05, -0.02], True), "worse": ([2.5, 1.0], True), "unusable": ([0.05, -0.02], False)}[kind]
    plain = np.asarray(jax.jit(lambda t: em._speculative_newton(at, t, 1e-13, 8, 25))(th0))
    n_plain = len(calls)
    calls.clear()
    g = (jnp.asarray(guess[0]), jnp.asarray(guess[1]), jnp.asarray(q0))
    out = np.asarray(jax.jit(lambda t, g: em._speculative_newton(at, t, 1e-13, 8, 25, guess=g))(th0, g))
    np.testing.assert_allclose(out, 0.0, atol=1e-12)
    if kind == "good":
        assert len(calls) < n_plain
    else:   # one pass more (the guess's), then the steps of the plain run
        np.testing.assert_array_equal(out, plain)
        assert len(calls) == n_plain + 1


def test_speculative_newton_keeps_theta_when_no_trial_is_accepted():
    # a direction that always lowers the objective: every halving is rejected, theta stays and the steps stop
    at = lambda th: (jnp.ones_like(th), -jnp.sum(th))            # noqa: E731
    th0 = jnp.asarray([0.25, -1.0])
    out = jax.jit(lambda t: em._speculative_newton(at, t, 1e-13, 5, 25))(th0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(th0))


@pytest.mark.parametrize("max_iter,wide", [(500, False), (3, False), (500, True)])
def test_fit_one_weighted_gives_the_effective_points_at_the_returned_parameters(max_iter, wide):
    """The effective points a fit hands on (the degeneracy rule, the expert weights) are sum_n w_n tau_in at
    the parameters it returns: from the last E-step of a converged moment sweep, else from an E-step of their own
    (stopped at max_iter; the direct sweep of a design too wide for the moments)."""
    from moestat.fitting import moments
    rng = np.random.default_rng(11)
    d = moments.MAX_COLUMNS if wide else 2
    x, y, _ = simulate_softmax_gaussian(2000, np.vstack([np.zeros(d + 1), rng.normal(size=(2, d + 1))]),
                                        rng.normal(size=(3, d + 1)) * 2, [0.3, 0.4, 0.5], 4)
    X = np.column_stack([np.ones(len(y)), x])
    w = rng.uniform(0.5, 2.0, len(y))
    w[::13] = 0.0
    model = ms.GaussianMoE(3)
    dat = make_data(X, X, y, w)
    cfg = em.with_intercepts(model.config(max_iter=max_iter), X, X, w)
    assert em._use_moments(dat, cfg) == (not wide)
    ctl = model.control({"var_y": float(np.var(y))}, tol=1e-10)
    G = np.zeros((3, d + 1))
    G[1:, 0] = [0.2, -0.2]
    C = np.zeros((3, d + 1))
    C[:, 0] = np.quantile(y, [0.2, 0.5, 0.8])
    p0 = em.MoEParams(ms.gating.SoftmaxParams(jnp.asarray(G)), ms.experts.GaussianParams(jnp.asarray(C),
                                                                                       jnp.full(3, np.var(y))))
    fixed = em.no_fixed(p0)
    out, n_eff = jax.jit(lambda p: em.fit_one_weighted(p, dat, ctl, fixed, jax.random.PRNGKey(0), cfg))(p0)
    assert bool(out.converged) == (max_iter == 500)
    ref = np.asarray(jax.jit(lambda p: em.effective_points(p, dat, cfg))(out.params))
    np.testing.assert_allclose(np.asarray(n_eff), ref, rtol=1e-12)
    assert np.asarray(n_eff).sum() == pytest.approx(w.sum(), rel=1e-12)
    _, tau, _, _ = em.e_step(out.params, dat, cfg)
    np.testing.assert_allclose(np.asarray(n_eff), np.asarray(tau)[:, :len(y)] @ w, rtol=1e-12)


def test_vectorised_starts_give_the_one_by_one_fits_and_effective_points():
    """batch_size > 1 (the GPU default: starts vmapped, the effective points' cond becomes a select) gives the
    fits, and the effective points per expert, of the starts run one by one."""
    x, y, _ = simulate_softmax_gaussian(1500, GATE3, COEF3, [0.5, 0.5, 0.5], 8)
    model = ms.GaussianMoE(3)
    kw = dict(n_init=3, seed=2, finalists=None, polish=False)
    one = model.fit(x, y, batch_size=1, **kw)
    vec = model.fit(x, y, batch_size=3, **kw)
    np.testing.assert_allclose(vec.restarts.loglik, one.restarts.loglik, rtol=1e-10)
    np.testing.assert_allclose(vec.restarts.min_expert_weight, one.restarts.min_expert_weight, rtol=1e-8)
    np.testing.assert_allclose(vec.expert_weights, one.expert_weights, rtol=1e-8)
    np.testing.assert_allclose(one.expert_weights, len(y) * one.responsibilities.mean(0), rtol=1e-10)
