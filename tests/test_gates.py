"""Gate families: recovery of simulated truths, agreement with direct maximisation, monotone EM,
padding / compilation, float64, and clear errors for bad settings.

Every statistical test runs for each gate case in ``gate_cases.GATE_CASES`` and
each expert family in ``gate_cases.EXPERTS``.
"""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import moestat as ms
from moestat.fitting import em, parametrization, pipeline
from moestat.data.design import bucket_size

from gate_cases import (EXPERTS, GATE_CASES, N_BIG, N_INIT, N_SMALL, aligned_error, device_data, loglik_at,
                        simulate_data, truth)

CASES = list(GATE_CASES)
G = ms.gating


def quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        return model.fit(*args, **kwargs)


# ------------------------------------------------------------------ recovery of a known model

@pytest.mark.slow
@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("case", CASES)
def test_fit_beats_truth_and_errors_shrink(case, expert):
    """EM from the default starts reaches the truth's likelihood, and its error shrinks with n.

    Data come from ``ms.simulate`` and the truth is scored by ``em.loglik``, both through the gate's own
    ``log_weights``: this proves the estimator consistent for the model as coded, not that the gate's formula is
    the published one (tests/conformance/ checks each family's formula against a NumPy transcription).
    """
    model, P = truth(GATE_CASES[case], expert)
    errors = []
    for n, seed in ((N_SMALL, 11), (N_BIG, 12)):
        x, y = simulate_data(model, P, n, seed)
        res = quiet_fit(model, x, y, n_init=N_INIT, seed=seed)
        ll_true = loglik_at(model, P, x, y)
        assert res.loglik >= ll_true - 1e-9 * abs(ll_true), (n, res.loglik, ll_true)
        errors.append(aligned_error(model, res.params_tree, P))
    assert errors[1] < 0.3 * errors[0], errors       # sqrt(300 / 30000) = 0.1 expected


# ------------------------------------------------------------------ agreement with direct maximisation

@pytest.mark.slow
@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("case", CASES)
def test_em_agrees_with_scipy(case, expert):
    """BFGS on moestat's own log-likelihood and gradient finds nothing above the EM fit.

    Proves that EM stops at a stationary maximum of the likelihood as coded (no early stop, no wrong M-step);
    the formula itself is checked by tests/conformance/.
    """
    model, P = truth(GATE_CASES[case], expert)
    x, y = simulate_data(model, P, N_SMALL, 21)
    res = quiet_fit(model, x, y, n_init=N_INIT, seed=1)
    cfg, dat = res._cfg, res._data
    params = jax.tree_util.tree_map(jnp.asarray, res.params_tree)
    masks = parametrization.free_masks(cfg, params, res.fixed)
    theta0 = np.asarray(parametrization.pack(cfg, params, masks))

    m = parametrization._Masks(masks)             # the polish's compiled derivatives: no new program

    def fun(th):
        ll, g, _ = parametrization._grad_hess(jnp.asarray(th), params, dat, cfg, m)
        return -float(ll), -np.asarray(g, dtype=np.float64)
    opt = scipy.optimize.minimize(fun, theta0, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 500})
    assert -fun(theta0)[0] == pytest.approx(res.loglik, abs=1e-9)
    assert -opt.fun - res.loglik <= 1e-8, (-opt.fun, res.loglik)


# ------------------------------------------------------------------ monotone EM

def _traces(model, x, y, seed):
    """log-likelihood traces (N_INIT, max_iter) of EM from the default starts, as ``fit`` runs it."""
    design, dat = device_data(model, x, y)
    info = model.expert.prepare(design.y, design.w)
    info["n_total"] = float(design.w.sum())
    cfg, ctl = model.config(), model.control(info)
    base = model.base_params(design.X.shape[1], design.Xg.shape[1], info)
    fixed = em.no_fixed(base)
    R = pipeline.start_responsibilities(model.gate, model.expert, design.X, design.y, design.w,
                                         model.n_experts, N_INIT, seed)
    params0 = em.params_from_resp(jnp.asarray(pipeline.pad_responsibilities(R, dat.w.shape[0])), base, dat,
                                  ctl, fixed, pipeline.start_config(cfg))
    keys = jax.random.split(jax.random.PRNGKey(seed), N_INIT)
    out = em.fit_restarts(params0, dat, ctl, fixed, keys, cfg)
    return np.asarray(out.trace), out


