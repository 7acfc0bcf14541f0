"""Softmax gating with a temperature: g_i(x) = softmax_i((beta_i' x) / tau), and the dense-to-sparse schedule.

The "dense-to-sparse" gate of Nguyen, Akbarian & Ho (ICML 2024,
arXiv:2401.13875) is a softmax whose scores are divided by a temperature tau:
a large tau spreads the weights over all experts (dense), a small one
concentrates them on one (sparse).  EvoMoE (Nie et al., arXiv:2112.14397)
anneals tau downwards during training.

What was verified, and from where:

* [ABS] the paper's abstract (PMLR v235 PDF first page, ICML poster page):
  the temperature "control[s] the softmax weight distribution and the
  sparsity"; parameter rates are slower than any polynomial "due to
  interactions between the temperature and other model parameters via some
  partial differential equations".
* [REC] the exact gate form softmax((beta_1i' x + beta_0i) / tau) (``theory.md``
  §4.2) -- the paper's body could not be read in the stored corpora (only its
  first page).
* [DER] in this plain form tau is *not identified* jointly with beta:
  (beta, tau) and (c beta, c tau) give the same gate for every c > 0, which is
  exactly the first-order "PDE" sum_j beta_j d/dbeta_j = -tau d/dtau.
* [ABS/3P] EvoMoE's dense-to-sparse gate starts dense and "gradually and
  adaptively becomes sparser" (abstract); the temperature decays from about 2
  to about 0.3 geometrically (a third-party re-implementation's documentation,
  ``T(t) = T_init (T_final / T_init)^(t / T)``).  EvoMoE's own code
  (github.com/codecaution/EvoMoE, ``heat_scheduler``) also has cosine and
  fixed schedules; the geometric one is used here.

moestat's parametrisation (its own choice, stated because the paper's could not
be checked):

* default: tau is a **fixed, known** setting (``temperature=1.0``); beta is
  estimated.  The M-step is the softmax gate's guarded Newton step applied to
  the features x / tau (:func:`moestat.fitting.newton.softmax_step`),
  reference expert 0 has beta_0 = 0.
* ``estimate_temperature=True``: tau is estimated under the identifiability
  constraint ||C(beta_1)||_F = 1, where beta_1 (k x d) are the gate slopes
  (intercept column excluded) and C centres them over the experts (so the
  constraint is invariant to the softmax translation and to relabelling the
  experts); then tau = 1 / ||C(theta_1)||_F and beta = tau theta, where
  theta = beta / tau are the softmax coefficients.  EM and the Newton polish work on theta (the
  identified parameters), so the fit is that of the softmax gate, re-expressed.
  Needs a gate intercept and at least one gate covariate.  Holding single
  gate coefficients fixed is not supported in this mode (the normalisation
  moves them); fix the whole gate, or the temperature (which gives the
  fixed-tau fit).
* ``schedule=(start, end, n_steps)``: tau moves geometrically from ``start``
  to ``end`` over ``n_steps`` M-steps and then stays at ``end``.  The schedule
  advances once per M-step, including the M-steps that turn starting
  responsibilities into starting parameters, and EM does not stop on its
  tolerance before tau has reached ``end`` (:meth:`Gate.may_stop`).  **While
  tau changes, the EM objective changes, so the log-likelihood need not
  increase between iterations; monotonicity holds only at a fixed tau**
  (tested there).  Do not hold the temperature fixed (``fixed=``) together
  with a schedule: EM would then run to ``max_iter``.

For every tau > 0 the model class is the same as the softmax gate's, so the
maximised log-likelihood does not depend on the (fixed) temperature; tau only
changes the parametrisation and the EM path.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
import numpy as np

from ..fitting import newton
from .base import Gate, register, softmax_log_weights
from .softmax import softmax_atoms

_TINY = 1e-300


class TemperatureParams(NamedTuple):
    coef: jnp.ndarray      # (k, pg) beta; row 0 is the reference and stays 0
    log_temp: jnp.ndarray  # () log tau


def check_temperature(value, what: str = "temperature") -> float:
    """A finite tau > 0, else ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a positive number, got %r" % (what, value))
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError("%s must be a finite number > 0 (tau <= 0 is not a temperature), got %r" % (what, value))
    return v


