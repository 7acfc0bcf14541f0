"""moestat.plot: every drawing holds the fitted numbers (checked against NumPy/scipy references)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from scipy.stats import norm  # noqa: E402

import moestat as ms  # noqa: E402
from moestat.montecarlo.plots import slope_figure  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _softmax_gate(res, Xg):
    """(n, k) softmax gate probabilities from the reported coefficients, in NumPy."""
    eta = Xg @ np.asarray(res.params_tree.gate.coef).T
    e = np.exp(eta - eta.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _posterior(res, x, y):
    """(n, k) responsibilities of a softmax-gated linear Gaussian MoE, from scipy densities."""
    X = np.column_stack([np.ones_like(x), x])
    g = _softmax_gate(res, X)
    coef, s2 = np.asarray(res.params_tree.expert.coef), np.asarray(res.params_tree.expert.sigma2)
    dens = norm.pdf(y[:, None], loc=X @ coef.T, scale=np.sqrt(s2)[None])
    joint = g * dens
    return joint / joint.sum(1, keepdims=True)


def test_experts_lines_are_the_fitted_means_and_gate(sim_fit, sim_df):
    ax = ms.plot.experts(sim_fit)
    x, y = sim_df["x"].to_numpy(), sim_df["y"].to_numpy()
    o = np.argsort(x, kind="stable")
    coef = np.asarray(sim_fit.params_tree.expert.coef)                       # (k, 2): intercept, slope
    assert len(ax.lines) == 2 and len(ax.collections) == 2              # two mean lines, two point clouds
    for i, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_xdata(), x[o])
        np.testing.assert_allclose(line.get_ydata(), coef[i, 0] + coef[i, 1] * x[o], rtol=1e-10)
    pts = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(pts) == len(x)
    np.testing.assert_allclose(np.sort(pts[:, 1]), np.sort(y))
    lim = ax.dataLim
    assert np.isclose(lim.x0, x.min()) and np.isclose(lim.x1, x.max())
    assert np.isclose(lim.y0, min(y.min(), ax.lines[0].get_ydata().min(), ax.lines[1].get_ydata().min()))
    twin = [a for a in ax.figure.axes if a is not ax]
    assert len(twin) == 1 and len(twin[0].lines) == 2
    g = _softmax_gate(sim_fit, np.column_stack([np.ones_like(x), x]))
    for i, line in enumerate(twin[0].lines):
        np.testing.assert_allclose(line.get_ydata(), g[o, i], atol=1e-12)


def test_responsibilities_match_scipy_posterior(sim_fit, sim_df):
    x, y = sim_df["x"].to_numpy(), sim_df["y"].to_numpy()
    ax = ms.plot.responsibilities(sim_fit)
    tau = _posterior(sim_fit, x, y)
    assert len(ax.collections) == 2
    for i, c in enumerate(ax.collections):
        off = np.asarray(c.get_offsets())
        np.testing.assert_allclose(off[:, 0], x)
        np.testing.assert_allclose(off[:, 1], tau[:, i], atol=1e-9)
    assert tuple(ax.get_ylim()) == (-0.02, 1.02)


def test_loglik_trace_draws_every_restart(sim_fit):
    ax = ms.plot.loglik_trace(sim_fit, relative=False)
    tr = np.asarray(sim_fit.loglik_trace)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), tr)
    assert np.all(np.diff(tr) > -1e-8 * abs(tr[-1]))                   # EM is monotone
    markers = [ln for ln in ax.lines[1:] if ln.get_marker() in ("o", "x")]
    ends = np.concatenate([ln.get_ydata() for ln in markers])
    r = sim_fit.restarts
    assert len(ends) == len(r) == 10
    np.testing.assert_allclose(np.sort(ends), np.sort(r["loglik"].to_numpy()))
    assert ends.max() <= sim_fit.loglik + 1e-6
    ax = ms.plot.loglik_trace(sim_fit)                                   # distance below the maximum, log scale
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata()[0], sim_fit.loglik - tr[0])


def test_coefficients_bars_are_wald_intervals(sim_fit):
    ax = ms.plot.coefficients(sim_fit, alpha=0.1)
    f = sim_fit.summary_frame(0.1)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "expert 1: Intercept" and len(labels) == len(f)
    pts = ax.lines[0]
    np.testing.assert_allclose(pts.get_xdata(), f["estimate"].to_numpy())
    # a 90 % Wald interval is estimate +- z_0.95 * std_err (independent of the stored ci columns)
    half = norm.ppf(0.95) * f["std_err"].to_numpy()
    segs = ax.collections[0].get_segments()
    np.testing.assert_allclose([s[0][0] for s in segs], f["estimate"] - half, rtol=1e-9)
    np.testing.assert_allclose([s[1][0] for s in segs], f["estimate"] + half, rtol=1e-9)
    gate_only = ms.plot.coefficients(sim_fit, block="gate")
    assert len(gate_only.get_yticks()) == (f["block"] == "gate").sum()


def test_gate_regions_follow_the_numpy_gate():
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, (600, 2))
    lab = rng.random(600) < 1 / (1 + np.exp(-(4 * z[:, 0] - 2 * z[:, 1] - 0.8)))   # a soft gate
    y = np.where(lab, 2.0, -2.0) + z[:, 0] + 0.3 * rng.standard_normal(600)
    res = ms.GaussianMoE(2).fit(z, y, n_init=2)
    ax = ms.plot.gate_regions(res, resolution=80)
    assert np.allclose(ax.get_xlim(), (z[:, 0].min(), z[:, 0].max()))
    assert np.allclose(ax.get_ylim(), (z[:, 1].min(), z[:, 1].max()))
    filled = next(c for c in ax.collections if getattr(c, "filled", False))
    paths = filled.get_paths()
    coef = np.asarray(res.params_tree.gate.coef)
    d = coef[1] - coef[0]                                                # log-odds of expert 2 against expert 1
    probe = rng.uniform(-0.9, 0.9, (80, 2))
    eta = d[0] + probe @ d[1:]
    far = np.abs(eta) / np.linalg.norm(d[1:]) > 0.05                     # over two grid cells from the tie line
    assert far.sum() > 40
    for p, e in zip(probe[far], eta[far]):
        t = int(e > 0)
        assert paths[t].contains_point(p) and not paths[1 - t].contains_point(p)
    pts = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort(z[:, 0]))


@pytest.mark.slow
def test_class_probabilities_are_the_multinomial_fit():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 300)
    y = np.where(rng.random(300) < 1 / (1 + np.exp(-3 * x)), "b", "a")
    res = ms.MultinomialMoE(1).fit(x, y, n_init=1)
    ax = res.plot()
    a = np.asarray(res.params_tree.expert.coef)[0]                            # (C, p); class "a" is the reference row
    eta = np.column_stack([np.ones(300), x]) @ a.T
    p = np.exp(eta - eta.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    o = np.argsort(x, kind="stable")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), p[o, 0], atol=1e-10)
    np.testing.assert_allclose(ax.lines[2].get_ydata(), p[o, 1], atol=1e-10)
    assert len(ax.lines[1].get_xdata()) == (y == "a").sum()
    with pytest.raises(ValueError, match="class_probabilities"):
        ms.plot.experts(res)


def _stats(slope=-0.5, ci=(-0.6, -0.4)):
    n = np.array([100.0, 400.0, 1600.0, 6400.0])
    mean = 2.0 * n ** slope
    s = pd.DataFrame({"n": n.astype(int), "count": 20, "mean": mean, "sd": 0.5 * mean, "median": 0.9 * mean})
    return {"summary": s, "slope": slope, "intercept": np.log(2.0), "ci_low": ci[0], "ci_high": ci[1],
            "median_slope": slope, "loss": "D1", "predicted": -0.25, "published": -0.5, "failures": 3}


def test_convergence_plot_lines():
    st = _stats()
    ax = ms.plot.convergence(st)
    n, mean = st["summary"]["n"].to_numpy(float), st["summary"]["mean"].to_numpy()
    assert ax.get_xscale() == ax.get_yscale() == "log"
    fit = next(ln for ln in ax.lines if ln.get_label().startswith("OLS slope"))
    xx, yy = fit.get_xdata(), fit.get_ydata()
    np.testing.assert_allclose(np.polyfit(np.log(xx), np.log(yy), 1), [-0.5, np.log(2.0)], atol=1e-10)
    assert fit.get_label() == "OLS slope -0.500 [-0.600, -0.400]"
    pred = next(ln for ln in ax.lines if ln.get_label().startswith("predicted"))
    assert np.polyfit(np.log(pred.get_xdata()), np.log(pred.get_ydata()), 1)[0] == pytest.approx(-0.25)
    # +-2 SE bars: SE = sd / sqrt(count)
    bars = next(c for c in ax.collections if c.get_segments())
    top = np.array([s[1][1] for s in bars.get_segments()])
    np.testing.assert_allclose(top, mean + 2 * 0.5 * mean / np.sqrt(20))
    assert ax.dataLim.x0 == pytest.approx(n.min()) and ax.dataLim.x1 == pytest.approx(n.max())
    assert "3 failed fits included" in [t.get_text() for t in ax.texts][0]
    assert ax.get_title() == "D1  (published slope -0.500)"


def test_harness_figure_uses_the_convergence_plot(tmp_path, monkeypatch):
    calls = []
    real = ms.plot.convergence

    def spy(stats, ax=None, **kw):
        calls.append(stats["loss"])
        return real(stats, ax=ax, **kw)

    monkeypatch.setattr(ms.plot, "convergence", spy)
    path = slope_figure([_stats(), dict(_stats(), loss="TV")], "title", "subtitle", str(tmp_path / "f.png"))
    assert calls == ["D1", "TV"]
    img = plt.imread(path)
    assert img.shape[0] > 100 and img[..., :3].std() > 0.05              # not a blank canvas


def test_results_plot_shortcut_and_errors(sim_fit):
    fig, ax = plt.subplots()
    assert sim_fit.plot(ax=ax) is ax and len(ax.lines) == 2
    assert sim_fit.plot("loglik_trace").get_xlabel() == "EM iteration"
    with pytest.raises(ValueError, match="kind must be one of"):
        sim_fit.plot("histogram")
    with pytest.raises(ValueError, match="covariate must name a column"):
        ms.plot.experts(sim_fit, covariate="z")
    with pytest.raises(ValueError, match="exactly two gate covariates"):
        ms.plot.gate_regions(sim_fit)
    with pytest.raises(ValueError, match="block must be"):
        ms.plot.coefficients(sim_fit, block="experts")


@pytest.mark.slow
def test_modified_softmax_regions_need_raw_covariates():
    rng = np.random.default_rng(5)
    z = rng.uniform(-1, 1, (300, 2))
    y = np.where(z[:, 0] > 0, 1.5, -1.5) + 0.3 * rng.standard_normal(300)
    res = ms.GaussianMoE(2, gating="modified_softmax").fit(z, y, n_init=1)
    with pytest.raises(ValueError, match="pass the raw gate covariates as Z"):
        ms.plot.gate_regions(res)
    ax = ms.plot.gate_regions(res, Z=z, resolution=40)
    assert np.allclose(ax.get_xlim(), (z[:, 0].min(), z[:, 0].max()))


def test_import_does_not_load_matplotlib():
    import subprocess
    import sys
    code = "import sys, moestat; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_loglik_trace_draws_each_restarts_em_path(sim_fit):
    ax = ms.plot.loglik_trace(sim_fit, relative=False)
    paths = [ln for ln in ax.lines if ln.get_marker() in ("None", "", None) and ln.get_color() == "0.6"]
    r = sim_fit.restarts
    assert len(paths) == len(r) == sim_fit.restart_traces.shape[0]
    for ln, (_, row) in zip(paths, r.iterrows()):
        y = np.asarray(ln.get_ydata())
        assert np.all(np.diff(y) >= -1e-9 * abs(y[-1]))                   # every start's EM path is monotone
        assert y[-1] <= row["loglik"] + 1e-6 * abs(row["loglik"])        # ... and ends at (or just below) its value
        assert y.size >= 1 and abs(y[-1] - row["loglik"]) < 1e-3 * abs(row["loglik"])


def test_routing_plot_path_and_utilization(sim_df):
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=2, record_gate=True)
    ax = ms.plot.routing(res)
    sat, chg = ax.lines
    assert sat.get_label() == "saturation" and chg.get_label() == "change rate"
    y = np.asarray(sat.get_ydata())
    assert y[-1] == 1.0 and np.all((y >= 0) & (y <= 1))
    assert len(y) == res.n_iter + 1 or len(y) == len(res.loglik_trace)
    # without a recorded path: bars of top-1 shares, counted here from the fitted gate probabilities
    plain = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, n_init=2)
    ax = ms.plot.routing(plain)
    g = np.asarray(plain.predict(kind="gate"))
    share = np.bincount(g.argmax(1), minlength=2) / len(g)
    np.testing.assert_allclose([p.get_height() for p in ax.patches], share)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), g.mean(0), rtol=1e-12)
    jain = share.sum() ** 2 / (2 * (share ** 2).sum())
    assert ax.get_title().endswith("%.3f" % jain)
    assert plain.plot("routing").get_title() == ax.get_title()
