"""Conformance: sampling moments of every registered family against the transcribed moments.

Experts: the family's ``sample(key, params, X, z)`` (what ``ms.simulate``
calls) draws R responses at each of a few covariate points for every expert;
the sample mean and variance (class frequencies for multinomial experts) are
compared with the transcribed mean and variance.  Gates: ``ms.simulate`` with
``return_labels=True`` draws expert labels at repeated covariate points; their
frequencies are compared with the transcribed gate weights.

Tolerance: 5 standard errors, two-sided (p = 5.7e-7 per comparison for an
exact sampler, about 1e-4 for the whole file), seeded.  Standard errors:
sqrt(var / R) for a mean, sqrt((m4 - s^4) / R) for a sample variance (m4 the
sample's central fourth moment), sqrt(p (1 - p) / R) for a frequency.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

import moestat as ms

from .cases import EXPERT_CASES, GATE_CASES, expert_design, expert_inputs

R = 4000          # draws per (expert, covariate point)
M_POINTS = 4      # covariate points per case
N_SE = 5.0


def check_mean(sample, mean, var, what):
    """|sample mean - mean| <= 5 sqrt(var / R) along the last axis."""
    r = sample.shape[-1]
    se = np.sqrt(var / r)
    dev = np.abs(sample.mean(axis=-1) - mean)
    assert np.all(dev <= N_SE * se), "%s: mean off by %s standard errors" % (what, np.round(np.max(dev / se), 2))


def check_variance(sample, var, what):
    """|sample variance - var| <= 5 sqrt((m4 - s^4) / R) along the last axis."""
    r = sample.shape[-1]
    c = sample - sample.mean(axis=-1, keepdims=True)
    s2 = np.mean(c ** 2, axis=-1)
    se = np.sqrt(np.maximum(np.mean(c ** 4, axis=-1) - s2 ** 2, 1e-300) / r)
    dev = np.abs(s2 - var)
    assert np.all(dev <= N_SE * se), "%s: variance off by %s standard errors" % (what, np.round(np.max(dev / se), 2))


def check_frequencies(labels, probs, what):
    """Frequencies of labels 0..C-1 (.., R) against probs (C, ..): within 5 sqrt(p (1 - p) / R)."""
    r = labels.shape[-1]
    for c in range(probs.shape[0]):
        freq = np.mean(labels == c, axis=-1)
        se = np.sqrt(probs[c] * (1.0 - probs[c]) / r)
        dev = np.abs(freq - probs[c])
        assert np.all(dev <= N_SE * np.maximum(se, 1e-12)), "%s: frequency of %d off by %s SE" % (
            what, c, np.round(np.max(dev / np.maximum(se, 1e-12)), 2))


@pytest.mark.parametrize("name", ms.experts.available())
def test_expert_sampler_moments(name):
    """Draws of expert i at point x have the transcribed mean and variance (class probabilities).

    The family's first case only: the sampler draws around the family's ``mean``, which the formula
    tests check for every case, and each case compiles its own sampler (binomial: ~3 s each).
    """
    for ci, case in enumerate((EXPERT_CASES.get(name) or pytest.fail("no transcription for %r" % name))[:1]):
        rng = np.random.default_rng([31, ci])
        X = expert_inputs(rng, M_POINTS, case.d)
        aux = case.aux(rng, M_POINTS)
        params = case.params(rng)
        mean, var = case.moments(params, X, aux)                     # (k, M) or (k, C, M)
        k = case.k
        # every (expert, point) pair repeated R times: rows ordered (expert, point, draw)
        Xr = np.repeat(np.tile(X, (k, 1)), R, axis=0)
        auxr = None if aux is None else np.repeat(np.tile(aux, k), R)
        z = np.repeat(np.arange(k), M_POINTS * R)
        D = expert_design(case.expert, Xr, auxr)
        y = np.asarray(jax.jit(case.expert.sample)(jax.random.PRNGKey(100 + ci), params, D, z), dtype=np.float64)
        y = y.reshape(k, M_POINTS, R)
        what = "%s[%s]" % (name, case.id)
        if var is None:                                              # categorical: class frequencies
            check_frequencies(y, np.moveaxis(mean, 1, 0), what)
        else:
            check_mean(y, mean, var, what)
            check_variance(y, var, what)


def _gaussian_experts(k):
    return ms.experts.GaussianParams(coef=np.zeros((k, 2)), sigma2=np.ones(k))


@pytest.mark.parametrize("name", ms.gating.available())
def test_simulated_labels_follow_the_gate(name):
    """ms.simulate's expert labels at a covariate point have the transcribed gate weights as frequencies."""
    case = (GATE_CASES.get(name) or pytest.fail("no transcription for %r" % name))[0]
    rng = np.random.default_rng([32, len(name)])
    Z = 1.2 * rng.normal(size=(M_POINTS, case.d))
    params = case.params(rng, 1.0)
    probs = np.exp(case.reference(params, Z))                        # (k, M)
    model = ms.GaussianMoE(case.k, gating=case.gate)
    # linear experts in the first covariate only; the gate sees all covariates
    P = ms.MoEParams(gate=params, expert=ms.experts.GaussianParams(coef=np.zeros((case.k, case.d + 1)),
                                                                   sigma2=np.ones(case.k)))
    _, z = ms.simulate(model, P, np.repeat(Z, R, axis=0), seed=7, return_labels=True)
    check_frequencies(np.asarray(z).reshape(M_POINTS, R), probs, "%s[%s] labels" % (name, case.id))