def _worst_step(traces):
    """Smallest relative change l_t - l_(t-1) over all traces, and the number of steps."""
    rel = [np.diff(t[np.isfinite(t)]) / np.abs(t[np.isfinite(t)][1:]) for t in traces]
    return min(r.min() for r in rel), sum(r.size for r in rel)


@pytest.mark.slow
@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("case", CASES)
def test_loglik_never_decreases(case, expert):
    model, P = truth(GATE_CASES[case], expert)
    worst, n_steps = np.inf, 0
    for seed in (31, 32):
        x, y = simulate_data(model, P, N_SMALL, seed)
        w, m = _worst_step(_traces(model, x, y, seed)[0])
        worst, n_steps = min(worst, w), n_steps + m
    assert worst >= -1e-12, worst
    assert n_steps >= 2 * N_INIT * 5


# ------------------------------------------------------------------ padding, compilation, float64

@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_padding_float64_and_no_recompile(case):
    model, P = truth(GATE_CASES[case], EXPERTS[0])
    x, y = simulate_data(model, P, N_SMALL, 41)
    _, dat = device_data(model, x, y)                          # bucket 320
    _, dat_big = device_data(model, x, y, N=bucket_size(N_BIG))  # same data, padded to the big bucket
    cfg, ctl = model.config(), model.control({"var_y": float(np.var(y))}, 1e-10)
    start = jax.tree_util.tree_map(lambda a: jnp.stack([jnp.asarray(a, dtype=jnp.float64)] * N_INIT), P)
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], start))
    keys = jax.random.split(jax.random.PRNGKey(0), N_INIT)
    a = em.fit_restarts(start, dat, ctl, fixed, keys, cfg)
    b = em.fit_restarts(start, dat_big, ctl, fixed, keys, cfg)
    assert float(a.loglik[0]) == pytest.approx(float(b.loglik[0]), rel=1e-12)
    for u, v in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        assert u.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-8)
    # a new n inside the same bucket reuses the compiled EM program
    x2, y2 = simulate_data(model, P, 310, 42)
    quiet_fit(model, x, y, n_init=N_INIT)
    before = em.fit_restarts._cache_size()
    res = quiet_fit(model, x2, y2, n_init=N_INIT)
    assert em.fit_restarts._cache_size() == before
    assert res._data.w.shape[0] == 320 and res._data.X.dtype == jnp.float64


# ------------------------------------------------------------------ settings and errors

def test_topk_validates_k():
    with pytest.raises(ValueError, match=r"1 <= K <= number of experts, got K=0"):
        G.TopK(k=0)
    with pytest.raises(TypeError, match="must be an integer"):
        G.TopK(k=1.5)
    with pytest.raises(ValueError, match="select must be one of"):
        G.TopK(k=1, select="values")
    x = np.linspace(-1, 1, 50)
    with pytest.raises(ValueError, match=r"got K=3 with 2 experts"):
        ms.GaussianMoE(2, gating=G.TopK(k=3)).fit(x, np.sin(3 * x))
    with pytest.raises(ValueError, match="select='slopes'.*needs a gate intercept"):
        ms.GaussianMoE(2, gating=G.TopK(k=1, select="slopes"), gate_intercept=False).fit(x, np.sin(3 * x), gate_X=x)


@pytest.mark.parametrize("make", [lambda t: G.TemperatureSoftmax(temperature=t),
                                  lambda t: G.ActivationSoftmax(temperature=t),
                                  lambda t: G.TemperatureSoftmax(schedule=(2.0, t, 10))])
@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf")])
def test_temperature_must_be_positive(make, tau):
    with pytest.raises(ValueError, match="> 0"):
        make(tau)