@dataclass(frozen=True)
class TemperatureSchedule:
    """Geometric temperature schedule: tau_t = start * (end / start)^(min(t, n_steps) / n_steps).

    ``t`` counts M-steps.  ``start > end`` anneals from dense to sparse
    (EvoMoE's dense-to-sparse gate).
    """

    start: float = 2.0
    end: float = 0.3
    n_steps: int = 50

    def __post_init__(self):
        object.__setattr__(self, "start", check_temperature(self.start, "schedule start temperature"))
        object.__setattr__(self, "end", check_temperature(self.end, "schedule end temperature"))
        if isinstance(self.n_steps, bool) or not isinstance(self.n_steps, numbers.Integral) or self.n_steps < 1:
            raise ValueError("schedule n_steps must be a positive integer, got %r" % (self.n_steps,))

    def next_log(self, log_temp):
        """log tau after one more M-step (moves towards log(end) and stops there)."""
        lo, hi = math.log(self.start), math.log(self.end)
        step = (hi - lo) / self.n_steps
        nxt = log_temp + step
        return jnp.minimum(nxt, hi) if step >= 0 else jnp.maximum(nxt, hi)


def as_schedule(schedule: Any):
    """None, a :class:`TemperatureSchedule` or a (start, end, n_steps) tuple."""
    if schedule is None or isinstance(schedule, TemperatureSchedule):
        return schedule
    if isinstance(schedule, (tuple, list)) and len(schedule) == 3:
        return TemperatureSchedule(*schedule)
    raise TypeError("schedule must be None, a TemperatureSchedule or a (start, end, n_steps) tuple, got %r"
                    % (schedule,))


class TemperatureMixin:
    """Settings shared by the temperature gates: tau > 0 checks, schedule, estimation flag."""

    def _check_temperature_settings(self):
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "schedule", as_schedule(self.schedule))
        if self.schedule is not None and self.estimate_temperature:
            raise ValueError("%s: a temperature schedule fixes tau at every iteration; it cannot be combined "
                             "with estimate_temperature=True" % self.name)
        if isinstance(self.newton_steps, bool) or not isinstance(self.newton_steps, numbers.Integral) \
                or self.newton_steps < 1:
            raise ValueError("%s: newton_steps must be a positive integer, got %r" % (self.name, self.newton_steps))

    def initial_log_temp(self):
        tau0 = self.schedule.start if self.schedule is not None else self.temperature
        return jnp.asarray(math.log(tau0))

    def next_log_temp(self, log_temp, fixed_log_temp):
        """The log temperature of the next M-step: scheduled, or unchanged."""
        if self.schedule is None:
            return log_temp
        return jnp.where(fixed_log_temp, log_temp, self.schedule.next_log(log_temp))

    def may_stop(self, params):
        """EM goes on until a scheduled temperature has reached its end value."""
        if self.schedule is None:
            return True
        return jnp.abs(params.log_temp - math.log(self.schedule.end)) <= 1e-12

    @staticmethod
    def temperature_row(params):
        return (-1, "temperature", float(np.exp(np.asarray(params.log_temp))))


def _slopes_norm(theta):
    """||theta_1 - mean_i theta_1i||_F over the slope columns: the norm the constraint fixes to 1/tau.

    Centring over the experts makes it invariant to the softmax translation and
    to relabelling the experts.
    """
    S = theta[:, 1:]
    return jnp.sqrt(jnp.sum((S - jnp.mean(S, axis=0, keepdims=True)) ** 2))


def normalise(theta, log_temp_old):
    """(beta, log tau) from softmax coefficients theta under the slope constraint (old tau if theta_1 = 0)."""
    nrm = _slopes_norm(theta)
    ok = nrm > _TINY
    log_temp = jnp.where(ok, -jnp.log(jnp.where(ok, nrm, 1.0)), log_temp_old)
    return theta * jnp.exp(log_temp), log_temp


