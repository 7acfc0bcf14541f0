"""Truths that are not mixtures of experts, and fitted sizes that follow a rule of n.

Two spec fields serve the nonparametric experiments (Mendes & Jiang, ``theory.md`` §5):

* ``truth: {"target": {"name": ..., **settings}}`` -- a named smooth target
  (:data:`TARGETS`): y | x from a one-parameter family whose mean is a smooth,
  non-polynomial function of a scalar covariate.  Written as a one-expert
  model (a softmax gate with k = 1, weight 1) whose expert is the target, it
  goes through the harness's simulator and density losses unchanged.  It has no
  mixing measure, so Voronoi losses and the near-truth (``paper``) protocol
  are refused with a ValueError.
* ``fit: {"k": {"rule": "balance", ...}}`` -- the number of fitted experts
  chosen from n by the balance rule m(n) = clip(round(scale (n / log n)^{s / (2 gamma + s)}), min, max)
  (:func:`balance_k`); the worker fits replicate sizes n with k = m(n).

Examples
--------
>>> from moestat.montecarlo.targets import balance_k
>>> rule = {"rule": "balance", "gamma": 2, "s": 1, "scale": 1.0, "min": 2, "max": 12}
>>> [balance_k(rule, n) for n in (300, 3000, 30000)]
[2, 3, 5]
"""
from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from ..fitting import em
from ..gating.softmax import Softmax, SoftmaxParams

#: fields of a balance rule (all required but min/max)
RULE_FIELDS = ("rule", "gamma", "s", "scale", "min", "max")


class TargetParams(NamedTuple):
    """A target has no estimated parameters; its settings live on the target object."""


@dataclass(frozen=True)
class SmoothTarget:
    """y | x ~ a one-parameter family with natural parameter h(x) = a + b sin(2 pi freq x) (x scalar).

    Plays the part of the expert family of a one-expert model: ``mean``,
    ``log_density`` (JAX, features-major designs (p, N)), ``sample_numpy``
    and ``noise_variances`` as :class:`moestat.experts.base.Expert` defines them.
    The covariate is column 1 of the design (column 0 the intercept).
    """

    a: float = 1.0
    b: float = 0.8
    freq: float = 0.5
    name: ClassVar[str] = "target"
    response: ClassVar[str] = "continuous"

    def __post_init__(self):
        for f in ("a", "b", "freq"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
                raise ValueError("target %r: setting %r must be a finite number, got %r" % (self.name, f, v))

    def h(self, x):
        return self.a + self.b * jnp.sin(2.0 * math.pi * self.freq * x)

    def transform_design(self, X, intercept):
        return np.asarray(X, dtype=np.float64)

    def canonical(self, params):
        return params

    def _x(self, X):
        return X[1] if X.shape[0] > 1 else X[0]

    def host_mean(self, params, X):
        """(1, n) conditional means at a host design X (n, p)."""
        return np.asarray(self.mean(params, jnp.asarray(np.asarray(X, dtype=np.float64).T)))


@dataclass(frozen=True)
class PoissonSine(SmoothTarget):
    """y | x ~ Poisson(exp(a + b sin(2 pi freq x))): a count response with a smooth log-mean.

    Examples
    --------
    >>> import numpy as np
    >>> from moestat.montecarlo.targets import PoissonSine, TargetParams
    >>> t = PoissonSine(a=1.0, b=0.8, freq=0.5)
    >>> X = np.array([[1.0, 1.0], [0.0, 0.5]])                 # design rows (intercept, x) at x = 0, 0.5
    >>> np.round(np.asarray(t.mean(TargetParams(), X)), 4).tolist()     # exp(1), exp(1.8)
    [[2.7183, 6.0496]]
    """

    name: ClassVar[str] = "poisson_sine"
    response: ClassVar[str] = "count"
    family: ClassVar[str] = "poisson"

    def mean(self, params, X):
        return jnp.exp(self.h(self._x(X)))[None]

    def log_density(self, params, X, y):
        eta = self.h(self._x(X))
        return (y * eta - jnp.exp(eta) - gammaln(y + 1.0))[None]

    def noise_variances(self, params):
        return None

    def sample_numpy(self, rng, params, X, z):
        return rng.poisson(self.host_mean(params, X)[0]).astype(np.float64)


@dataclass(frozen=True)
class GaussianSine(SmoothTarget):
    """y | x ~ N(a + b sin(2 pi freq x), sigma2): a continuous response with a smooth mean.

    Examples
    --------
    >>> from moestat.montecarlo.targets import GaussianSine, TargetParams
    >>> GaussianSine(sigma2=0.25).noise_variances(TargetParams()).tolist()
    [0.25]
    """

    sigma2: float = 0.25
    name: ClassVar[str] = "gaussian_sine"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.sigma2, bool) or not isinstance(self.sigma2, numbers.Real) or not self.sigma2 > 0:
            raise ValueError("target %r: sigma2 must be a number > 0, got %r" % (self.name, self.sigma2))

    def mean(self, params, X):
        return self.h(self._x(X))[None]

    def log_density(self, params, X, y):
        m = self.h(self._x(X))
        return (-0.5 * (y - m) ** 2 / self.sigma2 - 0.5 * math.log(2.0 * math.pi * self.sigma2))[None]

    def noise_variances(self, params):
        return np.array([float(self.sigma2)])

    def sample_numpy(self, rng, params, X, z):
        m = self.host_mean(params, X)[0]
        return m + math.sqrt(self.sigma2) * rng.standard_normal(m.shape[0])