def test_temperature_settings_errors():
    with pytest.raises(ValueError, match="cannot be combined"):
        G.TemperatureSoftmax(estimate_temperature=True, schedule=(2.0, 0.5, 10))
    with pytest.raises(TypeError, match="temperature must be a positive number"):
        G.TemperatureSoftmax(temperature="hot")
    with pytest.raises(ValueError, match="activation must be one of"):
        G.ActivationSoftmax(activation="relu6")
    with pytest.raises(ValueError, match="below min_temperature"):
        G.ActivationSoftmax(temperature=1e-8)
    x = np.linspace(-1, 1, 60)
    with pytest.raises(ValueError, match="needs a gate intercept"):
        ms.GaussianMoE(2, gating="activation_softmax", gate_intercept=False).fit(x, np.sin(3 * x), gate_X=x)
    with pytest.raises(ValueError, match="needs at least one gate covariate"):
        ms.GaussianMoE(2, gating="activation_softmax").fit(x, np.sin(3 * x), gate_X=np.zeros((60, 0)))


@pytest.mark.parametrize("fn, message", [
    (lambda z: z ** 2, "one-to-one"),
    (np.cos, "one-to-one"),
    (lambda z: 2.0 * z + 1.0, "is affine"),
    (np.arcsinh, "must be bounded"),
    (lambda z: z - z.mean(axis=1, keepdims=True) + np.tanh(z), "element-wise"),
    (lambda z: np.tanh(z).sum(axis=1), "element-wise"),
])
def test_modified_softmax_rejects_bad_maps(fn, message):
    with pytest.raises(ValueError, match=message):
        G.ModifiedSoftmax(transform=fn)


def test_modified_softmax_checks_data_and_names():
    with pytest.raises(ValueError, match="transform must be one of"):
        G.ModifiedSoftmax(transform="relu")
    x = np.linspace(-1, 1, 40)

    def clipped(z):  # fine on the grid [-6, 6], undefined beyond 10
        return np.where(np.abs(z) < 10, np.tanh(z), np.nan)
    with pytest.raises(ValueError, match="not finite for gate covariate 1 at row 39"):
        ms.GaussianMoE(2, gating=G.ModifiedSoftmax(clipped)).fit(x, np.sin(x), gate_X=np.where(x < 1, x, 20.0))

    def folded(z):  # monotone on the grid, but folds back beyond 7
        return np.where(z < 7, np.tanh(z), np.tanh(14.0 - z))
    with pytest.raises(ValueError, match="distinct values of gate covariate 1 to the same value"):
        ms.GaussianMoE(2, gating=G.ModifiedSoftmax(folded)).fit(x, np.sin(x), gate_X=np.where(x < 0, 6.5, 7.5) + 0 * x)
    g = G.ModifiedSoftmax(np.arctan)
    assert g.transform(np.array([[0.0], [1.0]]))[1, 0] == pytest.approx(np.pi / 4)
    rows = g.describe(G.SoftmaxParams(coef=np.zeros((2, 2))), ["Intercept", "x"])
    assert [r[1] for r in rows] == ["Intercept", "arctan(x)"]


# ------------------------------------------------------------------ family-specific checks

@pytest.mark.slow
def test_modified_softmax_predict_applies_transform():
    model, P = truth(GATE_CASES["modified_softmax"], "linear")
    x, y = simulate_data(model, P, N_SMALL, 51)
    res = quiet_fit(model, x, y, n_init=N_INIT)
    xn = np.array([-1.5, 0.0, 0.7])
    c = res.params_tree.gate.coef
    eta = c[:, :1] + c[:, 1:2] * (1.0 / (1.0 + np.exp(-xn)))[None]
    expect = np.exp(eta - np.log(np.exp(eta).sum(0)))
    np.testing.assert_allclose(res.predict(xn, kind="gate"), expect.T, rtol=1e-12)
    # experts use the raw x
    np.testing.assert_allclose(res.predict(xn, kind="experts"),
                               (res.params_tree.expert.coef @ np.vstack([np.ones(3), xn])).T, rtol=1e-12)


