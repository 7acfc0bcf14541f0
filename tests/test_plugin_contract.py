"""The declared plug-in contract: families carry their atoms, the harness scores any gate that has them.

The temperature softmax and the activation gate define their mixing-measure
atoms (``Gate.atoms``), so a Monte Carlo spec with either gate sets up,
simulates, fits and scores.  References are hand computations from the
parameters written in the spec.
"""
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import moestat as ms
from moestat.gating.base import Gate
from moestat.experts.base import Expert
from moestat.losses import theory_loss
from moestat.montecarlo import load_spec, run_experiment
from moestat.montecarlo.adapters import model_atoms
from moestat.montecarlo.setup import ModelSetup
from moestat.montecarlo.spec import Spec

#: the demystifying-k2 experts (means -5 + 20x and 15 - 20x, variances 0.16 and 0.09)
EXPERT = {"coef": [[-5.0, 20.0], [15.0, -20.0]], "sigma2": [0.16, 0.09]}

#: temperature softmax: softmax((beta_0 + beta_1 x) / tau) with beta = (-4, 12.5), tau = 0.5, i.e. theta = (-8, 25)
TEMPERATURE = ({"name": "temperature_softmax"}, {"coef": [[0.0, 0.0], [-4.0, 12.5]], "log_temp": math.log(0.5)})
#: activation gate: softmax(sigmoid(beta_1 x) / tau + beta_0), expert 1: beta_0 = -1, beta_1 = 3, tau = 0.5
ACTIVATION = ({"name": "activation_softmax"}, {"coef": [[0.0, 0.0], [-1.0, 3.0]], "log_temp": math.log(0.5)})


def _spec(name, gate, gate_params):
    raw = json.loads(json.dumps(load_spec("demystifying-k2").raw))
    raw["truth"].update(gate=gate, params={"gate": gate_params, "expert": EXPERT})
    raw["fit"]["gate"] = gate
    # both sizes in one padded bucket (256): one compiled program per gate
    raw.update(name=name, protocol="mle", grid={"full": [{"values": [150, 250]}], "quick": [{"values": [150, 250]}]},
               replicates={"full": 1, "quick": 1},
               losses=[{"name": "D1", "kind": "D1", "predicted": -0.5, "theory_row": 2},
                       {"name": "TV", "kind": "tv", "predicted": -0.5, "theory_row": 2}])
    raw["protocols"]["mle"].update(n_init=2, max_iter=200)
    raw.pop("variants", None)
    return raw


def _setup(gate):
    return ModelSetup(gate=ms.gating.get_gate(gate), expert=ms.experts.get_expert("linear"), k=2)


def _params(setup, gate_params, **gate_fields):
    P = setup.base_params(2, 2, {"var_y": 1.0})
    g = P.gate._replace(**{f: np.asarray(v, dtype=float) for f, v in dict(gate_params, **gate_fields).items()})
    e = P.expert._replace(**{f: np.asarray(v, dtype=float) for f, v in EXPERT.items()})
    return setup.canonical(ms.MoEParams(gate=g, expert=e))


def test_temperature_softmax_atoms_are_the_softmax_atoms_of_beta_over_tau():
    setup = _setup("temperature_softmax")
    atoms = model_atoms(setup, _params(setup, TEMPERATURE[1]))["moe"]
    assert atoms.gate == "softmax"
    # theta = beta / tau = (0, 0), (-8, 25): masses exp(theta_0 - max theta_0), slopes theta_1
    np.testing.assert_allclose(atoms.mass, [1.0, math.exp(-8.0)], rtol=1e-13)
    np.testing.assert_allclose(atoms.blocks["gate_slope"], [[0.0], [25.0]], atol=1e-12)
    np.testing.assert_allclose(atoms.blocks["slope"], [[20.0], [-20.0]])
    np.testing.assert_allclose(atoms.blocks["intercept"], [[-5.0], [15.0]])
    np.testing.assert_allclose(atoms.blocks["variance"], [[0.16], [0.09]])