#: named smooth targets for ``truth: {"target": {"name": ...}}``
TARGETS = {cls.name: cls for cls in (PoissonSine, GaussianSine)}


def is_target(truth: dict) -> bool:
    """Whether a spec's truth section is a named target (not a mixture of experts)."""
    return isinstance(truth, dict) and "target" in truth


def make_target(sec: dict) -> SmoothTarget:
    """The target object of ``truth.target`` ({"name": ..., **settings})."""
    t = sec.get("target")
    if isinstance(t, str):
        t = {"name": t}
    if not isinstance(t, dict) or "name" not in t:
        raise ValueError("truth.target must be a target name or an object with a 'name', got %r" % (t,))
    if t["name"] not in TARGETS:
        raise ValueError("unknown target %r; choose one of %s" % (t["name"], ", ".join(TARGETS)))
    extra = set(sec) - {"target", "note"}
    if extra:
        raise ValueError("a truth given as a target takes only 'target' (and 'note'), got also %s" % sorted(extra))
    try:
        return TARGETS[t["name"]](**{k: v for k, v in t.items() if k not in ("name", "note")})
    except TypeError as exc:
        raise ValueError("target %r: %s" % (t["name"], exc)) from None


def target_truth(sec: dict, fit, setup_class):
    """(setup, MoEParams) of a target truth: one expert, a softmax gate of weight 1.

    ``fit`` (the fitted model's setup) must have the target's response type;
    ``setup_class`` builds the truth's setup (:class:`moestat.montecarlo.setup.ModelSetup`).
    """
    target = make_target(sec)
    if fit.expert.response != target.response:
        raise ValueError("the target %r has a %s response, but the fitted %r experts model a %s one"
                         % (target.name, target.response, fit.expert.name, fit.expert.response))
    setup = setup_class(gate=Softmax(), expert=target, k=1)
    pg = setup.designs(np.zeros((2, 1)))[1].shape[1]
    return setup, em.MoEParams(gate=SoftmaxParams(coef=np.zeros((1, pg))), expert=TargetParams())