def test_normalized_sigmoid_closed_form_curvature_matches_autodiff():
    from moestat.gating import normalized_sigmoid as ns
    rng = np.random.default_rng(3)
    eta = jnp.asarray(rng.normal(0, 3, (4, 50)))
    tau = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 50))), axis=0)
    w = jnp.asarray(rng.uniform(0, 2, 50))
    g1, C1 = jax.jit(ns.ns_point_stats)(eta, tau, w)
    g2, C2 = jax.jit(ns.ns_point_stats_autodiff)(eta, tau, w)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(C1), np.asarray(C2), rtol=1e-10, atol=1e-13)
    # the curvature is not always definite: that is why the step is damped
    eig = np.linalg.eigvalsh(np.moveaxis(np.asarray(C1), 2, 0))
    assert (eig.min(axis=1) < 0).any()


def test_normalized_sigmoid_newton_stats_match_numpy_sums():
    """The pairs-only contraction against a NumPy transcription of the gradient and negative Hessian in B."""
    from scipy.special import expit
    from moestat.gating import normalized_sigmoid as ns
    rng = np.random.default_rng(5)
    k, p, N = 3, 2, 40
    coef = rng.normal(0, 1.5, (k, p))
    Xg = np.vstack([np.ones(N), rng.normal(size=N)])
    tau = rng.dirichlet(np.ones(k), size=N).T
    w = rng.uniform(0, 2, N)
    grad, negH = jax.jit(ns.ns_newton_stats)(jnp.asarray(coef), jnp.asarray(tau), jnp.asarray(w), jnp.asarray(Xg))
    s = expit(coef @ Xg)
    g = s * (1 - s)
    S = s.sum(0)
    ge = w * (tau * (1 - s) - g / S)
    G = np.zeros((k * p, k * p))
    for n in range(N):       # -d2/deta_i deta_j per point, then the chain rule eta = B x
        C = np.diag(w[n] * (tau[:, n] * g[:, n] + g[:, n] * (1 - 2 * s[:, n]) / S[n])) \
            - w[n] * np.outer(g[:, n], g[:, n]) / S[n] ** 2
        G += np.kron(C, np.outer(Xg[:, n], Xg[:, n]))
    np.testing.assert_allclose(np.asarray(grad), ge @ Xg.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(negH), G, rtol=1e-11, atol=1e-12)


def test_log_sigmoid_accurate_everywhere():
    from scipy.special import expit, log_expit
    from moestat.gating.normalized_sigmoid import log_sigmoid
    z = np.concatenate([[-1e4, -800.0, -745.5, -40.0001, -39.9999], np.linspace(-60, 60, 2001), [300.0, 800.0, 1e4]])
    got = np.asarray(jax.jit(log_sigmoid)(jnp.asarray(z)))
    ref = log_expit(z)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_less(np.abs(got - ref), 2e-16 + 4e-16 * np.abs(ref))
    # finite derivatives everywhere (the unused branch must not leak NaN)
    d = np.asarray(jax.jit(jax.vmap(jax.grad(log_sigmoid)))(jnp.asarray(z)))
    np.testing.assert_allclose(d, expit(-z), rtol=1e-12, atol=3e-16)