def test_activation_gate_atoms_and_their_d1_loss_by_hand():
    setup = _setup("activation_softmax")
    true = model_atoms(setup, _params(setup, ACTIVATION[1]))
    atoms = true["moe"]
    assert atoms.gate == "softmax" and "gate_slope" not in atoms.blocks
    np.testing.assert_allclose(atoms.mass, [1.0, math.exp(-1.0)], rtol=1e-14)
    np.testing.assert_allclose(atoms.blocks["gate_activation"], [[0.0, 0.5], [3.0, 0.5]], rtol=1e-14)
    # expert 1's activation slope off by 0.1: singleton cells, the best common mass factor is 1, so
    # D1 = sum_j |m_j - m*_j| + sum_i m_i |Delta_i| = exp(-1) * 0.1
    fit = model_atoms(setup, _params(setup, ACTIVATION[1], coef=[[0.0, 0.0], [-1.0, 3.1]]))
    assert theory_loss("D1", fit, true).value == pytest.approx(0.1 * math.exp(-1.0), rel=1e-9)
    # and a temperature off by 0.05 enters every atom (tau is shared): (1 + exp(-1)) * 0.05
    fit_t = model_atoms(setup, _params(setup, ACTIVATION[1], log_temp=math.log(0.55)))
    assert theory_loss("D1", fit_t, true).value == pytest.approx(0.05 * (1.0 + math.exp(-1.0)), rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name,gate", [("tiny-temperature", TEMPERATURE), ("tiny-activation", ACTIVATION)])
def test_a_spec_with_the_gate_runs_through_the_harness(tmp_path, name, gate):
    res = run_experiment(Spec(_spec(name, *gate)), out_dir=str(tmp_path), workers=1, progress=False, n_boot=20,
                         figures=False)
    assert res.computed == 2
    per_rep = pd.read_csv(os.path.join(tmp_path, "results.csv"))
    assert sorted(per_rep["n"]) == [150, 250]
    assert per_rep["loss_D1"].gt(0).all() and np.isfinite(per_rep["loss_D1"]).all()
    assert per_rep["loss_TV"].between(0, 1).all()


def test_families_without_atoms_say_so():
    class NoAtoms(ms.gating.Softmax):
        def atoms(self, params, intercept):
            return Gate.atoms(self, params, intercept)

    setup = ModelSetup(gate=NoAtoms(), expert=ms.experts.get_expert("linear"), k=2)
    with pytest.raises(TypeError, match="'softmax' gate defines no mixing-measure atoms"):
        model_atoms(setup, setup.base_params(2, 2, {"var_y": 1.0}))

    class NoExpertAtoms(ms.experts.GaussianLinear):
        def atoms(self, params, intercept):
            return Expert.atoms(self, params, intercept)

    setup = ModelSetup(gate=ms.gating.get_gate("softmax"), expert=NoExpertAtoms(), k=2)
    with pytest.raises(TypeError, match="'linear' expert family defines no mixing-measure atoms"):
        model_atoms(setup, setup.base_params(2, 2, {"var_y": 1.0}))


def test_every_registered_family_has_atoms():
    """Poisson experts (log link): the atoms are the linear predictors' intercepts and slopes."""
    setup = ModelSetup(gate=ms.gating.get_gate("softmax"), expert=ms.experts.get_expert("poisson"), k=2)
    P = setup.base_params(2, 2, {})
    P = P._replace(expert=P.expert._replace(coef=np.array([[0.5, 1.0], [-0.5, 0.3]])))
    atoms = model_atoms(setup, setup.canonical(P))["moe"]
    np.testing.assert_allclose(atoms.blocks["intercept"], [[0.5], [-0.5]])
    np.testing.assert_allclose(atoms.blocks["slope"], [[1.0], [0.3]])
    for name in ms.experts.available():
        fam = ms.experts.get_expert(name) if name != "stacked" else ms.experts.Stacked((("linear", 1),))
        assert type(fam).atoms is not Expert.atoms or name == "stacked", name
    for name in ms.gating.available():
        gate = ms.gating.get_gate(name) if name != "shared_routed" else ms.gating.SharedRouted()
        assert type(gate).atoms is not Gate.atoms or name == "shared_routed", name


def test_the_declared_flags_match_the_overridden_hooks():
    """A gate that overrides a hook declares it, so the engine reads the flag instead of inspecting methods."""
    for name in ms.gating.available():
        gate = ms.gating.get_gate(name) if name != "shared_routed" else ms.gating.SharedRouted()
        cls = type(gate)
        assert gate.moves_on_observed == (cls.observed_step is not Gate.observed_step), name
        if name != "shared_routed":   # it forwards transform to the routed gate
            assert gate.transforms_covariates == (cls.transform is not Gate.transform), name
        if gate.speculative:
            assert cls.direction is not Gate.direction and cls.moment_rows is not Gate.moment_rows, name
            assert cls.scores_and_probs is not Gate.scores_and_probs, name
            assert cls.objective_from_moments is not Gate.objective_from_moments, name
    for name in ms.experts.available():
        if name == "stacked":
            continue
        fam = ms.experts.get_expert(name)
        assert (fam.moment_design == "Xy") == (type(fam).m_step_from_moments is not Expert.m_step_from_moments), name


def test_a_gate_boundary_message_reaches_the_standard_errors():
    """Top-K with K = 1 has 0/1 weights: the information says why its gate coefficients have no SEs."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, 200)
    y = np.where(x > 0, 2.0 + x, -2.0 - x) + 0.3 * rng.standard_normal(200)
    res = ms.GaussianMoE(2, gating=ms.gating.TopK(k=1)).fit(x, y, n_init=1, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res.bse
    messages = [str(w.message) for w in caught if issubclass(w.category, ms.InferenceWarning)]
    assert any(m.startswith("topk with K=1: the weights are 0 or 1") for m in messages), messages


class ConstantParams(NamedTuple):
    logit: jnp.ndarray  # (k,) log weights up to a constant; entry 0 is the reference


@dataclass(frozen=True)
class ConstantWeights(Gate):
    """The gate of docs/extending.md (not registered here, so the registry stays as shipped)."""

    name = "constant_weights"

    def init_params(self, k, pg):
        return ConstantParams(logit=jnp.zeros(k))

    def n_free_params(self, k, pg):
        return k - 1

    def canonical(self, params):
        return ConstantParams(logit=params.logit - params.logit[0])

    def log_weights(self, params, Xg):
        lw = params.logit - jax.nn.logsumexp(params.logit)
        return jnp.broadcast_to(lw[:, None], (lw.shape[0], Xg.shape[1]))

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        logit = jnp.log(jnp.maximum(tau @ w, 1e-300))
        return ConstantParams(logit=jnp.where(jnp.any(fixed.logit), params.logit, logit - logit[0]))

    def describe(self, params, names):
        lw = np.asarray(self.canonical(params).logit)
        return [(i, "log-odds", float(lw[i])) for i in range(1, lw.shape[0])]

    def free_mask(self, params):
        return ConstantParams(logit=jnp.ones(jnp.shape(params.logit), bool).at[0].set(False))

    def atoms(self, params, intercept):
        lw = np.asarray(params.logit, dtype=np.float64)
        return np.exp(lw - lw.max()) / np.exp(lw - lw.max()).sum(), {}, "none"


def test_a_gate_written_against_the_contract_takes_the_em_step_computed_by_hand():
    rng = np.random.default_rng(7)
    n = 300
    x = rng.uniform(-1, 1, n)
    y = np.where(rng.random(n) < 0.3, 2.0 - x, -1.0 + 2.0 * x) + 0.4 * rng.standard_normal(n)
    gate = ConstantWeights()
    coef0, s20 = np.array([[-1.0, 2.0], [2.0, -1.0]]), np.array([0.3, 0.3])
    P0 = ms.MoEParams(gate=ConstantParams(logit=np.array([0.0, 0.5])),
                      expert=ms.experts.GaussianParams(coef=coef0, sigma2=s20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.MoEWarning)
        res = ms.GaussianMoE(2, gating=gate).fit(x, y, init=P0, max_iter=1, polish=False)
    # NumPy E-step at P0, then the closed-form M-steps: pi_i = mean tau_i, weighted least squares, ML variance
    X = np.column_stack([np.ones(n), x])
    pi0 = np.exp([0.0, 0.5]) / np.exp([0.0, 0.5]).sum()
    dens = pi0[:, None] * norm.pdf(y[None], coef0 @ X.T, np.sqrt(s20)[:, None])
    tau = dens / dens.sum(0)
    lw = np.asarray(res.params_tree.gate.logit)
    np.testing.assert_allclose(np.exp(lw) / np.exp(lw).sum(), tau.mean(1), rtol=1e-10)
    for i in range(2):
        sw = np.sqrt(tau[i])
        beta = np.linalg.lstsq(sw[:, None] * X, sw * y, rcond=None)[0]
        np.testing.assert_allclose(np.asarray(res.params_tree.expert.coef)[i], beta, rtol=1e-8)
        s2 = np.sum(tau[i] * (y - X @ beta) ** 2) / tau[i].sum()
        assert float(res.params_tree.expert.sigma2[i]) == pytest.approx(s2, rel=1e-8)
    setup = ModelSetup(gate=gate, expert=ms.experts.get_expert("linear"), k=2)
    atoms = model_atoms(setup, setup.canonical(P0))["moe"]
    np.testing.assert_allclose(atoms.mass, pi0, rtol=1e-14)
    assert set(atoms.blocks) == {"slope", "intercept", "variance"}


def test_near_truth_start_of_a_gate_with_a_temperature():
    """The paper protocol: rows of the assigned true experts + one N(0, sd^2) draw per fitted expert on the
    free entries (the reference row stays 0); the temperature, shared by all experts, stays at the truth."""
    gate = ms.gating.TemperatureSoftmax(temperature=0.5)
    true = ms.gating.TemperatureParams(coef=np.array([[0.0, 0.0], [-4.0, 12.5]]), log_temp=np.asarray(math.log(0.5)))
    s = np.array([0, 1, 1])
    start = gate.near_truth(true, gate.init_params(3, 2), s, [s], np.random.default_rng(4), 0.1, 0.0)
    d = np.random.default_rng(4).normal(0.0, 0.1, size=(3, 1))
    expected = np.array([[0.0, 0.0], [-4.0 + d[1, 0], 12.5 + d[1, 0]], [-4.0 + d[2, 0], 12.5 + d[2, 0]]])
    np.testing.assert_allclose(np.asarray(start.coef), expected, rtol=1e-15)
    assert float(start.log_temp) == math.log(0.5)
