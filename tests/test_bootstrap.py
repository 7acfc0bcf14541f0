"""Bootstrap standard errors and the bootstrap likelihood-ratio test (moestat.inference)."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import moestat as ms
from moestat.inference import bootstrap as inference
from _inference_helpers import (REFERENCE_LOGLIK, bootstrap_variance_ratio, np_ascent, np_loglik, ols_loglik,
                                sim_moe2_fit)

B = 32  # one chunk of 16 twice: every bootstrap below reuses one compiled program per model


@functools.lru_cache(maxsize=None)
def boot(kind, seed=0, n_jobs=1):
    return sim_moe2_fit()[1].bootstrap(B=B, kind=kind, seed=seed, n_jobs=n_jobs)


@pytest.mark.parametrize("kind", ["empirical", "parametric"])
def test_bootstrap_se_agree_with_observed_information(kind):
    """The bootstrap covariance against the observed information, per block and over all parameters.

    For each block S = tr(V^-1 C) / m must lie in its chi-square band (probability 1 - 1e-4 under agreement;
    B = 128: all 8 parameters [0.84, 1.18], experts [0.81, 1.21], gate [0.69, 1.38]), so a sqrt(2) error in a
    block's standard errors (S = 2 or 1/2) fails.  Per parameter, the Monte Carlo sd of a bootstrap SE is
    1 / sqrt(2 (B - 1)) = 6.3 %: the band [0.7, 1.4] is about 5 sd, with room for the finite-sample difference
    between the two SEs.
    """
    _, res = sim_moe2_fit()
    b = res.bootstrap(B=128, kind=kind, seed=0)      # eight chunks of the compiled program of B = 32
    assert b.valid.all() and b.B == 128
    for block in (None, "expert", "gate"):
        S, lo, hi = bootstrap_variance_ratio(b, res, block)
        assert lo < S < hi, (block, S, lo, hi)
    ratio = b.bse.to_numpy() / res.bse.to_numpy()
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio
    ci = b.conf_int()
    est = res.summary_frame()["estimate"].to_numpy()
    assert np.all((ci["lower"].to_numpy() < est) & (est < ci["upper"].to_numpy()))
    f = b.summary_frame()
    assert list(f.columns) == ["block", "expert", "term", "estimate", "boot_mean", "std_err", "ci_low", "ci_high"]
    # bootstrap means sit within about 4 Monte Carlo sd of the estimate (the bias is much smaller than the SE)
    assert np.all(np.abs(f["boot_mean"].to_numpy() - est) < 4 * res.bse.to_numpy() / np.sqrt(b.B) + 0.02)


def test_bootstrap_is_reproducible_and_seed_dependent():
    _, res = sim_moe2_fit()
    a = boot("empirical")
    again = res.bootstrap(B=B, kind="empirical", seed=0)
    np.testing.assert_array_equal(a.estimates.to_numpy(), again.estimates.to_numpy())
    other = boot("empirical", seed=1)
    assert np.abs(a.estimates.to_numpy() - other.estimates.to_numpy()).max() > 1e-3


@pytest.mark.slow
def test_results_do_not_depend_on_the_number_of_workers():
    a = boot("empirical")
    b = boot("empirical", n_jobs=2)   # two 'spawn' workers, one chunk each
    np.testing.assert_array_equal(a.estimates.to_numpy(), b.estimates.to_numpy())
    np.testing.assert_array_equal(a.loglik, b.loglik)


def test_replicate_draws_depend_on_seed_and_index_only():
    _, res = sim_moe2_fit()
    w = np.random.default_rng(3).integers(0, 3, res.design.n).astype(float)
    wres = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2(), weights=w, init=res.params_tree)
    for kind in ("empirical", "parametric"):
        spec = inference._spec_for(wres, kind, 5, [], sampler=(wres._cfg, wres.params_tree))
        W, Y = inference._replicate_data(spec, np.array([0, 1, 2, 3]))
        W3, Y3 = inference._replicate_data(spec, np.array([3]))
        np.testing.assert_array_equal(W[3], W3[0])
        np.testing.assert_array_equal(Y[3], Y3[0])
        n = res.design.n
        if kind == "empirical":   # integer weights: the w.sum() individuals are resampled
            np.testing.assert_array_equal(W.sum(1), [w.sum()] * 4)
            assert np.all(W[:, :n][:, w == 0] == 0) and np.all(W[:, n:] == 0)
            np.testing.assert_array_equal(Y[0, :n], wres.design.y)
        else:                     # weights kept, responses redrawn
            np.testing.assert_array_equal(W[0, :n], wres.design.w)
            assert np.all(W[0, n:] == 0)
            assert np.corrcoef(Y[0, :n], Y[1, :n])[0, 1] > 0.3 and not np.allclose(Y[0], Y[1])


def test_extra_starts_are_matched_back_to_the_original_labels():
    """With k-means starts the replicate fits come out in arbitrary order; matching undoes it."""
    _, res = sim_moe2_fit()
    plain = res.bootstrap(B=8, seed=7)
    more = res.bootstrap(B=8, seed=7, n_init=1)
    assert more.n_relabelled >= 1
    close = np.abs(plain.estimates.to_numpy() - more.estimates.to_numpy()).max(1) < 1e-4
    assert close.sum() >= 7       # the same optimum from both starts, reported with the same labels


def test_bootstrap_argument_errors():
    _, res = sim_moe2_fit()
    with pytest.raises(ValueError, match="kind must be one of 'empirical', 'parametric'"):
        res.bootstrap(B=4, kind="jackknife")
    with pytest.raises(ValueError, match="B must be >= 2"):
        res.bootstrap(B=1)
    with pytest.raises(TypeError, match="n_jobs must be an integer"):
        res.bootstrap(B=4, n_jobs=1.5)


def _arrays(df):
    X = np.column_stack([np.ones(len(df)), df["x"]])
    return X, X, df["y"].to_numpy()


@pytest.mark.slow
def test_bootstrap_lrt_rejects_one_expert_on_sim_moe2():
    """The observed LR against two independent MLEs: OLS (one expert) and the R reference (two experts)."""
    df, res2 = sim_moe2_fit()
    res1 = ms.GaussianMoE(1).fit("y ~ x", data=df)
    t = ms.bootstrap_lrt(res1, res2, B=31, n_init=1, seed=0)
    X, _, y = _arrays(df)
    assert t.statistic == pytest.approx(2 * (REFERENCE_LOGLIK - ols_loglik(X, y)), abs=1e-6)
    assert t.pvalue == pytest.approx(1 / 32)          # no null replicate comes near LR = 790
    assert np.all(t.boot_statistics < 60) and np.all(t.boot_statistics >= 0)
    assert "k=1 vs k=2" in repr(t)


@pytest.mark.slow
def test_bootstrap_lrt_does_not_reject_the_true_k():
    df, res2 = sim_moe2_fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        res3 = ms.GaussianMoE(3).fit("y ~ x", data=df)
    t = ms.bootstrap_lrt(res2, res3, B=16, n_init=1, seed=0)
    # the LR is 2 (l3 - l2) with l2 the R reference MLE and l3 the NumPy log-likelihood at the three-expert fit,
    # which BFGS on that NumPy likelihood cannot improve: a local maximum of an independent likelihood (which of
    # the three-expert likelihood's local maxima the restarts reach is not pinned)
    X, Xg, y = _arrays(df)
    P = t.alternative.params_tree
    par = (P.gate.coef, P.expert.coef, np.sqrt(P.expert.sigma2))
    assert t.statistic == pytest.approx(2 * (np_loglik(X, Xg, y, *par) - REFERENCE_LOGLIK), abs=1e-6)
    assert np_ascent(lambda *q: np_loglik(X, Xg, y, *q), *par) < 1e-6
    assert t.statistic > 0
    assert t.pvalue > 0.2
    assert np.median(t.boot_statistics) > 1.0          # over-fitting a third expert gains a few units
    with pytest.raises(ValueError, match="alternative must be a fit with 3 experts"):
        ms.bootstrap_lrt(res2, res2, B=4)


def test_vectorised_batches_match_sequential_fits():
    """The GPU path (replicates vmapped, batch_size = chunk) gives the fits of the CPU path (lax.map one by one)."""
    import dataclasses
    _, res = sim_moe2_fit()
    P = jax_host(res.params_tree)
    job = inference.FitJob(model=res.model, cfg=res._cfg, given=P, base=P, fixed=jax_host(res.fixed))
    spec = inference._spec_for(res, "parametric", 2, [job], sampler=(res._cfg, P))
    seq = inference.run_chunk(dataclasses.replace(spec, batch_size=1), list(range(16)))[0]
    vec = inference.run_chunk(dataclasses.replace(spec, batch_size=16), list(range(16)))[0]
    np.testing.assert_allclose(vec["loglik"], seq["loglik"], rtol=1e-10)
    np.testing.assert_allclose(vec["params"].expert.coef, seq["params"].expert.coef, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(vec["n_iter"], seq["n_iter"])


def jax_host(tree):
    import jax
    return jax.tree_util.tree_map(np.asarray, tree)


def test_broken_worker_pool_gets_a_clear_error(monkeypatch):
    """A pool whose workers die (e.g. a script without the __main__ guard) says why, not BrokenProcessPool."""
    import concurrent.futures

    from concurrent.futures.process import BrokenProcessPool

    from moestat.inference import bootstrap as inference

    class DeadPool:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def map(self, *a, **k):
            raise BrokenProcessPool("terminated abruptly")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", DeadPool)
    with pytest.raises(RuntimeError, match="__main__"):
        inference.run_replicates(None, B=4, chunk_size=2, n_jobs=2)
