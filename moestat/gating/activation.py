"""Activation dense-to-sparse gating: g_i(x) = softmax_i(act(beta_1i' x) / tau + beta_0i).

Nguyen, Akbarian & Ho (ICML 2024, arXiv:2401.13875) show that the plain
temperature gate (:mod:`moestat.gating.temperature`) has parameter rates
slower than any polynomial, and propose an "activation dense-to-sparse gate,
which routes the output of a linear layer to an activation function before
delivering them to the softmax function" [ABS: abstract, PMLR v235 PDF first
page]; under linear-independence conditions on the activation and its
derivatives the rates become polynomial [ABS].  The exact form used here,
softmax(act(beta_1i' x) / tau + beta_0i) with the intercept outside the
activation, is [REC] (``theory.md`` §4.2): the paper's body could not be read
in the stored corpora.  The activation defaults to the sigmoid (the paper's
symbol sigma, [REC]); "tanh" or any JAX-traceable element-wise callable can be
given.

Identifiability [DER] and the two parametrisations (``reference=``):

* ``"expert"`` (default): as for the softmax gate, expert 0 is the
  reference -- its intercept *and* slopes are 0, so its score is the constant
  act(0) / tau -- the same normalisation the group imposes on the last
  expert's gate parameters for softmax (assumption (A.2) of
  arXiv:2505.10860 [TXT]; for this gate [REC]).  ``n_free_params =
  (k - 1) pg (+ 1 for tau)``.  For k = 2 the gate log-odds are
  (act(b' x) - act(0)) / tau + c, whose slope b, temperature tau and
  intercept c are well identified.  For a non-affine activation this is a
  sub-model rather than a re-parametrisation, so relabelling the reference
  expert changes the model: :meth:`permute` handles relabellings that keep
  expert 0 and, for k = 2 with an odd activation about act(0) (sigmoid,
  tanh), the swap (b, c) -> (-b, -c); it refuses the others.
* ``"intercept"``: only beta_00 = 0 (the softmax's shift invariance); all k
  slope rows are free, the model is closed under relabelling, and
  ``n_free_params = (k - 1) + k d (+ 1 for tau)``.  Identification is then
  only generic and, on a bounded covariate range, weak: with the sigmoid,
  sigma(b x) - sigma(-b x) = 2 (sigma(b x) - sigma(0)), so the slope pairs
  (b, -b) at tau and (0, b) at tau / 2 give the same gate, and near such
  points the likelihood is almost flat.  Measured with
  ``benchmarks/gate_recovery_sweep.py 2 activation_free_slopes`` (truth
  slopes (-1, 3), intercept 0.3, tau = 0.5, 2 replicates): the mean parameter
  error went 2.97, 2.10, 0.60, 1.42, 1.77 for n = 1e3, 3e3, 1e4, 3e4, 1e5
  while every fit's log-likelihood was above the truth's.

In both, tau is identified jointly with beta: the scaling (beta, tau) ->
(c beta, c tau) that leaves the plain temperature gate unchanged changes
this one.

M-step: the soft-label objective is not concave in (beta, log tau); its
gradient and Hessian come from JAX automatic differentiation over the
(k pg + 1)-vector of parameters, and the step is a Levenberg-damped Newton
step guarded on the exact objective (:mod:`moestat.gating._damped`): a GEM
step, so EM is monotone at a fixed (or estimated) tau.  tau is estimated in
log tau by default; ``estimate_temperature=False`` fixes it, and
``schedule=(start, end, n_steps)`` anneals it as in
:class:`moestat.gating.temperature.TemperatureSoftmax` (EM is then monotone
only once tau has stopped moving).

The gate assumes that column 0 of the gate design is the intercept (moestat's
layout); it refuses a design without one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax, ksum, split_intercept
from ._damped import damped_ascent, masked_autodiff_stats
from .base import Gate, register
from .temperature import TemperatureMixin, check_temperature

ACTIVATIONS: dict[str, Callable] = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
REFERENCES = ("expert", "intercept")


class ActivationParams(NamedTuple):
    coef: jnp.ndarray      # (k, pg): column 0 = beta_0, columns 1.. = beta_1; beta_00 = 0 (row 0 = 0 by default)
    log_temp: jnp.ndarray  # () log tau


def activation_scores(act, coef, log_temp, Xg, log_min_temp):
    """(k, N) act(beta_1 x) / tau + beta_0, with tau floored at exp(log_min_temp).

    The floor keeps the scores below ~1/min_temperature: beyond ~1e15 a
    log-sum-exp can no longer resolve log 2 against the scores, and the
    weights would stop summing to one.
    """
    lt = jnp.maximum(log_temp, log_min_temp)
    return act(coef[:, 1:] @ Xg[1:]) * jnp.exp(-lt) + coef[:, :1] * Xg[:1]


@register
@dataclass(frozen=True)
class ActivationSoftmax(TemperatureMixin, Gate):
    """Activation dense-to-sparse gating softmax_i(act(beta_1i' x) / tau + beta_0i).

    Parameters
    ----------
    activation : "sigmoid" (default), "tanh" or a JAX-traceable element-wise callable
    temperature : float > 0
        tau: its starting value when estimated, its value when fixed.
    estimate_temperature : bool, default True
        Estimate tau (in log tau, jointly with beta in the Newton step).
    schedule : None, TemperatureSchedule or (start, end, n_steps)
        Anneal a fixed tau over the EM iterations (needs estimate_temperature=False).
    reference : "expert" (default) or "intercept"
        Expert 0's whole row is 0, or only its intercept (see the module docstring).
    min_temperature : float > 0
        Lower bound on tau (default 1e-6).  As tau -> 0 the gate tends to a
        hard switch, and with finite data the likelihood may keep rising
        along that path; the bound keeps the computation exact, and a fit
        that reaches it is reported by :meth:`boundary`.
    newton_steps : int
        Damped guarded Newton steps per EM iteration.

    Examples
    --------
    >>> import moestat as ms
    >>> ms.gating.ActivationSoftmax(activation="tanh").n_free_params(3, 2)
    5
    """

    name = "activation_softmax"
    summary_title: ClassVar[str] = "Gate (softmax(act(b_1'x) / tau + b_0))"
    activation: Any = "sigmoid"
    temperature: float = 1.0
    estimate_temperature: bool = True
    schedule: Any = None
    reference: str = "expert"
    min_temperature: float = 1e-6
    newton_steps: int = 1

    def __post_init__(self):
        if isinstance(self.activation, str):
            if self.activation not in ACTIVATIONS:
                raise ValueError("activation_softmax: activation must be one of %s or a callable, got %r"
                                 % (", ".join(map(repr, ACTIVATIONS)), self.activation))
        elif not callable(self.activation):
            raise TypeError("activation_softmax: activation must be 'sigmoid', 'tanh' or a callable, got %s"
                            % type(self.activation).__name__)
        if self.reference not in REFERENCES:
            raise ValueError("activation_softmax: reference must be one of %s, got %r"
                             % (", ".join(map(repr, REFERENCES)), self.reference))
        self._check_temperature_settings()
        object.__setattr__(self, "min_temperature", check_temperature(self.min_temperature, "min_temperature"))
        lowest = self.schedule.end if self.schedule is not None else self.temperature
        if lowest < self.min_temperature:
            raise ValueError("activation_softmax: temperature %g is below min_temperature %g"
                             % (lowest, self.min_temperature))

    @property
    def log_min_temp(self) -> float:
        return math.log(self.min_temperature)

    @property
    def act(self) -> Callable:
        return ACTIVATIONS[self.activation] if isinstance(self.activation, str) else self.activation

    def validate_design(self, names, intercept):
        if not intercept:
            raise ValueError("activation_softmax needs a gate intercept (column 0 holds beta_0, outside the "
                             "activation); fit with gate_intercept=True")
        if len(names) < 2:
            raise ValueError("activation_softmax needs at least one gate covariate besides the intercept "
                             "(the activation acts on beta_1' x)")

    def init_params(self, k, pg):
        return ActivationParams(coef=jnp.zeros((k, pg)), log_temp=self.initial_log_temp())

    def n_free_params(self, k, pg):
        slopes = (k - 1) * (pg - 1) if self.reference == "expert" else k * (pg - 1)
        return (k - 1) + slopes + int(self.estimate_temperature)

    def canonical(self, params):
        coef = params.coef - params.coef[0, 0] * (jnp.arange(params.coef.shape[1]) == 0)
        return ActivationParams(coef=coef, log_temp=jnp.maximum(params.log_temp, self.log_min_temp))

    def free_mask(self, params):
        m = jnp.ones(jnp.shape(params.coef), dtype=bool)
        m = m.at[0].set(False) if self.reference == "expert" else m.at[0, 0].set(False)
        return ActivationParams(coef=m, log_temp=jnp.asarray(bool(self.estimate_temperature)))

    def log_weights(self, params, Xg):
        return klog_softmax(activation_scores(self.act, params.coef, params.log_temp, Xg, self.log_min_temp))

    def m_step(self, params, tau, Xg, w, ctl, max_halvings, fixed, log_w=None):
        k, pg = params.coef.shape
        log_temp = self.next_log_temp(params.log_temp, fixed.log_temp)
        ident = self.free_mask(params)
        free = jnp.concatenate([(ident.coef & ~fixed.coef).ravel(),
                                jnp.reshape(ident.log_temp & ~fixed.log_temp, (1,))])
        act = self.act

        def objective(flat):
            coef, lt = flat[:-1].reshape(k, pg), flat[-1]
            eta = activation_scores(act, coef, lt, Xg, self.log_min_temp)
            return jnp.dot(ksum(tau * klog_softmax(eta)), w)

        flat = jnp.concatenate([params.coef.ravel(), jnp.reshape(log_temp, (1,))])
        stats = masked_autodiff_stats(objective, free)
        flat = damped_ascent(flat, objective, stats, ctl, max_halvings, self.newton_steps)
        return ActivationParams(coef=flat[:-1].reshape(k, pg), log_temp=flat[-1])

    def boundary(self, params, ctl) -> list[str]:
        """A message when tau sits at ``min_temperature`` (the gate is then numerically a hard switch)."""
        if self.estimate_temperature and float(np.asarray(params.log_temp)) <= self.log_min_temp + 1e-6:
            return ["activation_softmax: the temperature is at its lower bound min_temperature=%g -- the fitted "
                    "gate is a hard switch and the likelihood rises towards it (no interior maximum)"
                    % self.min_temperature]
        return []

    def atoms(self, params, intercept):
        """Masses exp(beta_0i - max beta_0) and, per atom, the activation slopes and the temperature.

        Block ``gate_activation`` (k, d + 1): (beta_1i, tau).  The temperature
        is shared by the atoms and identified jointly with the slopes, so it
        enters every atom's distance.  Only the intercepts shift together
        (kind "softmax" without a ``gate_slope`` block: the losses take the
        infimum over the common factor of the masses alone).
        """
        beta0, beta1 = split_intercept(params.coef, intercept)
        tau = math.exp(float(np.asarray(params.log_temp)))
        blocks = {"gate_activation": np.column_stack([beta1, np.full(beta1.shape[0], tau)])}
        return np.exp(beta0 - beta0.max()), blocks, "softmax"

    def permute(self, params, perm):
        """Parameters with the experts relabelled (new expert i = old expert ``perm[i]``); see the module docstring."""
        perm = np.asarray(perm, dtype=int)
        k = perm.size
        coef = params.coef
        if self.reference == "intercept" or perm[0] == 0:
            return ActivationParams(coef=coef[perm] if isinstance(coef, np.ndarray) else jnp.take(coef, perm, axis=0),
                                    log_temp=params.log_temp)
        if k == 2 and isinstance(self.activation, str):   # sigmoid and tanh are odd about act(0)
            return ActivationParams(coef=-coef, log_temp=params.log_temp)   # row 0 is 0: (c, b) -> (-c, -b)
        raise ValueError("activation_softmax(reference='expert'): relabelling the reference expert 0 changes the "
                         "model (its row is fixed at 0); only relabellings that keep expert 0 are possible "
                         "(or use reference='intercept')")

    def equivalent_relabellings(self, params) -> list:
        """For k = 2, reference="expert" and an odd activation about act(0): the swap of the two experts.

        (act(b' x) - act(0)) / tau + c and its swap (act(-b' x) - act(0)) / tau - c
        give the same gate with the other expert as reference (:meth:`permute`),
        so the mixing measure has two representations whose gate atoms differ.
        """
        k = int(np.shape(params.coef)[0])
        if self.reference == "expert" and k == 2 and isinstance(self.activation, str):
            return [np.array([1, 0])]
        return []

    def _free_rows(self, c):
        return [(i, j) for i in range(c.shape[0]) for j in range(c.shape[1])
                if (i > 0 if self.reference == "expert" else (i, j) != (0, 0))]

    def describe(self, params, names):
        c = np.asarray(self.canonical(params).coef)
        rows = [(i, names[j], float(c[i, j])) for i, j in self._free_rows(c)]
        if self.estimate_temperature:
            rows.append(self.temperature_row(params))
        return rows

    def report(self, params):
        p = self.canonical(params)
        out = jnp.ravel(p.coef[1:]) if self.reference == "expert" else jnp.ravel(p.coef)[1:]
        if self.estimate_temperature:
            out = jnp.concatenate([out, jnp.exp(p.log_temp)[None]])
        return out
