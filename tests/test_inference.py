"""Observed-information standard errors, summaries, weights, relabelling (moestat.inference)."""
from __future__ import annotations


import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import moestat as ms
from moestat.exceptions import InferenceWarning
from moestat.inference.bootstrap import match_experts, permute_params
from _inference_helpers import np_loglik, positive_slope_first, sim_moe2_fit


def test_standard_errors_match_reference():
    """Every SE (gate, coefficients, sigma) within 2 % of the bundled observed-information reference."""
    _, res = sim_moe2_fit()
    ref = ms.datasets.sim_moe2_reference()["mle"]
    frame = res.summary_frame()
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert len(frame) == len(ref["params"]) == 8
    for row, r in zip(frame.itertuples(), ref["params"]):
        assert row.block == {"expert": "expert", "gating": "gate"}[r["block"]]
        assert row.expert == r["component"]
        assert row.term == {"(Intercept)": "Intercept"}.get(r["term"], r["term"])
        assert row.estimate == pytest.approx(r["estimate"], abs=2e-5)
        assert row.std_err == pytest.approx(r["se"], rel=0.02)
        assert abs(row.std_err / r["se"] - 1) < 1e-4  # measured: 4e-7 (exact Hessian vs R's optim)


def _reference(block, component, term):
    """One row of the bundled R reference (moestat/datasets/sim_moe2_reference.json): estimate and SE."""
    rows = ms.datasets.sim_moe2_reference()["mle"]["params"]
    return next((r["estimate"], r["se"]) for r in rows
                if (r["block"], r["component"], r["term"]) == (block, component, term))


def test_statsmodels_style_accessors():
    _, res = sim_moe2_fit()
    bse, cov, ci = res.bse, res.cov_params(), res.conf_int(0.1)
    assert list(bse.index.names) == ["block", "expert", "term"]
    assert bse[("expert", 1, "sigma")] == pytest.approx(_reference("expert", 1, "sigma")[1], rel=1e-4)
    np.testing.assert_allclose(np.diag(cov.to_numpy()), bse.to_numpy() ** 2, rtol=1e-12)
    est = res.summary_frame()["estimate"].to_numpy()
    q = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci["lower"].to_numpy(), est - q * bse.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ci["upper"].to_numpy(), est + q * bse.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(res.zvalues.to_numpy(), est / bse.to_numpy(), rtol=1e-12)
    est, se = _reference("gating", 2, "(Intercept)")
    assert res.pvalues[("gate", 2, "Intercept")] == pytest.approx(2 * stats.norm.sf(est / se), rel=1e-4)
    assert res.tvalues is not None and np.allclose(res.tvalues, res.zvalues)
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        res.conf_int(1.5)


@pytest.mark.slow
def test_observed_information_against_finite_differences():
    """SEs of a 3-expert fit with a separate gate covariate equal a numerical Hessian in the reported parameters."""
    rng = np.random.default_rng(4)
    df = ms.datasets.simulate_moe3(500, seed=11)   # n = 500 and n_init = 10 reuse the sim_moe2 programs
    df["z"] = df["x"] + 0.3 * rng.standard_normal(len(df))
    res = ms.GaussianMoE(3).fit("y ~ x", gate_X="~ z", data=df)
    f = res.summary_frame()
    X = np.column_stack([np.ones(len(df)), df["x"]])
    Xg = np.column_stack([np.ones(len(df)), df["z"]])
    y = df["y"].to_numpy()

    def ll(v):  # v in summary_frame order: per expert (b0, b1, sigma), then gate rows 2..3
        e = v[:9].reshape(3, 3)
        g = np.vstack([np.zeros(2), v[9:].reshape(2, 2)])
        return np_loglik(X, Xg, y, g, e[:, :2], e[:, 2])

    v0 = f["estimate"].to_numpy()
    assert ll(v0) == pytest.approx(res.loglik, abs=1e-8)
    m, h = v0.size, 1e-4
    H = np.empty((m, m))
    for i in range(m):
        for j in range(m):
            ei, ej = np.eye(m)[i] * h, np.eye(m)[j] * h
            H[i, j] = (ll(v0 + ei + ej) - ll(v0 + ei - ej) - ll(v0 - ei + ej) + ll(v0 - ei - ej)) / (4 * h * h)
    se_fd = np.sqrt(np.diag(np.linalg.inv(-H)))
    np.testing.assert_allclose(f["std_err"].to_numpy(), se_fd, rtol=1e-4)