def balance_k(rule: dict, n: int) -> int:
    """m(n) = clip(round(scale * (n / log n)^(s / (2 gamma + s))), min, max) (``theory.md`` §5).

    Parameters
    ----------
    rule : dict
        ``{"rule": "balance", "gamma": gamma, "s": s, "scale": c, "min": lo, "max": hi}``:
        gamma = alpha ^ (order + 1) (smoothness of the target, capped by the
        experts' polynomial order), s = number of covariates; min/max default 1 and 100.
    n : int
        Sample size (>= 3).

    Returns
    -------
    int

    Examples
    --------
    >>> from moestat.montecarlo.targets import balance_k
    >>> balance_k({"rule": "balance", "gamma": 2, "s": 1, "scale": 2.0, "min": 2, "max": 8}, 100000)
    8
    """
    check_rule(rule)
    if int(n) < 3:
        raise ValueError("the balance rule needs n >= 3 (log n > 1), got %r" % (n,))
    g, s, c = float(rule["gamma"]), float(rule["s"]), float(rule["scale"])
    m = int(round(c * (n / math.log(n)) ** (s / (2.0 * g + s))))
    return int(min(max(m, int(rule.get("min", 1))), int(rule.get("max", 100))))


def check_rule(rule) -> None:
    """ValueError naming the fault of a ``fit.k`` rule."""
    if not isinstance(rule, dict):
        raise ValueError("fit.k must be a positive integer or a rule object, got %r" % (rule,))
    if rule.get("rule") != "balance":
        raise ValueError("fit.k rule must be {\"rule\": \"balance\", ...}, got rule %r" % (rule.get("rule"),))
    extra = set(rule) - set(RULE_FIELDS) - {"note"}
    if extra:
        raise ValueError("fit.k rule has unknown field(s) %s; fields: %s" % (sorted(extra), ", ".join(RULE_FIELDS)))
    for f in ("gamma", "s", "scale"):
        v = rule.get(f)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v > 0):
            raise ValueError("fit.k rule: %r must be a number > 0, got %r" % (f, v))
    lo, hi = rule.get("min", 1), rule.get("max", 100)
    for f, v in (("min", lo), ("max", hi)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError("fit.k rule: %r must be an integer >= 1, got %r" % (f, v))
    if lo > hi:
        raise ValueError("fit.k rule: min (%d) exceeds max (%d)" % (lo, hi))


def check_sections(raw: dict) -> None:
    """ValueError for a target truth or a k rule that the rest of the spec cannot use.

    A target truth needs a d = 1 covariate law, the ``mle`` protocol (the
    near-truth starts need true atoms), no Voronoi losses and no variants
    that replace it by an MoE inconsistently; a k rule must be valid.
    """
    from ..losses import VORONOI_KINDS
    k = raw.get("fit", {}).get("k")
    if isinstance(k, dict):
        check_rule(k)
    elif k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1):
        raise ValueError("fit.k must be a positive integer or a rule object, got %r" % (k,))
    truth = raw.get("truth", {})
    if not is_target(truth):
        return
    make_target(truth)
    if int(raw.get("x", {}).get("d", 1)) != 1:
        raise ValueError("a target truth is a function of one covariate: x.d must be 1, got %r" % raw["x"]["d"])
    if raw.get("protocol", "mle") != "mle":
        raise ValueError("a target truth has no mixing measure to start near: use the 'mle' protocol, not %r"
                         % raw.get("protocol"))
    bad = [L["name"] for L in raw.get("losses", []) if L.get("kind") in VORONOI_KINDS]
    if bad:
        raise ValueError("loss(es) %s are Voronoi losses, but the truth is a target with no mixing measure; "
                         "use density losses (tv, hellinger, kl) or l2_mean" % bad)


def spec_at(raw: dict, n: int) -> dict:
    """The spec (raw dict) with a ``fit.k`` rule replaced by its value at n (unchanged when k is a number).

    Parameters
    ----------
    raw : dict
        A spec (``moestat/simulations/*.json`` format).
    n : int
        The sample size.

    Returns
    -------
    dict
        ``raw`` itself when k is a number, else a copy with the integer k.

    Examples
    --------
    >>> from moestat.montecarlo import load_spec
    >>> from moestat.montecarlo.targets import spec_at
    >>> raw = load_spec("mendes-jiang-tradeoff").raw
    >>> spec_at(raw, 300)["fit"]["k"], spec_at(raw, 30000)["fit"]["k"]
    (2, 5)
    """
    k = raw.get("fit", {}).get("k")
    if not isinstance(k, dict):
        return raw
    out = copy.deepcopy(raw)
    out["fit"]["k"] = balance_k(k, int(n))
    return out
