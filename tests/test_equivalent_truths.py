"""Voronoi losses of the harness against every representation of the truth.

The activation gate's reference parametrisation (expert 0's row fixed at 0)
writes a two-expert gate in two ways: with either expert as the reference,
(b, c) -> (-b, -c) for an activation odd about act(0).  A fit that represents
the true model exactly with the other expert as reference must get loss 0.
"""
import jax
import numpy as np
import pytest

from moestat.fitting import em
from moestat.montecarlo import worker
from moestat.montecarlo.spec import load_spec


def _activation_experiment():
    spec = {s.variant: s for s in load_spec("temperature-vs-activation").variants()}["activation"]
    return worker.experiment_for(spec.raw)


def _gate_probs(exp, setup, params, x):
    X, G = setup.designs(x[:, None])
    lw = setup.gate.log_weights(jax.tree_util.tree_map(np.asarray, params.gate), G.T)
    return np.exp(np.asarray(lw))


def _over_fit_of_swapped_truth(exp):
    """k = 3 parameters with the *second* true expert as reference and the first split in two halves."""
    t = exp.true_params
    b, c = float(t.gate.coef[1, 1]), float(t.gate.coef[1, 0])
    coef = np.array([[0.0, 0.0], [-c + np.log(0.5), -b], [-c + np.log(0.5), -b]])
    gate = t.gate._replace(coef=coef)
    ec = np.asarray(t.expert.coef)
    s2 = np.asarray(t.expert.sigma2)
    expert = t.expert._replace(coef=ec[[1, 0, 0]], sigma2=s2[[1, 0, 0]])
    return em.MoEParams(gate=gate, expert=expert)


def test_swapped_over_fit_is_the_true_model():
    """Independent of the losses: the relabelled k = 3 parameters give the true gate and experts."""
    exp = _activation_experiment()
    fit = _over_fit_of_swapped_truth(exp)
    x = np.linspace(-1.0, 1.0, 41)
    g_true = _gate_probs(exp, exp.truth, exp.true_params, x)          # (2, M)
    g_fit = _gate_probs(exp, exp.fit, fit, x)                         # (3, M)
    np.testing.assert_allclose(g_fit[0], g_true[1], atol=1e-12)
    np.testing.assert_allclose(g_fit[1] + g_fit[2], g_true[0], atol=1e-12)


def test_voronoi_loss_takes_the_other_representation():
    exp = _activation_experiment()
    assert [p.tolist() for p, _ in exp.extras["true_atoms_alt"]] == [[1, 0]]
    fit = _over_fit_of_swapped_truth(exp)
    losses, _, errors = worker.compute_losses(exp, exp.fit.canonical(fit))
    assert losses["D1 (activation)"] == pytest.approx(0.0, abs=1e-10)
    # error keys keep the truth's own labels: true expert 0 (A) is the fitted cell of two atoms
    assert errors["moe.size[0]"] == 2 and errors["moe.size[1]"] == 1
    # against the truth's own representation alone the same fit is far away
    from moestat.losses import theory_loss
    from moestat.montecarlo.adapters import model_atoms
    only = theory_loss("D1", model_atoms(exp.fit, exp.fit.canonical(fit)), exp.extras["true_atoms"])
    assert only.value > 1.0


def test_softmax_gates_have_no_extra_representations():
    spec = {s.variant: s for s in load_spec("temperature-vs-activation").variants()}["temperature"]
    exp = worker.experiment_for(spec.raw)
    assert exp.extras["true_atoms_alt"] == []