def test_normalized_sigmoid_m_step_same_with_e_step_log_weights():
    """The M-step reading the objective at the current coefficients from the E-step's log weights takes the
    same step as the one computing it, and the step does not lower the objective (also from an indefinite start)."""
    from moestat.fitting import em
    from moestat.gating import normalized_sigmoid as ns
    rng = np.random.default_rng(8)
    k, N = 3, 300
    Xg = jnp.asarray(np.vstack([np.ones(N), rng.uniform(-3, 3, N)]))
    tau = jnp.asarray(rng.dirichlet(np.ones(k) * 0.5, size=N).T)
    w = jnp.asarray(np.r_[np.ones(N - 20), np.zeros(20)])
    gate = ns.NormalizedSigmoid()
    ctl = em.make_control()
    for coef in (rng.normal(0, 1, (k, 2)), np.array([[-0.5, 5.0], [0.5, 5.0], [0.5, 5.0]])):
        p0 = ns.NormalizedSigmoidParams(coef=jnp.asarray(coef))
        fixed = ns.NormalizedSigmoidParams(coef=jnp.zeros((k, 2), bool))
        lw = gate.log_weights(p0, Xg)
        a = jax.jit(lambda p: gate.m_step(p, tau, Xg, w, ctl, 8, fixed))(p0)
        b = jax.jit(lambda p, lw: gate.m_step(p, tau, Xg, w, ctl, 8, fixed, log_w=lw))(p0, lw)
        np.testing.assert_allclose(np.asarray(a.coef), np.asarray(b.coef), rtol=1e-12, atol=1e-12)
        q = lambda c: float(ns.ns_objective(c, tau, w, Xg))  # noqa: E731
        assert q(a.coef) > q(p0.coef)


@pytest.mark.slow
def test_topk_weights_ties_and_finite_derivatives():
    gate = G.TopK(k=2)
    Xg = jnp.asarray(np.vstack([np.ones(5), np.linspace(-1, 1, 5)]))
    lw = np.asarray(gate.log_weights(G.SoftmaxParams(coef=jnp.zeros((3, 2))), Xg))
    # all scores tie: the two lowest indices are active with weight 1/2
    np.testing.assert_allclose(np.exp(lw[:2]), 0.5)
    assert np.all(np.isneginf(lw[2]))
    model, P = truth(GATE_CASES["topk"], "linear")
    x, y = simulate_data(model, P, N_SMALL, 61)
    res = quiet_fit(model, x, y, n_init=N_INIT)
    assert np.all(np.isfinite(res.responsibilities))
    assert (res.responsibilities == 0).sum(axis=1).min() == 1        # one expert inactive at every point
    theta, ll, g, H = parametrization.loglik_derivatives(res._cfg, jax.tree_util.tree_map(jnp.asarray, res.params_tree),
                                                         res._data, res.fixed)
    assert np.isfinite(ll) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))
    assert ll == pytest.approx(res.loglik, rel=1e-12)


def test_topk_with_k_equal_to_experts_is_softmax():
    Xg = jnp.asarray(np.vstack([np.ones(7), np.linspace(-2, 2, 7)]))
    coef = jnp.asarray([[0.0, 0.0], [0.4, 1.5], [-0.3, -2.0]])
    a = ms.gating.Softmax().log_weights(G.SoftmaxParams(coef), Xg)
    b = G.TopK(k=3).log_weights(G.SoftmaxParams(coef), Xg)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-14)
    c = np.asarray(G.TopK(k=2, select="slopes").log_weights(G.SoftmaxParams(coef), Xg))
    # ranked on the slopes 0, 1.5 x, -2 x only: at x = -2 experts 1 and 3 are active, at x = 2 experts 1 and 2
    assert np.isneginf(c[1, 0]) and np.isneginf(c[2, -1]) and np.isfinite(c[0]).all()


@pytest.mark.slow
def test_topk_single_active_expert_is_monotone():
    model = ms.GaussianMoE(2, gating=G.TopK(k=1))
    P = ms.MoEParams(gate=G.SoftmaxParams(coef=np.array([[0.0, 0.0], [0.3, 3.0]])),
                     expert=ms.experts.GaussianParams(coef=np.array([[1.0, 2.0], [-1.0, -1.5]]),
                                                      sigma2=np.array([0.09, 0.16])))
    x, y = simulate_data(model, P, N_SMALL, 81)
    traces, out = _traces(model, x, y, 81)
    assert _worst_step(traces)[0] >= -1e-12
    assert float(np.max(out.loglik)) >= loglik_at(model, P, x, y) - 1.0


