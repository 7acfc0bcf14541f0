"""Grouped observations (flexmix's ``y ~ x | id``): all rows of a group share one latent expert."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import moestat as ms
from moestat.fitting import parametrization as pz
from moestat.inference.bootstrap import _replicate_data, _spec_for

from _inference_helpers import bootstrap_variance_ratio, np_ascent
from _truths import monotone

GATE = np.array([[0.0, 0.0], [0.3, 2.0]])        # (k, 1 + z): intercept, group covariate z
COEF = np.array([[-1.0, 2.0], [1.0, -2.0]])      # (k, 1 + x)
SIGMA = np.array([0.6, 0.4])
G, M = 150, 4                                    # groups x rows per group


def _simulate(seed=3):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(G), M)
    zg = rng.normal(size=G)
    eta = np.column_stack([np.ones(G), zg]) @ GATE.T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lab = (p.cumsum(1) > rng.random((G, 1))).argmax(1)
    x = rng.normal(size=G * M)
    zr = lab[ids]
    y = COEF[zr, 0] + COEF[zr, 1] * x + SIGMA[zr] * rng.normal(size=G * M)
    return pd.DataFrame({"y": y, "x": x, "z": zg[ids], "id": ["g%03d" % i for i in ids]}), lab


def _np_grouped_loglik(params, df):
    """Direct NumPy grouped log-likelihood sum_g log sum_i g_i(z_g) prod_{n in g} f_i(y_n | x_n)."""
    gate, coef, s2 = (np.asarray(a) for a in (params.gate.coef, params.expert.coef, params.expert.sigma2))
    return _np_grouped(gate, coef, np.sqrt(s2), df)


def _np_grouped(gate, coef, sigma, df):
    """:func:`_np_grouped_loglik` at gate coefficients (k, 2), expert coefficients (k, 2) and sigmas (k,)."""
    codes, _ = pd.factorize(df["id"])
    Zd = np.column_stack([np.ones(len(df)), df["z"]])
    eta = Zd @ gate.T
    lg = eta - logsumexp(eta, axis=1, keepdims=True)                               # (n, k)
    mu = np.column_stack([np.ones(len(df)), df["x"]]) @ coef.T
    ld = norm.logpdf(df["y"].to_numpy()[:, None], mu, np.asarray(sigma)[None])      # (n, k)
    first = np.unique(codes, return_index=True)[1]
    L = lg[first] + np.stack([np.bincount(codes, weights=ld[:, i]) for i in range(ld.shape[1])], axis=1)
    return float(logsumexp(L, axis=1).sum())


@pytest.fixture(scope="module")
def grouped():
    df, lab = _simulate()
    res = ms.GaussianMoE(2).fit("y ~ x", gate_X="~ z", data=df, groups="id", n_init=5)
    return df, lab, res


def test_singleton_groups_equal_ungrouped(sim_df, sim_fit):
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, groups=np.arange(len(sim_df))[::-1])
    assert abs(res.loglik - sim_fit.loglik) < 1e-9
    assert abs(res.bic - sim_fit.bic) < 1e-8 and abs(res.icl - sim_fit.icl) < 1e-6
    np.testing.assert_allclose(res.params_tree.expert.coef, sim_fit.params_tree.expert.coef, atol=1e-7)


def test_grouped_fit_matches_numpy_likelihood_and_is_an_mle(grouped):
    df, lab, res = grouped
    assert abs(res.loglik - _np_grouped_loglik(res.params_tree, df)) < 1e-8 * abs(res.loglik)
    assert monotone(res) >= -1e-12
    P = res.params_tree                     # a local maximum of the NumPy likelihood: BFGS on it gains nothing
    assert np_ascent(lambda *q: _np_grouped(*q, df), P.gate.coef, P.expert.coef, np.sqrt(P.expert.sigma2)) <= 1e-6
    assert res.design.n_groups == G and res.nobs == G
    assert abs(res.bic - (-2 * res.loglik + np.log(G) * res.df)) < 1e-9
    # near the truth (labels are recovered up to order: expert 1 has the positive slope)
    order = np.argsort(-res.params_tree.expert.coef[:, 1])
    res = res.relabel(order) if not np.array_equal(order, [0, 1]) else res
    np.testing.assert_allclose(res.params_tree.expert.coef, COEF, atol=0.12)
    np.testing.assert_allclose(np.sqrt(res.params_tree.expert.sigma2), SIGMA, atol=0.06)
    g = res.params_tree.gate.coef[1] - res.params_tree.gate.coef[0]
    assert np.all(np.abs(g - GATE[1]) < 4 * res.bse.loc["gate"].to_numpy())
    assert "Groups:" in str(res.summary()) and "150" in str(res.summary())


def test_grouped_standard_errors_match_finite_difference_hessian(grouped):
    df, _, res = grouped
    cfg = res._cfg
    P = jax.tree_util.tree_map(jnp.asarray, res.params_internal)
    theta, ll, grad, H = pz.loglik_derivatives(cfg, P, res._data, res.fixed)
    masks = pz.free_masks(cfg, P, res.fixed)
    f = lambda th: _np_grouped_loglik(pz.unpack(cfg, jnp.asarray(th), P, masks), df)
    h, m = 1e-4, theta.size
    Hfd = np.empty((m, m))
    for a in range(m):
        for b in range(a, m):
            ea, eb = np.eye(m)[a] * h, np.eye(m)[b] * h
            Hfd[a, b] = Hfd[b, a] = (f(theta + ea + eb) - f(theta + ea - eb) - f(theta - ea + eb)
                                     + f(theta - ea - eb)) / (4 * h * h)
    np.testing.assert_allclose(H, Hfd, rtol=1e-4, atol=1e-4 * np.abs(H).max())
    assert np.all(np.isfinite(res.bse.to_numpy())) and np.all(res.bse.to_numpy() > 0)


def test_empirical_bootstrap_resamples_groups(grouped):
    df, _, res = grouped
    spec = _spec_for(res, "empirical", 7, [])
    W, _ = _replicate_data(spec, np.arange(3))
    codes = res.design.group_codes
    w = W[:, : len(df)]
    for r in range(3):
        per_group = np.bincount(codes, weights=w[r]) / M
        np.testing.assert_array_equal(w[r], per_group[codes])      # constant within each group
        assert per_group.sum() == G and np.all(per_group == np.round(per_group))


def test_posterior_is_shared_within_groups(grouped):
    df, _, res = grouped
    post = res.predict(kind="posterior")
    codes = res.design.group_codes
    first = np.unique(codes, return_index=True)[1]
    np.testing.assert_array_equal(post, post[first][codes])
    np.testing.assert_allclose(post, res.responsibilities, atol=0)
    assert np.all(res.predict(kind="labels") == post.argmax(1))


def test_grouped_validation_errors():
    df, _ = _simulate()
    model = ms.GaussianMoE(2)
    with pytest.raises(ValueError, match=r"gate covariates must be constant within each group, .* group 'g000'"):
        model.fit("y ~ x", data=df, groups="id")              # gate on the row-level x
    w = np.ones(len(df))
    w[5] = 2.0                                                 # row 5 is in group g001
    with pytest.raises(ValueError, match=r"weights must be constant within each group, .* group 'g001'"):
        model.fit("y ~ x", gate_X="~ z", data=df, groups="id", weights=w)
    with pytest.raises(ValueError, match="groups has 10 entries but there are 600 observations"):
        model.fit("y ~ x", gate_X="~ z", data=df, groups=np.arange(10))
    with pytest.raises(ValueError, match="groups='nope' names no column of data"):
        model.fit("y ~ x", gate_X="~ z", data=df, groups="nope")
    with pytest.raises(ValueError, match="not supported with the 'gaussian' gate"):
        ms.GaussianMoE(2, gating="gaussian").fit("y ~ x", gate_X="~ z", data=df, groups="id")
    with pytest.raises(ValueError, match="not supported with the 'topk' gate"):
        ms.GaussianMoE(3, gating="topk").fit("y ~ x", gate_X="~ z", data=df, groups="id")
    with pytest.raises(ValueError, match="not supported with algorithm='sem'"):
        model.fit("y ~ x", gate_X="~ z", data=df, groups="id", algorithm="sem")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empirical", "parametric"])
def test_grouped_bootstrap_standard_errors_agree_with_observed_information(grouped, kind):
    """Per block, S = tr(V^-1 C) / m of the bootstrap covariance C against the observed information V.

    With B = 200 the chi-square band of S (probability 1 - 1e-4 under agreement) is [0.85, 1.17] for the six
    expert parameters and [0.75, 1.30] for the two gate parameters, so a sqrt(2) error in a block's SEs (S = 2 or
    1/2) fails.  The gate's upper bound is 1.3 times that: at G = 150 groups the bootstrap variance of the gate
    slope exceeds its information variance by about 20 % (S_gate 1.02-1.42 over six seeds of each kind, a
    finite-sample effect that shrinks with G).  Per parameter the Monte Carlo sd of a bootstrap SE is 5 %; the
    band [0.75, 1.45] is 5 sd around that finite-sample difference.
    """
    _, _, res = grouped
    bs = res.bootstrap(B=200, kind=kind, seed=1)
    assert bs.valid.sum() >= 195
    S, lo, hi = bootstrap_variance_ratio(bs, res, "expert")
    assert lo < S < hi, (S, lo, hi)
    S, lo, hi = bootstrap_variance_ratio(bs, res, "gate")
    assert lo < S < 1.3 * hi, (S, lo, hi)
    ratio = bs.bse.to_numpy() / res.bse.to_numpy()
    assert np.all((ratio > 0.75) & (ratio < 1.45)), ratio


def test_grouped_sample_draws_one_expert_per_group(grouped):
    df, _, res = grouped
    y, z = res.sample(seed=4, return_labels=True)
    codes = res.design.group_codes
    first = np.unique(codes, return_index=True)[1]
    np.testing.assert_array_equal(z, z[first][codes])
    # the share of groups drawn from expert 2 is the mean of its gate probabilities (written in NumPy), within
    # 4 sd of a sum of G independent Bernoulli draws
    eta = np.column_stack([np.ones(G), df["z"].to_numpy()[first]]) @ res.params_tree.gate.coef.T
    p = np.exp(eta - logsumexp(eta, axis=1, keepdims=True))[:, 1]
    assert abs(np.mean(z[first]) - p.mean()) < 4 * np.sqrt(np.sum(p * (1 - p))) / G, (np.mean(z[first]), p.mean())


@pytest.mark.slow
def test_select_k_with_groups_counts_groups_in_bic():
    df, _ = _simulate()
    sel = ms.select_k(ms.GaussianMoE(2), "y ~ x", gate_X="~ z", data=df, groups="id", ks=[1, 2], n_init=2)
    assert sel.best_k == 2
    for k, fit in sel.fits.items():
        assert fit.design.n_groups == G
        assert abs(fit.bic - (-2 * fit.loglik + np.log(G) * fit.df)) < 1e-9


@pytest.mark.slow
def test_multinomial_grouped_fit_matches_numpy_likelihood():
    df, _ = _simulate()
    df = df.assign(c=np.where(df["y"] > 0.3 * df["x"], "a", "b"))
    res = ms.MultinomialMoE(2, screen=1).fit("c ~ x", gate_X="~ z", data=df, groups="id", n_init=2)
    codes, _ = pd.factorize(df["id"])
    Zd = np.column_stack([np.ones(len(df)), df["z"]])
    eta = Zd @ res.params_tree.gate.coef.T
    lg = eta - logsumexp(eta, axis=1, keepdims=True)
    A = res.params_tree.expert.coef                                                       # (k, C, p)
    lin = np.einsum("kcp,np->nkc", A, np.column_stack([np.ones(len(df)), df["x"]]))
    lp = lin - logsumexp(lin, axis=2, keepdims=True)
    ld = lp[np.arange(len(df)), :, (df["c"] == "b").to_numpy().astype(int)]         # (n, k)
    first = np.unique(codes, return_index=True)[1]
    L = lg[first] + np.stack([np.bincount(codes, weights=ld[:, i]) for i in range(2)], axis=1)
    assert abs(res.loglik - logsumexp(L, axis=1).sum()) < 1e-8 * abs(res.loglik)
    assert monotone(res) >= -1e-12 and res.nobs == G
