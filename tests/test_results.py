"""The results object: criteria, prediction, simulation, summaries, warnings about suspect fits."""
import warnings

import numpy as np
import pandas as pd
import pytest

import moestat as ms


def test_criteria(sim_fit):
    n = 500
    assert sim_fit.df == 8
    assert sim_fit.nobs == n
    assert sim_fit.aic == pytest.approx(-2 * sim_fit.loglik + 16)
    assert sim_fit.bic == pytest.approx(-2 * sim_fit.loglik + 8 * np.log(n))
    tau = sim_fit.responsibilities
    ent = -(tau * np.log(tau)).sum()
    assert sim_fit.icl == pytest.approx(sim_fit.bic + 2 * ent)
    assert sim_fit.icl > sim_fit.bic
    # restarts: every start's final log-likelihood is reported
    assert len(sim_fit.restarts) == 10 and sim_fit.restarts.loglik.max() <= sim_fit.loglik + 1e-9


def test_predict_kinds_are_consistent(sim_df, sim_fit):
    new = pd.DataFrame({"x": np.linspace(-1, 1, 7)})
    gate = sim_fit.predict(new, kind="gate").to_numpy()
    experts = sim_fit.predict(new, kind="experts")
    mean = sim_fit.predict(new)
    assert gate.shape == experts.shape == (7, 2)
    np.testing.assert_allclose(gate.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(mean, (gate * experts).sum(axis=1), rtol=1e-12)
    p = sim_fit.params_tree
    xd = np.column_stack([np.ones(7), new.x])
    np.testing.assert_allclose(experts, xd @ p.expert.coef.T, rtol=1e-12)
    eta = xd @ p.gate.coef.T
    np.testing.assert_allclose(gate[:, 1], 1 / (1 + np.exp(eta[:, 0] - eta[:, 1])), rtol=1e-12)
    # posterior for the training data equals the stored responsibilities; labels are its argmax
    post = sim_fit.predict(kind="posterior")
    np.testing.assert_allclose(post, sim_fit.responsibilities, rtol=1e-12)
    np.testing.assert_array_equal(sim_fit.predict(kind="labels"), post.argmax(1))
    lp = sim_fit.predict(kind="logpdf")
    assert lp.sum() == pytest.approx(sim_fit.loglik, rel=1e-12)
    # new data with the response: posterior via the formula's response column
    post_new = sim_fit.predict(sim_df.iloc[:5], kind="posterior")
    np.testing.assert_allclose(post_new, sim_fit.responsibilities[:5], rtol=1e-10)


def test_sample_reproduces_the_fitted_model(sim_fit):
    new = pd.DataFrame({"x": np.full(20000, 0.3)})
    y1, z1 = sim_fit.sample(new, seed=1, return_labels=True)
    y2 = sim_fit.sample(new, seed=1)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(y1, sim_fit.sample(new, seed=2))
    gate = sim_fit.predict(new.iloc[:1], kind="gate").to_numpy()[0]
    assert np.mean(z1 == 1) == pytest.approx(gate[1], abs=0.015)
    assert y1.mean() == pytest.approx(sim_fit.predict(new.iloc[:1]).iloc[0], abs=0.03)
    sd = np.sqrt(sim_fit.params_tree.expert.sigma2)
    assert y1[z1 == 0].std() == pytest.approx(sd[0], rel=0.05)


def test_summary_text(sim_fit):
    text = str(sim_fit.summary())
    ll = ms.datasets.sim_moe2_reference()["mle"]["loglik"]            # R's optim on the same data
    for needle in ("GaussianMoE", "Log-likelihood:", "%.4f" % ll, "AIC:", "BIC:", "ICL:", "Converged:",
                   "No. observations:", "500", "Experts", "Gate (log-odds against expert 1)", "sigma", "Intercept"):
        assert needle in text, needle


def test_dataframe_term_names_and_intercept_switch(sim_df):
    df = sim_df.rename(columns={"x": "dose"})
    res = ms.GaussianMoE(2).fit(df[["dose"]], df["y"], n_init=2)
    assert res.params_frame().term.tolist()[:3] == ["Intercept", "dose", "sigma"]
    res0 = ms.GaussianMoE(2, intercept=False).fit(df[["dose"]], df["y"], n_init=2)
    assert res0.params_frame().query("block == 'expert'").term.tolist()[:2] == ["dose", "sigma"]
    assert res0.df == 6
    assert res0.loglik < res.loglik


def test_separate_gate_covariates(sim_df):
    rng = np.random.default_rng(0)
    df = sim_df.assign(noise=rng.normal(size=len(sim_df)))
    res = ms.GaussianMoE(2).fit("y ~ x", gate_X="~ noise", data=df, n_init=4)
    assert res.params_frame().query("block == 'gate'").term.tolist() == ["Intercept", "noise"]
    full = ms.GaussianMoE(2).fit("y ~ x", data=df, n_init=4)
    assert res.loglik < full.loglik  # the informative gate covariate is x, not noise
    with pytest.raises(ValueError, match="cannot encode"):
        res.predict(pd.DataFrame({"x": [0.1]}))
    assert res.predict(pd.DataFrame({"x": [0.1], "noise": [0.0]})).shape == (1,)


def test_user_init_and_fixed_gate(sim_df, sim_fit):
    labels = (sim_df.z.to_numpy() - 1)
    res_l = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, init=labels)
    assert len(res_l.restarts) == 1 and res_l.loglik == pytest.approx(sim_fit.loglik, abs=1e-7)
    R = np.column_stack([1 - sim_df.gate_p2, sim_df.gate_p2])
    res_r = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, init=R)
    assert res_r.loglik == pytest.approx(sim_fit.loglik, abs=1e-7)
    # hold the gate at zero (equal weights): a mixture of regressions with constant weights 1/2
    P = sim_fit.params_tree
    start = ms.MoEParams(gate=P.gate._replace(coef=np.zeros_like(P.gate.coef)), expert=P.expert)
    fixed = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, init=start, fixed={"gate": True})
    np.testing.assert_array_equal(fixed.params_tree.gate.coef, 0.0)
    assert fixed.df == 6 and fixed.loglik < sim_fit.loglik
    with pytest.raises(ValueError, match="fixed parameters need starting values"):
        ms.GaussianMoE(2).fit("y ~ x", data=sim_df, fixed={"gate": True})