@pytest.mark.slow
def test_temperature_fixed_equals_softmax_rescaled():
    model, P = truth(GATE_CASES["temperature_softmax"], "linear")
    x, y = simulate_data(model, P, N_SMALL, 91)
    soft = quiet_fit(ms.GaussianMoE(2), x, y, n_init=N_INIT, seed=4)
    temp = quiet_fit(model, x, y, n_init=N_INIT, seed=4)
    assert temp.loglik == pytest.approx(soft.loglik, abs=1e-7)
    # the two fits may label the experts differently (equal likelihoods): align soft's labels with temp's
    te, se = np.asarray(temp.params_tree.expert.coef), np.asarray(soft.params_tree.expert.coef)
    perm = [0, 1] if np.abs(te - se).max() < np.abs(te - se[::-1]).max() else [1, 0]
    soft_gate = G.Softmax().canonical(G.Softmax().permute(jax.tree_util.tree_map(np.asarray, soft.params_tree.gate),
                                                          np.array(perm)))
    np.testing.assert_allclose(te, se[perm], atol=1e-5)
    np.testing.assert_allclose(temp.params_tree.gate.coef, 0.5 * np.asarray(soft_gate.coef), atol=1e-5)
    assert temp.df == soft.df
    est = quiet_fit(ms.GaussianMoE(2, gating=G.TemperatureSoftmax(estimate_temperature=True)), x, y,
                    n_init=N_INIT, seed=4)
    theta = soft.params_tree.gate.coef[:, 1]
    assert est.loglik == pytest.approx(soft.loglik, abs=1e-7)
    assert np.exp(est.params_tree.gate.log_temp) == pytest.approx(1.0 / np.linalg.norm(theta - theta.mean()), rel=1e-5)
    assert est.params_frame()["term"].iloc[-1] == "temperature"


def test_temperature_schedule_anneals_to_its_end():
    model, P = truth(GATE_CASES["temperature_softmax"], "linear")
    x, y = simulate_data(model, P, N_SMALL, 95)
    sched = ms.GaussianMoE(2, gating=G.TemperatureSoftmax(schedule=(2.0, 0.5, 40)))
    res = quiet_fit(sched, x, y, n_init=N_INIT)
    assert np.exp(res.params_tree.gate.log_temp) == pytest.approx(0.5, rel=1e-12)
    g = sched.gate
    lt = g.initial_log_temp()
    for _ in range(20):
        lt = g.next_log_temp(lt, False)
    assert float(np.exp(lt)) == pytest.approx(2.0 * (0.5 / 2.0) ** 0.5, rel=1e-12)


def test_simulate_matches_results_sample():
    model, P = truth(GATE_CASES["normalized_sigmoid"], "linear")
    x, y = simulate_data(model, P, N_SMALL, 97)
    res = quiet_fit(model, x, y, n_init=N_INIT)
    xn = np.linspace(-2, 2, 25)
    a, za = ms.simulate(model, res.params_tree, xn, seed=5, return_labels=True)
    b, zb = res.sample(xn, seed=5, return_labels=True)
    np.testing.assert_array_equal(za, zb)
    np.testing.assert_allclose(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="do not match this model's shapes"):
        ms.simulate(ms.GaussianMoE(3, gating="normalized_sigmoid"), res.params_tree, xn)


@pytest.mark.parametrize("case", CASES)
def test_free_count_describe_and_report_agree(case):
    """n_free_params = entries in free_mask; describe() and report() list the same estimates."""
    gc = GATE_CASES[case]
    gate, k = gc.gate, gc.k
    base = gate.init_params(k, 2)
    n_mask = sum(int(np.sum(np.asarray(m))) for m in jax.tree_util.tree_leaves(gate.free_mask(base)))
    assert gate.n_free_params(k, 2) == n_mask
    P = jax.tree_util.tree_map(jnp.asarray, gc.gate_params)
    rows = gate.describe(jax.tree_util.tree_map(np.asarray, gate.canonical(P)), ["Intercept", "x"])
    assert len(rows) == n_mask + int(isinstance(gate, G.TemperatureSoftmax) and gate.estimate_temperature)
    np.testing.assert_allclose(np.asarray(gate.report(P)), [r[2] for r in rows], rtol=1e-12)


