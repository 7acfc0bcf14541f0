"""A known model: estimator (families and layout) plus true parameters and a covariate law.

Used to write down the true models of published experiments
(:mod:`moestat.truths.deepseek`), to simulate from them
(:func:`moestat.sampling.simulate_data`), to evaluate the true log-likelihood on a
sample, and to export them in the Monte Carlo spec format
(``truth: {gate, expert, k, params, intercept, gate_intercept}``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ..fitting import em
from ..data.design import make_data


def params_to_json(params):
    """Nested dicts/lists of floats with the field names of the parameter NamedTuples."""
    if hasattr(params, "_fields"):
        return {f: params_to_json(getattr(params, f)) for f in params._fields}
    if isinstance(params, tuple):
        return [params_to_json(p) for p in params]
    return np.asarray(params, dtype=np.float64).tolist()


def family_to_json(fam) -> Any:
    """A family as its registry name, or ``{"name": ..., **non-default settings}`` (nested for composites)."""
    out = {"name": fam.name}
    for f in dataclasses.fields(fam):
        v = getattr(fam, f.name)
        if f.default is not dataclasses.MISSING and f.default == v:
            continue
        if f.name == "blocks":
            v = [[family_to_json(e), c] for e, c in v]
        elif dataclasses.is_dataclass(v):
            v = family_to_json(v)
        out[f.name] = v
    return out["name"] if len(out) == 1 else out


@dataclass
class TrueModel:
    """A data-generating mixture of experts.

    Attributes
    ----------
    name : str
    model : MoEModel
        Families and layout of the truth (its ``n_experts`` is the true k).
    params : MoEParams
        True parameters (variances, not standard deviations).
    x_law : dict
        Covariate law for :func:`moestat.sampling.draw_x` (ignored by joint gates,
        which draw x themselves).
    """

    name: str
    model: Any
    params: em.MoEParams
    x_law: dict = field(default_factory=lambda: {"law": "uniform", "low": -3.0, "high": 3.0, "d": 1})
    description: str = ""

    @property
    def k(self) -> int:
        return self.model.n_experts

    def simulate(self, n: int, seed: Any = 0):
        """(x (n, d), y (n,), z (n,)) from the truth (NumPy streams seeded by ``seed``)."""
        from ..sampling import simulate_data
        gi = self.model.gate_intercept and self.model.gate.uses_intercept
        return simulate_data(self.model.gate, self.model.expert, self.params, n=int(n), x_law=self.x_law, seed=seed,
                             intercept=self.model.intercept, gate_intercept=gi)

    def loglik(self, x, y, weights=None) -> float:
        """Log-likelihood of the true parameters on (x, y) (joint of (x, y) for a joint gate)."""
        design = self.model.design(x, y, None, weights)
        data = make_data(design.X, design.Xg, design.y, design.w)
        params = jax.tree_util.tree_map(lambda a: jax.numpy.asarray(np.asarray(a, dtype=np.float64)), self.params)
        return float(em.evaluate(params, data, self.model.config())[0])

    def canonical(self) -> em.MoEParams:
        """The true parameters in the identified coordinates the fits report."""
        g = self.model.gate.canonical(self.params.gate)
        e = self.model.expert.canonical(self.params.expert)
        return jax.tree_util.tree_map(np.asarray, em.MoEParams(gate=g, expert=e))

    def spec_section(self) -> dict:
        """The truth in the Monte Carlo spec format (JSON-serialisable)."""
        m = self.model
        return {"gate": family_to_json(m.gate), "expert": family_to_json(m.expert), "k": m.n_experts,
                "params": params_to_json(self.params), "intercept": m.intercept,
                "gate_intercept": bool(m.gate_intercept and m.gate.uses_intercept)}
