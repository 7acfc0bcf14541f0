"""The one estimation pipeline: fit, the bootstrap and the harness start, run and choose alike; compile count."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import moestat as ms
from moestat.data.design import make_data
from moestat.fitting import em, pipeline
from moestat.fitting.starts import kmeans_labels
from references import numpy_em as ref


def _setup(gating, df, k=2):
    model = ms.GaussianMoE(k, gating=gating)
    d = model.design("y ~ x", data=df)
    info = model.expert.prepare(d.y, d.w)
    info["n_total"] = float(d.w.sum())
    dat = make_data(d.X, d.Xg, d.y, d.w)
    base = model.base_params(d.X.shape[1], d.Xg.shape[1], info)
    return model, d, info, dat, base


def test_choose_prefers_finite_nondegenerate_fits():
    assert pipeline.choose([-3.0, -1.0, np.nan, -2.0], [False, True, False, False]) == 3
    assert pipeline.choose([-3.0, -1.0], [True, True]) == 1                   # all degenerate: the best
    assert pipeline.choose([np.nan, -7.0], [False, True]) == 1                # no finite non-degenerate fit
    assert pipeline.choose([-3.0, -1.0], [False, True], prefer_nondegenerate=False) == 1


def test_initial_params_match_the_families():
    base, free = pipeline.initial_params(ms.gating.get_gate("softmax"), ms.experts.get_expert("linear"), 3, 2, 4,
                                         {"var_y": 2.5, "n_total": 10.0})
    assert base.gate.coef.shape == (3, 4) and not base.gate.coef.any()
    np.testing.assert_array_equal(base.expert.sigma2, [2.5, 2.5, 2.5])
    np.testing.assert_array_equal(free.gate.coef[:, 0], [False, True, True])   # the softmax reference row
    assert free.expert.coef.all() and free.expert.sigma2.all()


@pytest.mark.parametrize("gating", ["normalized_sigmoid", "topk"])
def test_bootstrap_starts_equal_fit_starts(sim_df, gating):
    """A bootstrap replicate with the original weights and responses is started exactly as fit starts."""
    model, d, info, dat, base = _setup(gating, sim_df)
    R = pipeline.pad_responsibilities(pipeline.start_responsibilities(model.gate, model.expert, d.X, d.y, d.w, 2,
                                                                      3, 5), dat.w.shape[0])
    cfg = pipeline.start_config(model.config())
    ctl = model.control(info)
    fixed = em.no_fixed(base)
    fit_starts = em.params_from_resp(jax.numpy.asarray(R), base, dat, ctl, fixed, cfg)
    W, Y = np.repeat(np.asarray(dat.w)[None], 3, 0), np.repeat(np.asarray(dat.y)[None], 3, 0)
    boot_starts = pipeline.params_from_variants(jax.numpy.asarray(R), base, dat, W, Y, ctl, fixed, cfg)
    for a, b in zip(jax.tree_util.tree_leaves(fit_starts), jax.tree_util.tree_leaves(boot_starts)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if model.gate.hold_in_starts:   # the normalized sigmoid keeps its neutral gate in starts
        np.testing.assert_array_equal(np.asarray(boot_starts.gate.coef), 0.0)


def test_start_m_steps_reach_the_weighted_least_squares_fit(sim_df):
    """The (early-stopped) start M-steps give each expert the weighted least squares fit of its partition."""
    model, d, info, dat, base = _setup("softmax", sim_df)
    R = pipeline.start_responsibilities(model.gate, model.expert, d.X, d.y, d.w, 2, 2, 0)
    P = em.params_from_resp(jax.numpy.asarray(pipeline.pad_responsibilities(R, dat.w.shape[0])), base, dat,
                            model.control(info), em.no_fixed(base), pipeline.start_config(model.config()))
    for s in range(2):
        for i in range(2):
            t = R[s, i]
            sw = np.sqrt(t)
            beta = np.linalg.lstsq(d.X * sw[:, None], d.y * sw, rcond=None)[0]
            s2 = t @ (d.y - d.X @ beta) ** 2 / t.sum()
            np.testing.assert_allclose(np.asarray(P.expert.coef)[s, i], beta, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(P.expert.sigma2)[s, i], s2, rtol=1e-10)
        # the gate maximises sum_n sum_i t_in log g_i: its gradient vanishes (NumPy transcription)
        g = np.asarray(P.gate.coef)[s]
        eta = d.Xg @ g.T
        pg = np.exp(eta - eta.max(1, keepdims=True))
        pg /= pg.sum(1, keepdims=True)
        grad = (R[s].T - pg)[:, 1:].T @ d.Xg
        assert np.abs(grad).max() < 1e-8 * len(d.y)


def test_harness_estimate_is_fit_from_the_same_starts(sim_df):
    """pipeline.estimate without polish (the harness's option) = MoEModel.fit from the same start, no polish."""
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=2, seed=3, polish=False)
    start = jax.tree_util.tree_map(lambda a: a[None], res.params_internal)
    model, d, info, dat, base = _setup("softmax", sim_df)
    cfg = em.with_intercepts(model.config(), d.X, d.Xg, d.w)    # the configuration fit makes for these data
    assert cfg == res._cfg and cfg.expert_intercept and cfg.gate_intercept and cfg.shared_design
    est = pipeline.estimate(start, dat, res._ctl, em.no_fixed(base), cfg, info, seed=0, polish_fit=False)
    assert est.best == 0 and est.n_polish == 0
    refit = model.fit("y ~ x", data=sim_df, init=res, polish=False)
    assert float(est.fit.loglik) == refit.loglik
    # the log-likelihood against the NumPy transcription of the model
    P = est.fit.params
    ll, _ = ref.loglik_and_resp(np.asarray(P.gate.coef), np.asarray(P.expert.coef), np.asarray(P.expert.sigma2),
                                d.X, d.Xg, d.y, d.w)
    assert ll == pytest.approx(float(est.fit.loglik), abs=1e-9)