def test_degenerate_start_is_detected_and_skipped(sim_df):
    # with these random starts one ends with an expert on ~8 points and sd 0.01 (log-lik above the proper fit)
    with pytest.warns(ms.DegenerateFitWarning, match="higher log-likelihood .* at a degenerate solution"):
        res = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random")
    r = res.restarts
    assert r.degenerate.any() and not r.loc[res.best_start, "degenerate"]
    assert r.loglik[r.degenerate].max() > res.loglik
    with pytest.warns(ms.DegenerateFitWarning, match="the reported fit is degenerate"):
        kept = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random",
                                     prefer_nondegenerate=False)
    assert kept.loglik > res.loglik and np.sqrt(kept.params_tree.expert.sigma2).min() < 0.05
    # a variance bound rules the spurious maximum out
    with warnings.catch_warnings():
        warnings.simplefilter("error", ms.DegenerateFitWarning)
        bounded = ms.GaussianMoE(3, min_variance=0.05).fit("y ~ x", data=sim_df, n_init=3, seed=3, init="random")
    assert np.sqrt(bounded.params_tree.expert.sigma2).min() >= np.sqrt(0.05) - 1e-12


def test_collapsed_expert_is_kept_with_a_warning(sim_df):
    R = np.zeros((len(sim_df), 3))
    R[np.arange(len(sim_df)), sim_df.z.to_numpy() - 1] = 1.0
    with pytest.warns(ms.MoEWarning, match=r"expert\(s\) \[3\] carry almost no data"):
        res = ms.GaussianMoE(3).fit("y ~ x", data=sim_df, init=R, max_iter=50)
    assert res.params_tree.expert.coef.shape[0] == 3  # never deleted


@pytest.mark.parametrize("polish", [True, False])
def test_expert_weights_are_the_weighted_responsibilities(sim_df, polish):
    # the fit hands its own sum_n w_n tau_in of the reported start to the results (no second E-step when no
    # polish step moved the parameters); either way the property is its definition at the reported parameters
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(sim_df))
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, weights=w, n_init=3, polish=polish, tol=1e-6)
    assert res._em_expert_weights is not None
    tau = res.responsibilities
    np.testing.assert_allclose(res.expert_weights, w @ tau, rtol=1e-12)
    assert res.expert_weights.sum() == pytest.approx(w.sum(), rel=1e-12)
    if res.n_polish == 0:   # the fit's own values, as a copy: writing into it leaves what the fit reports
        got = res.expert_weights
        np.testing.assert_array_equal(got, res._em_expert_weights)
        got[:] = -1.0
        np.testing.assert_allclose(res.expert_weights, w @ tau, rtol=1e-12)
    else:   # EM's weights only screen the warnings: the polished ones are computed
        assert res.expert_weights is not res._em_expert_weights
        np.testing.assert_allclose(res.expert_weights, res._em_expert_weights, rtol=1e-3)


def test_warns_when_the_best_fit_is_not_unique():
    # three equal clusters, mirrored: merging the lower or the upper two gives the same likelihood
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 150)
    y = np.concatenate([rng.normal(c, 0.5, 50) for c in (-4, 0, 4)])
    y -= y.mean()
    X, Y = np.concatenate([x, x])[:, None], np.concatenate([y, -y])
    with pytest.warns(ms.MoEWarning, match="distinct fits .* the maximum is not unique"):
        res = ms.GaussianMoE(2).fit(X, Y, gate_X=np.zeros((300, 0)), n_init=10, seed=0)
    assert res.params_frame().query("block == 'gate'").term.tolist() == ["Intercept"]
