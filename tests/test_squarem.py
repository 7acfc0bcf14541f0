"""SQUAREM-accelerated EM (``fit(accelerate=True)``, :func:`moestat.fitting.em._fit_one_squarem`)."""
import numpy as np
import pytest

import moestat as ms


def test_accelerated_fit_reaches_the_reference_mle(sim_df, sim_reference):
    """The R reference MLE of the bundled data (independent of moestat) from the accelerated loop."""
    res = ms.GaussianMoE(2).fit("y ~ x", data=sim_df, accelerate=True, polish=False, tol=1e-12)
    assert res.converged
    assert res.loglik == pytest.approx(sim_reference["mle"]["loglik"], abs=1e-6)


def test_accelerated_em_is_monotone_and_takes_fewer_steps_where_em_crawls():
    """An over-fitted model (k = 3, data from k* = 2), the same start: the log-likelihood at the cycles'
    starts never falls, the accelerated run stops at a log-likelihood at least plain EM's in fewer EM steps."""
    rng = np.random.default_rng(4)
    n = 1500
    x = rng.uniform(0, 1, n)
    z = rng.random(n) < 1 / (1 + np.exp(8 - 25 * x))
    y = np.where(z, 15 - 20 * x, -5 + 20 * x) + rng.normal(0, np.where(z, 0.3, 0.4))
    model = ms.GaussianMoE(3)
    kw = dict(n_init=1, seed=3, tol=1e-10, max_iter=6000, polish=False, finalists=None)
    plain = model.fit(x[:, None], y, **kw)
    fast = model.fit(x[:, None], y, accelerate=True, **kw)
    trace = fast.loglik_trace
    assert trace.size > 5 and np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    assert fast.loglik >= plain.loglik - 1e-6
    assert fast.n_iter < plain.n_iter / 2, (fast.n_iter, plain.n_iter)


def test_accelerate_is_validated(sim_df):
    with pytest.raises(ValueError, match="accelerate=True \\(SQUAREM\\) needs algorithm='em'"):
        ms.GaussianMoE(2).fit("y ~ x", data=sim_df, accelerate=True, algorithm="cem")
    with pytest.raises(TypeError, match="accelerate must be True or False"):
        ms.GaussianMoE(2).fit("y ~ x", data=sim_df, accelerate="yes")


def test_spec_protocol_setting_turns_it_on_and_is_validated():
    import copy
    from moestat.montecarlo import load_spec
    from moestat.montecarlo.spec import Spec
    from moestat.montecarlo.worker import experiment_for
    raw = copy.deepcopy(load_spec("demystifying-k2").with_protocol("mle").raw)
    plain = Spec(raw)
    raw["protocols"]["mle"]["accelerate"] = True
    fast = Spec(raw)
    assert fast.hash != plain.hash
    assert experiment_for(fast.raw).cfg.accelerate and not experiment_for(plain.raw).cfg.accelerate
    raw["protocols"]["mle"]["accelerate"] = "yes"
    with pytest.raises(ValueError, match="accelerate must be true or false"):
        Spec(raw).protocol_settings()