def test_activation_reference_modes_and_relabelling():
    Xg = jnp.asarray(np.vstack([np.ones(9), np.linspace(-2, 2, 9)]))
    g = G.ActivationSoftmax()
    P = G.ActivationParams(coef=jnp.asarray([[0.0, 0.0], [0.5, 3.0]]), log_temp=jnp.log(0.5))
    swapped = g.permute(P, [1, 0])                    # the k = 2 mirror: (c, b) -> (-c, -b)
    np.testing.assert_allclose(np.asarray(g.log_weights(swapped, Xg)), np.asarray(g.log_weights(P, Xg))[::-1],
                               rtol=1e-12, atol=1e-14)
    P3 = G.ActivationParams(coef=jnp.asarray([[0.0, 0.0], [0.5, 3.0], [-0.2, -1.0]]), log_temp=jnp.log(0.5))
    np.testing.assert_allclose(np.asarray(g.log_weights(g.permute(P3, [0, 2, 1]), Xg)),
                               np.asarray(g.log_weights(P3, Xg))[[0, 2, 1]], rtol=1e-12)
    with pytest.raises(ValueError, match="relabelling the reference expert 0 changes the model"):
        g.permute(P3, [1, 0, 2])
    free = G.ActivationSoftmax(reference="intercept")
    assert (g.n_free_params(3, 2), free.n_free_params(3, 2)) == (5, 6)
    assert len(free.describe(jax.tree_util.tree_map(np.asarray, P3), ["Intercept", "x"])) == 6
    np.testing.assert_allclose(np.asarray(free.log_weights(free.permute(P3, [1, 0, 2]), Xg)),
                               np.asarray(free.log_weights(P3, Xg))[[1, 0, 2]], rtol=1e-12)
    with pytest.raises(ValueError, match="reference must be one of"):
        G.ActivationSoftmax(reference="none")


def test_softmax_start_guess_is_linear_discriminant_analysis():
    """The softmax start's closed-form guess is LDA: log W_i + log N(x; mu_i, S) - (the same for expert 1), with
    class means and the pooled within-class covariance computed here from centred data and the normal density
    from scipy (the gate computes it from raw moments)."""
    from scipy.stats import multivariate_normal
    rng = np.random.default_rng(4)
    n, k = 400, 3
    x = rng.normal(size=(n, 2)) * [1.0, 3.0] + 5.0
    tau = rng.dirichlet(np.ones(k), size=n).T
    w = rng.uniform(0.5, 2.0, n)
    D = np.column_stack([np.ones(n), x])
    tw = tau * w
    guess = ms.gating.Softmax().start_guess_from_moments(jnp.asarray(tw.sum(1)), jnp.asarray(tw @ D),
                                                         jnp.asarray(np.einsum("in,na,nb->iab", tw, D, D)))
    W = tw.sum(1)
    mu = (tw @ x) / W[:, None]
    S = sum((tw[i][:, None] * (x - mu[i])).T @ (x - mu[i]) for i in range(k)) / W.sum()
    pts = rng.normal(size=(5, 2)) + 5.0
    logp = np.array([np.log(W[i]) + multivariate_normal(mu[i], S).logpdf(pts) for i in range(k)])
    coef = np.asarray(guess.coef)
    np.testing.assert_allclose(coef[0], 0.0, atol=0)
    np.testing.assert_allclose(coef @ np.column_stack([np.ones(5), pts]).T, logp - logp[0], rtol=1e-9, atol=1e-9)
    # no covariates: the guess is the optimum itself, the log-odds of the class weights
    only = ms.gating.Softmax().start_guess_from_moments(jnp.asarray(W), jnp.asarray(W[:, None]),
                                                        jnp.asarray(W[:, None, None]))
    np.testing.assert_allclose(np.asarray(only.coef)[:, 0], np.log(W / W[0]), rtol=1e-13)
    assert ms.gating.get_gate("normalized_sigmoid").start_guess_from_moments(W, W[:, None], W[:, None, None]) is None