def test_kmeans_on_a_subsample_recovers_separated_clusters():
    rng = np.random.default_rng(4)
    n = 40000                                       # more than twice the subsample: k-means runs on a subsample
    z = rng.integers(0, 3, n)
    F = np.array([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])[z] + rng.normal(size=(n, 2))
    lab = kmeans_labels(F, np.ones(n), 3, np.random.default_rng(0))
    table = np.zeros((3, 3), int)
    np.add.at(table, (z, lab), 1)
    assert (table.max(1).sum()) >= n - 5             # one label per true cluster, up to a few overlaps
    assert len(set(table.argmax(1).tolist())) == 3


def test_kmeans_pieces_match_their_direct_definitions():
    """The nearest-centre pass equals argmin (first of ties), the centroid update the masked weighted means,
    and the softened one-hot matrix the mixture with uniform weights."""
    from moestat.fitting.starts import _lloyd, _nearest, labels_to_resp
    rng = np.random.default_rng(3)
    F = rng.normal(size=(500, 3)).round(1)          # rounded: equal distances occur
    C = np.vstack([F[:4], F[:1]])                   # a repeated centre: a tie in every row it wins
    D = ((F[:, None, :] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(_nearest(F, C), D.argmin(1))
    w = rng.uniform(0, 2, 500) * (rng.uniform(size=500) > 0.2)     # zero weights among them
    Cf, lab = _lloyd(F, w, 4, np.random.default_rng(0), 1)          # one Lloyd step: centres from the seeding's labels
    for j in range(4):
        m = (lab == j) & (w > 0)
        np.testing.assert_allclose(Cf[j], (w[m, None] * F[m]).sum(0) / w[m].sum(), rtol=1e-13)
    for k, soften in ((3, 0.0), (3, 0.05), (5, 0.3)):
        labels = rng.integers(0, k, 50)
        one_hot = np.eye(k)[labels].T
        np.testing.assert_array_equal(labels_to_resp(labels, k, soften), (1.0 - soften) * one_hot + soften / k)


@pytest.mark.slow
def test_first_fit_compiles_a_handful_of_programs(tmp_path):
    """A fresh process's first GaussianMoE(2).fit on sim_moe2 compiles at most 8 XLA programs."""
    code = textwrap.dedent("""
        import json, logging
        import jax
        names = []
        class Count(logging.Handler):
            def emit(self, record):
                msg = record.getMessage()
                if msg.startswith("Compiling "):
                    names.append(msg.split()[1])
        log = logging.getLogger("jax")
        log.addHandler(Count(logging.DEBUG))
        log.setLevel(logging.DEBUG)
        log.propagate = False
        jax.config.update("jax_log_compiles", True)
        import moestat as ms
        df = ms.datasets.load_sim_moe2()
        del names[:]
        res = ms.GaussianMoE(2).fit("y ~ x", data=df)
        first = list(names)
        ms.GaussianMoE(2).fit("y ~ x", data=df)
        print(json.dumps({"first": first, "second": names[len(first):], "loglik": res.loglik}))
    """)
    env = dict(os.environ, MOESTAT_JAX_CACHE="0", PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rep["first"]) <= 8, rep["first"]
    assert rep["second"] == [], rep["second"]          # a second fit of the same shapes compiles nothing
    assert rep["loglik"] == pytest.approx(ms.datasets.sim_moe2_reference()["mle"]["loglik"], abs=1e-5)


def test_remaining_gain_of_a_geometric_em_path():
    """l_t = L - c r^t: what is left after the last iteration is c r^T (hand computation)."""
    t = np.arange(21)
    trace = np.concatenate([-1000.0 - 5.0 * 0.5 ** t, [np.nan] * 5])
    assert pipeline.remaining_gain(trace) == pytest.approx(5.0 * 0.5 ** 20, rel=1e-3)
    assert pipeline.remaining_gain(trace[:2]) == np.inf                        # too short to estimate a rate
    assert pipeline.remaining_gain(-1000.0 + np.arange(10.0)) == np.inf        # no linear convergence


def test_polish_stops_on_the_step_hessian_only_when_nothing_is_left(sim_df, monkeypatch):
    """After an undamped Newton step the polish may stop on the decrement taken with the step's Hessian
    and the new gradient; at its result the Newton decrement with the Hessian *there* is below the
    tolerance too, and the result equals a polish that recomputes the Hessian after every step."""
    from moestat.fitting import parametrization as par
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=2, seed=3, polish=False, tol=1e-5)
    model, d, info, dat, base = _setup("softmax", sim_df)
    cfg, fixed, p0 = model.config(), em.no_fixed(base), res.params_internal
    states = []
    real_state = par._newton_state
    monkeypatch.setattr(par, "_newton_state", lambda *a: states.append(1) or real_state(*a))
    new, ll, steps = par.newton_polish(cfg, p0, dat, fixed, res._ctl, gtol=1e-9)
    assert steps >= 1 and ll > res.loglik
    assert len(states) == steps                     # no Hessian after the last step: the shortcut stopped it
    theta, ll2, g, H = par.loglik_derivatives(cfg, new, dat, fixed)
    assert ll2 == pytest.approx(ll, abs=1e-9)
    assert 0.5 * g @ np.linalg.solve(-H, g) < 1e-9
    # the same polish without the shortcut: every accepted step is followed by the Hessian at the new point
    real_trial = par._trial
    monkeypatch.setattr(par, "_trial", lambda *a: (lambda o: (o[0], o[1] * np.nan, o[2]))(real_trial(*a)))
    new_full, ll_full, steps_full = par.newton_polish(cfg, p0, dat, fixed, res._ctl, gtol=1e-9)
    assert steps_full >= steps and len(states) == steps + steps_full + 1
    assert ll_full == pytest.approx(ll, abs=1e-9)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(new_full)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)