def test_summary_reads_like_statsmodels():
    """The header and expert 1's slope row, with the numbers computed from the bundled R reference."""
    _, res = sim_moe2_fit()
    text = str(res.summary())
    ll = ms.datasets.sim_moe2_reference()["mle"]["loglik"]
    aic, bic = -2 * ll + 2 * 8, -2 * ll + np.log(500) * 8
    for s in ("Dep. variable:", "GaussianMoE", "No. observations:", "500", "Experts:", "2 x linear",
              "Log-likelihood:", "%.4f" % ll, "AIC:", "%.4f" % aic, "BIC:", "%.4f" % bic, "ICL:", "Converged:",
              "coef", "std err", "P>|z|", "[0.025", "0.975]", "Gate (log-odds against expert 1)", "sigma"):
        assert s in text, s
    # expert 1's slope row: estimate, SE, z, p, CI
    est, se = _reference("expert", 1, "x")
    q = stats.norm.ppf(0.975)
    line = next(l for l in text.splitlines() if l.startswith("x ") and "%.4f" % est in l)
    assert line.split()[1:] == ["%.4f" % est, "%.4f" % se, "%.3f" % (est / se), "0.000",
                                "%.4f" % (est - q * se), "%.4f" % (est + q * se)]
    assert "[0.05" in str(res.summary(alpha=0.1))


def test_relabel_keeps_the_model_and_transforms_the_gate():
    _, res = sim_moe2_fit()
    swapped = res.relabel([1, 0])
    assert swapped.loglik == res.loglik
    a, b = res.summary_frame(), swapped.summary_frame()
    ea, eb = a[a.block == "expert"], b[b.block == "expert"]
    np.testing.assert_allclose(eb.iloc[:3][["estimate", "std_err"]], ea.iloc[3:][["estimate", "std_err"]], rtol=1e-8)
    ga, gb = a[a.block == "gate"], b[b.block == "gate"]
    np.testing.assert_allclose(gb["estimate"], -ga["estimate"], rtol=1e-10)   # log-odds of 1 vs 2 = -(2 vs 1)
    np.testing.assert_allclose(gb["std_err"], ga["std_err"], rtol=1e-6)
    np.testing.assert_allclose(swapped.predict(kind="mean"), res.predict(kind="mean"), rtol=1e-10)
    with pytest.raises(ValueError, match="order must be a permutation of 0..1"):
        res.relabel([0, 0])


def test_match_experts_undoes_a_permutation():
    _, res = sim_moe2_fit()
    cfg = res._cfg
    P = res.params_tree
    swapped = permute_params(cfg, P, [1, 0])
    stack = jax.tree_util.tree_map(lambda a, b: np.stack([np.asarray(a), np.asarray(b)]), P, swapped)
    perms = match_experts(cfg, P, stack, res._data, scale=1.0)
    np.testing.assert_array_equal(perms, [[0, 1], [1, 0]])


def test_report_vectors_follow_describe_order():
    _, res = sim_moe2_fit()
    gate, expert = res.model.gate, res.model.expert
    P = res.params_tree
    rows = [("expert", i, t) for i in (1, 2) for t in ("(Intercept)", "x", "sigma")]
    rows += [("gating", 2, "(Intercept)"), ("gating", 2, "x")]
    ref = [_reference(*r)[0] for r in rows]                                  # the R reference, in describe order
    np.testing.assert_allclose(np.asarray(expert.report(P.expert)), ref[:6], atol=1e-6)
    np.testing.assert_allclose(np.asarray(gate.report(P.gate)), ref[6:], atol=1e-6)
    # the base-class default (free entries of the canonical parameters) agrees for the softmax gate
    base = ms.gating.base.Gate.report(gate, P.gate)
    np.testing.assert_allclose(np.asarray(base), np.asarray(gate.report(P.gate)), rtol=1e-14)