@register
@dataclass(frozen=True)
class TemperatureSoftmax(TemperatureMixin, Gate):
    """Softmax gating with temperature: softmax_i(beta_i' x / tau), tau fixed, scheduled or estimated.

    Parameters
    ----------
    temperature : float > 0
        tau (fixed), or the starting value when ``estimate_temperature``.
    estimate_temperature : bool
        Estimate tau under the constraint ||beta_1 - mean_i beta_1i||_F = 1 (see the module docstring).
    schedule : None, TemperatureSchedule or (start, end, n_steps)
        Dense-to-sparse annealing of tau over the EM iterations (tau then is
        not estimated; EM is monotone only once tau has reached ``end``).
    newton_steps : int
        Guarded Newton steps per EM iteration.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.gating.TemperatureSoftmax(temperature=0.5).n_free_params(2, 2)
    2
    """

    name = "temperature_softmax"
    summary_title: ClassVar[str] = "Gate (softmax(b'x / tau): tau x log-odds against expert 1)"
    translation_invariant = True
    temperature: float = 1.0
    estimate_temperature: bool = False
    schedule: Any = None
    newton_steps: int = 1

    def __post_init__(self):
        self._check_temperature_settings()

    def validate_design(self, names, intercept):
        if self.estimate_temperature and not intercept:
            raise ValueError("temperature_softmax: estimate_temperature=True needs a gate intercept (column 0 is "
                             "excluded from the slope normalisation); fit with gate_intercept=True")
        if self.estimate_temperature and len(names) < 2:
            raise ValueError("temperature_softmax: estimate_temperature=True needs at least one gate covariate "
                             "besides the intercept (tau is fixed by the gate slopes)")

    def init_params(self, k, pg):
        return TemperatureParams(coef=jnp.zeros((k, pg)), log_temp=self.initial_log_temp())

    def n_free_params(self, k, pg):
        return (k - 1) * pg

    def canonical(self, params):
        coef = params.coef - params.coef[:1]
        if self.estimate_temperature:
            coef, log_temp = normalise(coef * jnp.exp(-params.log_temp), params.log_temp)
            return TemperatureParams(coef=coef, log_temp=log_temp)
        return TemperatureParams(coef=coef, log_temp=params.log_temp)

    def unconstrain(self, params):
        if self.estimate_temperature:  # theta = beta / tau: the identified softmax coefficients
            return TemperatureParams(coef=params.coef * jnp.exp(-params.log_temp), log_temp=params.log_temp)
        return params

    def constrain(self, u):
        if self.estimate_temperature:
            coef, log_temp = normalise(u.coef, u.log_temp)
            return TemperatureParams(coef=coef, log_temp=log_temp)
        return u

    def free_mask(self, params):
        m = jnp.ones(jnp.shape(params.coef), dtype=bool).at[0].set(False)
        return TemperatureParams(coef=m, log_temp=jnp.asarray(False))

    def log_weights(self, params, Xg):
        return softmax_log_weights(params.coef * jnp.exp(-params.log_temp), Xg)

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        free = jnp.logical_not(fixed.coef)
        log_temp = self.next_log_temp(params.log_temp, fixed.log_temp)
        # softmax(beta x / tau) = softmax(theta x): the softmax step on theta = beta / tau
        theta = params.coef * jnp.exp(-log_temp)
        theta = newton.softmax_step(theta, tau, Xg, w, ctl, max_halvings, free, self.newton_steps)
        if self.estimate_temperature:
            coef, new_log = normalise(theta, log_temp)
            keep = fixed.log_temp
            return TemperatureParams(coef=jnp.where(keep, theta * jnp.exp(log_temp), coef),
                                     log_temp=jnp.where(keep, log_temp, new_log))
        return TemperatureParams(coef=theta * jnp.exp(log_temp), log_temp=log_temp)

    def describe(self, params, names):
        c = np.asarray(params.coef)
        rows = [(i, names[j], float(c[i, j])) for i in range(1, c.shape[0]) for j in range(c.shape[1])]
        if self.estimate_temperature:
            rows.append(self.temperature_row(params))
        return rows

    def atoms(self, params, intercept):
        """The softmax atoms of theta = beta / tau (:func:`moestat.gating.softmax.softmax_atoms`).

        softmax(beta' x / tau) = softmax(theta' x): the gate is the softmax of
        theta, which is all the data identify when tau is estimated.
        """
        theta = np.asarray(params.coef, dtype=np.float64) * np.exp(-float(np.asarray(params.log_temp)))
        return softmax_atoms(theta, intercept)

    def report(self, params):
        p = self.canonical(params)
        out = jnp.ravel(p.coef[1:])
        if self.estimate_temperature:
            out = jnp.concatenate([out, jnp.exp(p.log_temp)[None]])
        return out
