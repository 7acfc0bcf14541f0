"""Conformance: every registered gate and expert family against an independent NumPy/scipy transcription.

Parametrized over the registries (``ms.gating.available()``,
``ms.experts.available()``): a family registered without an entry in
:mod:`conformance.cases` fails here.  The references live in
:mod:`conformance.transcriptions`, written from the published formulas.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import integrate, special

import moestat as ms

from .cases import EXPERT_CASES, GATE_CASES, expert_design, expert_inputs, gate_design, gate_inputs

N_POINTS = 64
#: the gate scales: "init" uses the family's init_params (ties everywhere), 300 gives scores of order 1e3
SCALES = ("init", 1.0, 300.0)


def assert_log_close(got, ref, scale, what):
    """Same -inf pattern; finite entries agree to 1e-10 + 1e-14 * scale.

    Log weights eta_i - logsumexp(eta) computed in float64 carry a rounding error of a few ulps of
    the largest |eta| (cancellation), hence the term 1e-14 * scale, with ``scale`` the largest
    |finite reference value| (2e5 for the most extreme Gaussian-gate case: tolerance 2.4e-9).
    """
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, "%s: shape %s, reference %s" % (what, got.shape, ref.shape)
    inf_ref = np.isneginf(ref)
    np.testing.assert_array_equal(np.isneginf(got), inf_ref, err_msg="%s: -inf (inactive) pattern" % what)
    fin = ~inf_ref
    assert np.all(np.isfinite(got[fin])), "%s: non-finite values where the reference is finite" % what
    tol = 1e-10 + 1e-14 * scale
    err = np.max(np.abs(got[fin] - ref[fin]), initial=0.0)
    assert err <= tol, "%s: max |moestat - reference| = %.3g > %.3g" % (what, err, tol)


@pytest.mark.parametrize("name", ms.gating.available())
def test_registered_gate_has_a_transcription(name):
    assert GATE_CASES.get(name), ("gate family %r is registered but has no NumPy transcription in "
                                  "tests/conformance/cases.py: a new family must bring its reference formula" % name)


@pytest.mark.parametrize("name", ms.experts.available())
def test_registered_expert_has_a_transcription(name):
    assert EXPERT_CASES.get(name), ("expert family %r is registered but has no NumPy transcription in "
                                    "tests/conformance/cases.py: a new family must bring its reference" % name)


def test_every_transcription_names_a_registered_family():
    """A renamed family must not leave its reference behind unused."""
    assert set(GATE_CASES) <= set(ms.gating.available())
    assert set(EXPERT_CASES) <= set(ms.experts.available())
    for name, cases in GATE_CASES.items():
        assert all(c.gate.name == name for c in cases)
    for name, cases in EXPERT_CASES.items():
        assert all(c.expert.name == name for c in cases)


def _gate_params(case, rng, scale):
    if scale == "init":
        return case.gate.init_params(case.k, gate_design(case.gate, np.zeros((1, case.d))).shape[0])
    return case.params(rng, scale)


def _score_scale(ref):
    fin = np.asarray(ref)[np.isfinite(ref)]
    return float(np.max(np.abs(fin), initial=1.0))


@pytest.mark.parametrize("name", ms.gating.available())
def test_gate_log_weights_match_transcription(name):
    """log g_i(z) of every case at neutral, moderate and extreme parameters, and the weights sum to one."""
    for ci, case in enumerate(GATE_CASES.get(name) or pytest.fail("no transcription for %r" % name)):
        log_weights = jax.jit(case.gate.log_weights)      # compiled as EM runs it; once per case
        for si, scale in enumerate(SCALES):
            rng = np.random.default_rng([11, ci, si])
            Z = gate_inputs(rng, N_POINTS, case.d)
            params = _gate_params(case, rng, scale)
            got = np.asarray(log_weights(params, gate_design(case.gate, Z)))
            ref = case.reference(params, Z)
            what = "%s[%s] at scale %s" % (name, case.id, scale)
            assert_log_close(got, ref, _score_scale(ref), what)
            # normalisation: sum_i g_i(z) = 1 at every point (moestat's values, checked in NumPy)
            total = special.logsumexp(got, axis=0)
            assert np.max(np.abs(total)) <= 1e-12 + 1e-15 * _score_scale(ref), what + ": weights do not sum to 1"


@pytest.mark.parametrize("case", GATE_CASES["gaussian"], ids=lambda c: c.id)
def test_gaussian_gate_joint_terms_are_the_mixture_density(case):
    """The joint gate's E-step terms are log pi_i + log N(z | c_i, Gamma_i) (scipy.stats.multivariate_normal);
    summed over experts they are the mixture density of z, which integrates to one (d = 1 by quadrature)."""
    from .transcriptions import gaussian_gate_joint
    terms = jax.jit(case.gate.e_step_terms)
    for si, scale in enumerate((1.0, 300.0)):
        rng = np.random.default_rng([12, si])
        Z = gate_inputs(rng, N_POINTS, case.d)
        params = case.params(rng, scale)
        got = np.asarray(terms(params, gate_design(case.gate, Z)))
        ref = gaussian_gate_joint(params, Z)
        assert_log_close(got, ref, _score_scale(ref), "gaussian[%s] joint terms at scale %s" % (case.id, scale))
    if case.d == 1:
        params = case.params(np.random.default_rng(13), 1.0)

        def density(z):
            return float(np.exp(special.logsumexp(terms(params, np.array([[z]])))))

        mass, _ = integrate.quad(density, -np.inf, np.inf, epsabs=1e-12, limit=200)
        assert abs(mass - 1.0) < 1e-8


@pytest.mark.parametrize("name", ms.experts.available())
def test_expert_log_density_and_mean_match_transcription(name):
    """log f_i(y | x) (scipy.stats logpdf/logpmf) and the conditional mean of every case, to 1e-10."""
    for ci, case in enumerate(EXPERT_CASES.get(name) or pytest.fail("no transcription for %r" % name)):
        rng = np.random.default_rng([21, ci])
        X = expert_inputs(rng, N_POINTS, case.d)
        aux = case.aux(rng, N_POINTS)
        params = case.params(rng)
        y = case.responses(rng, params, X, aux)
        D = expert_design(case.expert, X, aux)
        what = "%s[%s]" % (name, case.id)
        ref_ll = case.log_density(params, X, y, aux)
        got_ll = np.asarray(jax.jit(case.expert.log_density)(params, D, y))
        assert got_ll.shape == (case.k, N_POINTS), what
        np.testing.assert_allclose(got_ll, ref_ll, rtol=1e-10, atol=1e-10, err_msg=what + " log density")
        got_mean = np.asarray(jax.jit(case.expert.mean)(params, D))
        ref_mean = case.mean(params, X, aux)
        assert got_mean.shape == ref_mean.shape, what
        np.testing.assert_allclose(got_mean, ref_mean, rtol=1e-10, atol=1e-12, err_msg=what + " mean")


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_transcription_is_scipy_binom_away_from_the_tails(link):
    """The stable binomial transcription equals scipy.stats.binom.logpmf where p is away from 0 and 1."""
    from .transcriptions import binomial_log_density, binomial_log_density_scipy, binomial_mean
    rng = np.random.default_rng(22)
    X = expert_inputs(rng, N_POINTS, 2)
    params = ms.experts.GLMParams(coef=0.3 * rng.normal(size=(2, 3)))
    t = rng.integers(1, 9, N_POINTS).astype(float)
    y = rng.integers(0, t + 1).astype(float)
    p = binomial_mean(params, X, link)
    assert 1e-6 < p.min() and p.max() < 1 - 1e-6
    np.testing.assert_allclose(binomial_log_density(params, X, y, t, link),
                               binomial_log_density_scipy(params, X, y, t, link), rtol=1e-10, atol=1e-10)
