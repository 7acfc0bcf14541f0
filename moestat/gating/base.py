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

from dataclasses import dataclass
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from .._math import klog_softmax

_REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: make a gate available as ``gating="<cls.name>"``."""
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_gate(gating: Any) -> "Gate":
    """A gate object from a name (``"softmax"``) or a gate instance."""
    if isinstance(gating, Gate):
        return gating
    if isinstance(gating, str):
        if gating not in _REGISTRY:
            raise ValueError("unknown gating %r; choose one of %s or pass a gate object"
                             % (gating, ", ".join(repr(g) for g in available())))
        return _REGISTRY[gating]()
    raise TypeError("gating must be a name (%s) or a moestat.gating gate object, got %s"
                    % (", ".join(available()), type(gating).__name__))


@dataclass(frozen=True)
class Gate:
    """Base class of the gating families (see the module docstring for shapes)."""

    name: ClassVar[str] = "gate"
    #: True when the E-step terms are joint log densities log pi_i N(x | ...) (Gaussian gate):
    #: the log-likelihood is then that of (x, y), not of y given x.
    joint: ClassVar[bool] = False
    #: True when parameters are identified only up to a common translation (softmax).
    translation_invariant: ClassVar[bool] = False
    #: (experts branch) False when the gate models the raw covariates and takes no intercept column
    #: (Gaussian gate); the model then drops the intercept from the gate design.
    uses_intercept: ClassVar[bool] = True

    # ---- host-side set-up ------------------------------------------------------------
    def validate(self, k: int, pg: int) -> None:
        """Raise ValueError for settings that cannot work with k experts and pg gate columns."""

    def transform(self, Z: np.ndarray) -> np.ndarray:
        """Map the raw gate covariates (n, d), intercept excluded, to the gate features."""
        return Z

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k: int, pg: int):
        """Neutral starting parameters (equal weights)."""
        raise NotImplementedError

    def n_free_params(self, k: int, pg: int) -> int:
        raise NotImplementedError

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
        """(experts branch) Reorder the expert rows of starting responsibilities R (n_starts, k, n).

        Default: as they are.  Gates whose experts are not exchangeable (shared
        vs routed experts) use it to try each cluster in each role.
        """
        return R

    # ---- kernels ---------------------------------------------------------------------
    def log_weights(self, params, Xg):
        """(k, N) log gating probabilities log g_i(x_n), normalised over i."""
        raise NotImplementedError

    def e_step_terms(self, params, Xg):
        """(k, N) terms added to the expert log densities in the E-step.

        Conditional gates return :meth:`log_weights`; the joint Gaussian gate
        returns log pi_i + log N(x | c_i, Gamma_i).
        """
        return self.log_weights(params, Xg)

    def m_step(self, params, tau, Xg, w, ctl, max_halvings: int, fixed):
        """Parameters that do not lower sum_n w_n sum_i tau_in log g_i(x_n) (a GEM step)."""
        raise NotImplementedError

    # ---- presentation / inference ----------------------------------------------------
    def describe(self, params, names: list[str]) -> list[tuple[int, str, float]]:
        """[(expert, term, estimate), ...] for the identified gate parameters (expert 0-based)."""
        raise NotImplementedError

    def free_mask(self, params):
        """PyTree of booleans like params: True for free (identified) entries."""
        raise NotImplementedError


def softmax_log_weights(coef, Xg):
    """log softmax(coef @ Xg) over experts: (k, N)."""
    return klog_softmax(coef @ Xg)


def mask_newton(grad, negH, free):
    """Restrict a Newton system to free coordinates: fixed entries get zero gradient, identity curvature."""
    f = free.ravel().astype(grad.dtype)
    g = grad * free.astype(grad.dtype)
    H = negH * f[:, None] * f[None, :] + jnp.diag(1.0 - f)
    return g, H
