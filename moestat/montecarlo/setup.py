"""From a spec to the objects a worker needs: families, true parameters, EM configuration.

Model sections of a spec name a gate and an expert family (a registry name,
or ``{"name": ..., **settings}`` for families with settings, nested for
composite experts such as ``{"name": "stacked", "blocks": [["relu", 2], ["linear", 3]]}``),
the number of experts ``k`` and the intercept flags.  Parameters are JSON
objects with the field names of the family's parameter NamedTuple
(``{"coef": [[...]], "sigma2": [...]}``; composite experts: ``{"blocks": [...]}``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from ..fitting import em
from ..experts import base as experts_base
from ..gating import base as gating_base
from ..truths.truth import params_to_json  # noqa: F401  (the inverse of fill_params; re-exported)
from ..sampling import design_matrices, simulate_data
from . import targets

PILOT_N = 4000


def _family_class(name: str, kind: str):
    """The registered family class of a name (families register themselves), or None."""
    registry = gating_base._REGISTRY if kind == "gate" else experts_base._REGISTRY
    return registry[name] if name in registry else None


def _family(obj, kind: str):
    """A gate/expert family object from a name or {"name": ..., **settings} (nested allowed)."""
    getter = gating_base.get_gate if kind == "gate" else experts_base.get_expert
    if isinstance(obj, str) and _family_class(obj, kind) is None:
        return getter(obj)  # raises the registry's clear error
    if isinstance(obj, str):
        obj = {"name": obj}
    if not isinstance(obj, dict) or "name" not in obj:
        raise ValueError("a %s must be a name or an object with a 'name', got %r" % (kind, obj))
    cls = _family_class(obj["name"], kind)
    if cls is None:
        getter(obj["name"])
    kwargs = {k: _convert(v) for k, v in obj.items() if k != "name"}
    return cls(**kwargs)


def _convert(v):
    """Settings values: nested family specs become family objects, lists become tuples."""
    if isinstance(v, dict) and "name" in v:
        for kind in ("expert", "gate"):
            if _family_class(v["name"], kind) is not None:
                return _family(v, kind)
    if isinstance(v, list):
        return tuple(_convert(x) for x in v)
    return v


def fill_params(base, raw, where: str = "params"):
    """A parameter PyTree shaped like ``base`` with values from the JSON ``raw``."""
    if hasattr(base, "_fields"):
        if not isinstance(raw, dict):
            raise ValueError("%s must be an object with fields %s, got %r" % (where, base._fields, raw))
        extra = set(raw) - set(base._fields)
        if extra:
            raise ValueError("%s has unknown field(s) %s; expected %s" % (where, sorted(extra), base._fields))
        missing = set(base._fields) - set(raw)
        if missing:
            raise ValueError("%s lacks field(s) %s" % (where, sorted(missing)))
        return type(base)(**{f: fill_params(getattr(base, f), raw[f], "%s.%s" % (where, f)) for f in base._fields})
    if isinstance(base, tuple):
        if not isinstance(raw, list) or len(raw) != len(base):
            raise ValueError("%s must be a list of %d entries" % (where, len(base)))
        return tuple(fill_params(b, r, "%s[%d]" % (where, i)) for i, (b, r) in enumerate(zip(base, raw)))
    a = np.asarray(raw, dtype=np.float64)
    if a.shape != np.shape(base):
        raise ValueError("%s must have shape %s, got %s" % (where, np.shape(base), a.shape))
    return a


@dataclass(frozen=True)
class ModelSetup:
    """Families and layout of one side (true or fitted) of an experiment."""

    gate: Any
    expert: Any
    k: int
    intercept: bool = True
    gate_intercept: bool = True

    @classmethod
    def from_spec(cls, sec: dict) -> "ModelSetup":
        return cls(gate=_family(sec.get("gate", "softmax"), "gate"), expert=_family(sec.get("expert", "linear"), "expert"),
                   k=int(sec["k"]), intercept=bool(sec.get("intercept", True)),
                   gate_intercept=bool(sec.get("gate_intercept", True)))

    def designs(self, x):
        return design_matrices(x, self.gate, self.expert, self.intercept, self.gate_intercept)

    @property
    def uses_gate_intercept(self) -> bool:
        """Whether the gate design has an intercept column (not for gates on raw covariates)."""
        return self.gate_intercept and self.gate.uses_intercept

    def base_params(self, p: int, pg: int, info: dict) -> em.MoEParams:
        return em.MoEParams(gate=self.gate.init_params(self.k, pg), expert=self.expert.init_params(self.k, p, info))

    def canonical(self, params) -> em.MoEParams:
        return jax.tree_util.tree_map(np.asarray, em.MoEParams(gate=self.gate.canonical(params.gate),
                                                               expert=self.expert.canonical(params.expert)))


@dataclass
class Experiment:
    """Everything derived once per spec and process: families, truth, EM config and control."""

    spec: Any
    truth: ModelSetup
    fit: ModelSetup
    true_params: em.MoEParams
    p: int
    pg: int
    info: dict
    cfg: em.EMConfig
    ctl: em.EMControl
    settings: dict
    reference: Any = None       # fitted-model parameters of a misspecified limit (D_4), if any
    extras: dict = field(default_factory=dict)

    @classmethod
    def build(cls, spec, reference=None) -> "Experiment":
        fit = ModelSetup.from_spec(targets.spec_at(spec.raw, int(spec.grid(False).min()))["fit"])  # k rule: smallest n
        x0 = np.zeros((2, int(spec.raw.get("x", {}).get("d", 1))))
        if targets.is_target(spec.raw["truth"]):
            truth, true_params = targets.target_truth(spec.raw["truth"], fit, ModelSetup)
        else:
            truth = ModelSetup.from_spec(spec.raw["truth"])
            X0, G0 = truth.designs(x0)
            tbase = truth.base_params(X0.shape[1], G0.shape[1], {"var_y": 1.0})  # values come from the spec
            true_params = fill_params(tbase, spec.raw["truth"]["params"], "truth.params")
        # a pilot sample (fixed seed) sets data-dependent settings such as the variance floor
        x, y, _ = simulate_data(truth.gate, truth.expert, true_params, n=PILOT_N, x_law=spec.raw.get("x"),
                                seed=[spec.seed, 0, 2**31 - 1], intercept=truth.intercept,
                                gate_intercept=truth.gate_intercept)
        X, G = fit.designs(x)
        info = fit.expert.prepare(np.asarray(y), np.ones(y.shape[0]))
        settings = spec.protocol_settings()
        cfg = em.EMConfig(gate=fit.gate, expert=fit.expert, k=fit.k, max_iter=int(settings["max_iter"]),
                          accelerate=bool(settings.get("accelerate", False)))
        # the intercept columns are the design's own (fit.intercept / gate_intercept), the same in every
        # replicate; the pilot's designs show them (and whether the gate's design is the experts')
        cfg = em.with_intercepts(cfg, X, G, np.ones(X.shape[0]))
        cfg = dataclasses.replace(cfg, expert_intercept=cfg.expert_intercept and fit.intercept,
                                  gate_intercept=cfg.gate_intercept and fit.uses_gate_intercept)
        floor = spec.raw["fit"].get("min_variance")
        floor = float(floor) if floor is not None else 1e-8 * info.get("var_y", 1.0)
        ctl = em.make_control(tol=float(settings["tol"]), var_floor=floor, ridge=float(spec.raw["fit"].get("ridge", 0.0)))
        exp = cls(spec=spec, truth=truth, fit=fit, true_params=true_params, p=X.shape[1], pg=G.shape[1],
                  info=info, cfg=cfg, ctl=ctl, settings=settings)
        if reference is not None:
            exp.reference = fill_params(exp.base(), reference, "reference")
        return exp

    def base(self) -> em.MoEParams:
        return self.fit.base_params(self.p, self.pg, self.info)