@pytest.mark.parametrize("mode", ["given start", "default starts"])
def test_integer_weights_equal_duplicated_rows(mode):
    df, ref = sim_moe2_fit()
    w = np.random.default_rng(3).integers(0, 3, len(df))
    assert 256 < w.sum() <= 512   # the duplicated data stay in sim_moe2's size bucket (no recompiling)
    dup = df.loc[np.repeat(np.arange(len(df)), w)]
    kw = {"init": ref.params_tree} if mode == "given start" else {}
    a = ms.GaussianMoE(2).fit("y ~ x", data=df, weights=w, **kw)
    b = ms.GaussianMoE(2).fit("y ~ x", data=dup, **kw)
    a, b = positive_slope_first(a), positive_slope_first(b)
    assert a.nobs == b.nobs == w.sum()
    assert a.loglik == pytest.approx(b.loglik, rel=1e-9)
    for u, v in zip(jax.tree_util.tree_leaves(a.params_tree), jax.tree_util.tree_leaves(b.params_tree)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.bse, b.bse, rtol=1e-5)
    assert a.bic == pytest.approx(b.bic, rel=1e-9)
    if mode == "given start":  # the same EM path, to rounding
        assert abs(a.loglik - b.loglik) < 1e-9 * abs(a.loglik)
        assert np.all(np.diff(a.loglik_trace) >= -1e-12 * abs(a.loglik))


def test_zero_weight_equals_deleting_the_row():
    df, ref = sim_moe2_fit()
    w = np.ones(len(df))
    drop = np.arange(0, len(df), 7)
    w[drop] = 0.0
    a = ms.GaussianMoE(2).fit("y ~ x", data=df, weights=w, init=ref.params_tree)
    b = ms.GaussianMoE(2).fit("y ~ x", data=df.drop(index=drop), init=ref.params_tree)
    assert a.nobs == b.nobs == len(df) - drop.size
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    np.testing.assert_allclose(a.params_tree.expert.coef, b.params_tree.expert.coef, rtol=1e-9)
    np.testing.assert_allclose(a.bse, b.bse, rtol=1e-8)
    np.testing.assert_allclose(a.responsibilities[w > 0], b.responsibilities, atol=1e-10)


def test_singular_information_warns_and_gives_nan():
    """A constant expert covariate (collinear with the intercept): those two coefficients are not
    identified and get NaN; the gate and the scales keep their SEs."""
    df, _ = sim_moe2_fit()
    X = pd.DataFrame({"c": np.ones(len(df))})
    res = ms.GaussianMoE(2).fit(X, df["y"], gate_X=df[["x"]])
    with pytest.warns(InferenceWarning, match="information matrix is singular"):
        f = res.summary_frame()
    assert f[(f.block == "expert") & f.term.isin(["Intercept", "c"])]["std_err"].isna().all()
    rest = f[(f.block == "gate") | (f.term == "sigma")]
    assert rest["std_err"].notna().all() and (rest["std_err"] > 0).all()
    # the identified combination (each expert's mean) is the responsibility-weighted mean of y
    tau = res.responsibilities
    np.testing.assert_allclose(res.params_tree.expert.coef.sum(1), tau.T @ df["y"].to_numpy() / tau.sum(0), rtol=1e-6)


def test_boundary_and_non_stationary_fits_warn():
    df, _ = sim_moe2_fit()
    res = ms.GaussianMoE(2, min_variance=0.2).fit("y ~ x", data=df)   # expert 2's MLE variance is 0.183
    assert res.params_tree.expert.sigma2[1] == 0.2
    with pytest.warns(InferenceWarning, match=r"sigma2 of expert\(s\) \[2\] is on a bound"):
        se = res.bse
    assert np.isnan(se[("expert", 2, "sigma")]) and np.isfinite(se.drop(("expert", 2, "sigma"))).all()
    cem = ms.GaussianMoE(2).fit("y ~ x", data=df, algorithm="cem")
    with pytest.warns(InferenceWarning, match="not a stationary point"):
        se = cem.bse
    assert np.all(np.isfinite(se))


def test_a_family_whose_report_disagrees_with_describe_gets_no_standard_errors():
    import copy
    from dataclasses import dataclass, replace

    @dataclass(frozen=True)
    class BadReport(ms.gating.softmax.Softmax):
        def report(self, params):
            return params.coef[1:, :1].ravel()       # forgets the slope

    _, res = sim_moe2_fit()
    bad = copy.copy(res)
    bad.__dict__.pop("information", None)
    bad._cfg = replace(res._cfg, gate=BadReport())
    with pytest.warns(InferenceWarning, match="report\\(\\) vector of gate 'softmax' / expert 'linear' \\(7 values\\) "
                                              "does not match describe\\(\\) \\(8 rows\\)"):
        f = bad.summary_frame()
    assert f["std_err"].isna().all()
    np.testing.assert_allclose(f["estimate"], res.summary_frame()["estimate"])
    with pytest.raises(ValueError, match="a bootstrap is not available"):
        bad.bootstrap(B=4)
