"""The gate interface shared by every gating family.

A gate is a small frozen (hashable) dataclass: its fields are the gate's
*settings* (e.g. top-K's K, a temperature schedule), static under ``jax.jit``;
its *parameters* are a PyTree (a NamedTuple of arrays) passed to pure methods.
A new gate is one new module in ``moestat/gating/`` that subclasses
:class:`Gate` and registers itself with :func:`register`.

Shapes: ``Xg (pg, N)`` features-major gate design (row 0 = intercept when the
model has one); ``tau (k, N)`` responsibilities; ``w (N,)`` case weights with 0
on padding.
"""
from __future__ import annotations

import abc

from dataclasses import dataclass
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax
from .._registry import Registry

_REGISTRY = Registry("gating", "moestat.gating gate object", "unknown gating", "a gate object")


def register(cls):
    """Class decorator: make a gate available as ``gating="<cls.name>"``."""
    return _REGISTRY.register(cls)


def available() -> list[str]:
    return _REGISTRY.available()


def get_gate(gating: Any) -> "Gate":
    """A gate object from a name (``"softmax"``) or a gate instance."""
    return _REGISTRY.get(gating, Gate)


@dataclass(frozen=True)
class Gate(abc.ABC):
    """Base class of the gating families (see the module docstring for shapes)."""

    name: ClassVar[str] = "gate"
    #: True when the E-step terms are joint log densities log pi_i N(x | ...) (Gaussian gate):
    #: the log-likelihood is then that of (x, y), not of y given x.
    joint: ClassVar[bool] = False
    #: True when parameters are identified only up to a common translation (softmax).
    translation_invariant: ClassVar[bool] = False
    #: False when the gate models the raw covariates and takes no intercept column
    #: (Gaussian gate); the model then drops the intercept from the gate design.
    uses_intercept: ClassVar[bool] = True
    #: True when starting values keep the gate at :meth:`init_params` instead of fitting it to
    #: the starting partitions (:func:`moestat.fitting.em.params_from_resp`); EM's first gate M-step then sees the
    #: soft responsibilities of the partition-fitted experts.  For gates that a hard partition drives onto a
    #: flat part of their likelihood (normalized sigmoid: its softmax limit).
    hold_in_starts: ClassVar[bool] = False

    # ---- host-side set-up ------------------------------------------------------------
    def validate(self, k: int, pg: int) -> None:
        """Raise ValueError for settings that cannot work with k experts and pg gate columns."""

    def validate_design(self, names: list[str], intercept: bool) -> None:
        """Raise ValueError when the gate design does not suit this gate (default: any design).

        ``intercept`` says whether column 0 of the gate design is
        the intercept; gates that treat the intercept apart from the slopes
        (activation gate, top-K ranked on slopes, estimated temperature) need it.
        """

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """Map the raw gate covariates (n, d), intercept excluded, to the gate features."""
        return Z

    # ---- parameters ------------------------------------------------------------------
    @abc.abstractmethod
    def init_params(self, k: int, pg: int):
        """Neutral starting parameters (equal weights)."""

    @abc.abstractmethod
    def n_free_params(self, k: int, pg: int) -> int:
        ...

    def unconstrain(self, params):
        """Map parameters to an unconstrained space (e.g. variances to log-variances)."""
        return params

    def constrain(self, u):
        """Inverse of :meth:`unconstrain`."""
        return u

    def canonical(self, params):
        """The identified representative of ``params`` (e.g. reference expert 0 = 0)."""
        return params

    def arrange_starts(self, R: np.ndarray) -> np.ndarray:
        """Reorder the expert rows of starting responsibilities R (n_starts, k, n).

        Default: as they are.  Gates whose experts are not exchangeable (shared
        vs routed experts) use it to try each cluster in each role.
        """
        return R

    # ---- kernels ---------------------------------------------------------------------
    @abc.abstractmethod
    def log_weights(self, params, Xg):
        """(k, N) log gating probabilities log g_i(x_n), normalised over i."""

    def e_step_terms(self, params, Xg):
        """(k, N) terms added to the expert log densities in the E-step.

        Conditional gates return :meth:`log_weights`; the joint Gaussian gate
        returns log pi_i + log N(x | c_i, Gamma_i).
        """
        return self.log_weights(params, Xg)

    @abc.abstractmethod
    def m_step(self, params, tau, Xg, w, ctl, max_halvings: int, fixed, log_w=None):
        """Parameters that do not lower sum_n w_n sum_i tau_in log g_i(x_n) (a GEM step).

        ``log_w`` (k, N), when given, is :meth:`e_step_terms` at ``params`` from
        the E-step (for conditional gates, the log gate probabilities): a gate
        may reuse it instead of recomputing (XLA does not merge the two).
        """

    def observed_step(self, params, data, cfg, ctl, max_halvings: int, fixed_gate):
        """Optional extra move of the gate, judged on the observed log-likelihood (default: none).

        Called by the EM loop after the gate and expert M-steps
        with the full parameters (``moestat.fitting.em.MoEParams``) and the data; it must
        return parameters whose log-likelihood is not lower, so that EM stays
        monotone.  Top-K uses it to re-route points, which no step on the
        M-step objective can do.
        """
        return params

    def may_stop(self, params):
        """Whether EM may stop at ``params`` (default: always).

        A gate whose settings change by design across
        iterations (a temperature schedule) returns False until they have
        settled, so that the tolerance does not end EM half-way.
        """
        return True

    # ---- presentation / inference ----------------------------------------------------
    @abc.abstractmethod
    def describe(self, params, names: list[str]) -> list[tuple[int, str, float]]:
        """[(expert, term, estimate), ...] for the identified gate parameters (expert 0-based)."""

    @abc.abstractmethod
    def free_mask(self, params):
        """PyTree of booleans like params: True for free (identified) entries."""

    # ---- inference (moestat.inference) ---------------------------------------------
    #: Title of the gate's coefficient table in ``summary()``.
    summary_title: ClassVar[str] = "Gate"

    def report(self, params):
        """JAX-traceable 1-d vector of the estimates :meth:`describe` lists, in the same order.

        The observed-information standard errors and the bootstrap apply the
        delta method / collect replicates through this map, so it must be
        differentiable in ``params``.  Default: the :meth:`free_mask` entries of
        :meth:`canonical` parameters, leaf by leaf in row-major order; override
        it when ``describe`` reports something else (e.g. a standard deviation).
        """
        from .._pytree import free_entries
        return free_entries(self.canonical(params), self.free_mask)

    def permute(self, params, perm):
        """Parameters with the experts relabelled: new expert i is old expert ``perm[i]``.

        Default: reorder axis 0 of every leaf whose first dimension is k (the
        result is not canonicalised; callers apply :meth:`canonical`).
        """
        from .._pytree import permute_leading
        return permute_leading(params, perm)


def softmax_log_weights(coef, Xg):
    """log softmax(coef @ Xg) over experts: (k, N)."""
    return klog_softmax(coef @ Xg)


def mask_newton(grad, negH, free):
    """Restrict a Newton system to free coordinates: fixed entries get zero gradient, identity curvature."""
    f = free.ravel().astype(grad.dtype)
    g = grad * free.astype(grad.dtype)
    H = negH * f[:, None] * f[None, :] + jnp.diag(1.0 - f)
    return g, H