@pytest.mark.parametrize("k, fix", [(3, False), (2, True)])
def test_predictor_form_derivatives_equal_autodiff(k, fix):
    """The softmax-gated linear Gaussian MoE's closed-form derivatives in theta (the polish's Hessian) equal
    jax.hessian of the log-likelihood at arbitrary parameters: different gate and expert designs, weights,
    padded rows, fixed entries left out of theta."""
    from moestat.fitting import parametrization as par
    from moestat.experts.gaussian import GaussianParams
    from moestat.gating.softmax import SoftmaxParams
    rng = np.random.default_rng(k)
    n = 700
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    Xg = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) * 2.0
    w = rng.uniform(0.5, 2.0, size=n)
    dat = make_data(X, Xg, y, w)                                      # padded to the bucket: weight-0 rows
    assert dat.w.shape[0] > n
    cfg = ms.GaussianMoE(k).config()
    params = em.MoEParams(SoftmaxParams(np.vstack([np.zeros((1, 2)), rng.normal(size=(k - 1, 2))])),
                          GaussianParams(rng.normal(size=(k, 3)), rng.uniform(0.3, 3.0, size=k)))
    params = jax.tree_util.tree_map(np.asarray, params)
    fixed = em.no_fixed(params)
    if fix:
        fixed = em.MoEParams(fixed.gate, GaussianParams(np.asarray(fixed.expert.coef).copy(),
                                                        np.array([True] + [False] * (k - 1))))
        fixed.expert.coef[1, 2] = True
    m = par._Masks(par.free_masks(cfg, params, fixed))
    assert par._predictor_form(cfg, dat)
    ll, g, H = (np.asarray(a) for a in par._softmax_gaussian_derivatives(params, dat, cfg, m))
    theta = par.pack(cfg, params, m.masks)
    ll2, g2, H2 = (np.asarray(a) for a in par._grad_hess(theta, params, dat, cfg, m))
    assert g.shape == (theta.shape[0],) and H.shape == (theta.shape[0],) * 2
    assert ll == pytest.approx(ll2, rel=1e-13)
    np.testing.assert_allclose(g, g2, rtol=0, atol=1e-9 * np.abs(g2).max())
    np.testing.assert_allclose(H, H2, rtol=0, atol=1e-11 * np.abs(H2).max())
