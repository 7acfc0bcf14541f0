"""Modified softmax gating: g_i(x) = softmax_i(beta_i0 + beta_i1' M(x)), experts still on the raw x.

Nguyen, Akbarian, T. Nguyen & Ho (ICML 2024, arXiv:2310.14188) replace the
gate's linear score beta_1' x by beta_1' M(x) for a fixed map M, which removes
the gate-expert interaction ``du/da = d2u/(dbeta_1 db)`` behind the slow
(slower than polynomial) parameter rates of the standard softmax gate.

What was verified, and from where:

* [ABS] the abstract (PMLR page / arXiv): "a novel class of modified softmax
  gating functions which transform the input before delivering them to the
  gating functions"; a 2025 survey (arXiv:2503.07137) restates that the gate
  uses "a bounded function M(X) to transform the input X" while the experts
  still use X (``theory.md`` §1.1).
* [DER] (``theory.md`` §1.3) the PDE disappears unless M is affine, and the
  gate stays identifiable only if M is one-to-one.
* [REC] the paper's exact conditions on M (bounded, injective, non-affine,
  linear independence of the Taylor terms) and its examples (element-wise
  sigmoid and tanh) could not be read in full text; the stored corpora hold
  only the abstract and section list.

Implementation: M is applied on the host to the gate covariates (never to the
intercept) by :meth:`ModifiedSoftmax.transform`, which the model calls when it
builds the design -- for fitting and for ``predict``/``sample`` alike
(:func:`moestat.data.new_design` receives the same transform) -- so the
kernels see an ordinary softmax gate on the features M(x) and everything
(guarded Newton M-step, reference expert 0, standard errors) is the softmax
gate's (:class:`moestat.gating.softmax.Softmax`).

Checks on M (ValueError): a string must name a built-in map; a callable must
be element-wise, finite, strictly monotone (hence one-to-one) wherever it is
finite on a grid over [-6, 6], bounded (checked at +-1e6 and +-1e9) and not
affine (a straight-line fit on the grid leaves residuals); on the data, M must
be finite and map distinct covariate values to distinct values, column by
column.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .base import register
from .softmax import Softmax



def _expit(z):
    """The logistic sigmoid (scipy.special.expit, imported when first used: scipy costs ~0.2 s to import)."""
    from scipy.special import expit
    return expit(z)


BUILTIN: dict[str, Callable] = {"sigmoid": _expit, "tanh": np.tanh}

_GRID = np.linspace(-6.0, 6.0, 1201)


def _apply(fn: Callable, Z: np.ndarray, what: str) -> np.ndarray:
    try:
        out = np.asarray(fn(np.asarray(Z, dtype=np.float64)), dtype=np.float64)
    except Exception as exc:  # the user's callable failed: say which
        raise ValueError("modified_softmax: the transform M raised %s on %s: %s"
                         % (type(exc).__name__, what, exc)) from None
    if out.shape != Z.shape:
        raise ValueError("modified_softmax: the transform M must be element-wise (same shape in and out); "
                         "it mapped an array of shape %s to shape %s" % (Z.shape, out.shape))
    return out


def check_transform(fn: Callable, label: str) -> None:
    """Raise ValueError unless ``fn`` is element-wise, one-to-one, bounded and not affine (grid checks)."""
    z = _GRID[:, None]
    m = _apply(fn, z, "a grid over [-6, 6]")[:, 0]
    ok = np.isfinite(m)
    if ok.sum() < 3:
        raise ValueError("modified_softmax: the transform %s is not finite on a grid over [-6, 6]" % label)
    zf, mf = z[ok, 0], m[ok]
    dm = np.diff(mf)
    if not (np.all(dm > 0) or np.all(dm < 0)):
        i = int(np.argmin(np.abs(dm)) if np.any(dm == 0) else np.argmax(np.sign(dm) != np.sign(dm[0])))
        raise ValueError("modified_softmax: the transform %s must be one-to-one (strictly monotone), but it is "
                         "not monotone near x = %.3g; a non-injective M makes the gate unidentifiable"
                         % (label, zf[i]))
    A = np.column_stack([np.ones_like(zf), zf])
    coef, *_ = np.linalg.lstsq(A, mf, rcond=None)
    resid = np.max(np.abs(mf - A @ coef))
    if resid <= 1e-8 * (1.0 + np.ptp(mf)):
        raise ValueError("modified_softmax: the transform %s is affine (M(x) = %.4g + %.4g x on [-6, 6]); "
                         "an affine M gives back the standard softmax gate -- use gating='softmax' or a "
                         "non-affine M such as 'sigmoid' or 'tanh'" % (label, coef[0], coef[1]))
    far = _apply(fn, np.array([[-1e9], [-1e6], [1e6], [1e9]]), "large inputs")[:, 0]
    for a, b, side in ((far[1], far[0], "-inf"), (far[2], far[3], "+inf")):
        if np.isfinite(a) and (not np.isfinite(b) or abs(b - a) > 1e-3 * (1.0 + abs(a))):
            raise ValueError("modified_softmax: the transform %s must be bounded, but it keeps growing towards "
                             "%s (M(1e6) = %.4g, M(1e9) = %.4g in absolute value)"
                             % (label, side, abs(a), abs(b)))
    two = np.column_stack([zf[::50], zf[::-50]])
    both = _apply(fn, two, "a two-column array")
    single = np.column_stack([_apply(fn, two[:, j:j + 1], "one column")[:, 0] for j in range(2)])
    if not np.allclose(both, single, rtol=1e-12, atol=1e-12, equal_nan=True):
        raise ValueError("modified_softmax: the transform %s must act element-wise (each covariate on its own)"
                         % label)


@register
@dataclass(frozen=True, init=False)
class ModifiedSoftmax(Softmax):
    """Softmax gating on M(gate covariates): softmax_i(beta_i0 + beta_i1' M(x)).

    Parameters
    ----------
    transform : "sigmoid" (default), "tanh", or a callable
        The fixed element-wise map M applied to every gate covariate (not to
        the intercept).  A callable receives a float array (n, d) and must
        return an array of the same shape; it must be one-to-one, bounded and
        not affine (checked; ValueError otherwise).  Use a module-level
        function rather than a lambda if the model must be pickled (process
        pools, Dask workers).
    newton_steps : int
        Guarded Newton steps per EM iteration, as for :class:`Softmax`.

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> g = ms.gating.ModifiedSoftmax(transform="tanh")
    >>> g.transform(np.array([[0.0], [1.0]])).round(4).ravel().tolist()
    [0.0, 0.7616]
    """

    name = "modified_softmax"
    transforms_covariates = True
    fn: Any = "sigmoid"
    newton_steps: int = 1

    def __init__(self, transform: Any = "sigmoid", newton_steps: int = 1):
        if isinstance(transform, str):
            if transform not in BUILTIN:
                raise ValueError("modified_softmax: transform must be one of %s or a callable, got %r"
                                 % (", ".join(map(repr, BUILTIN)), transform))
        elif callable(transform):
            check_transform(transform, getattr(transform, "__name__", "M"))
        else:
            raise TypeError("modified_softmax: transform must be 'sigmoid', 'tanh' or a callable, got %s"
                            % type(transform).__name__)
        if isinstance(newton_steps, bool) or not isinstance(newton_steps, (int, np.integer)) or newton_steps < 1:
            raise ValueError("modified_softmax: newton_steps must be a positive integer, got %r" % (newton_steps,))
        object.__setattr__(self, "fn", transform)
        object.__setattr__(self, "newton_steps", int(newton_steps))

    @property
    def label(self) -> str:
        """Name of M used in term labels, e.g. ``sigmoid(x)``."""
        return self.fn if isinstance(self.fn, str) else getattr(self.fn, "__name__", "M")

    def transform(self, Z):
        """M applied to the raw gate covariates (n, d); checks that M is finite and one-to-one on the data."""
        Z = np.asarray(Z, dtype=np.float64)
        fn = BUILTIN[self.fn] if isinstance(self.fn, str) else self.fn
        out = _apply(fn, Z, "the gate covariates")
        if not np.all(np.isfinite(out)):
            r, c = np.argwhere(~np.isfinite(out))[0]
            raise ValueError("modified_softmax: M(x) is not finite for gate covariate %d at row %d (x = %g)"
                             % (c + 1, r, Z[r, c]))
        if not isinstance(self.fn, str):
            for j in range(Z.shape[1]):
                if np.unique(out[:, j]).size < np.unique(Z[:, j]).size:
                    raise ValueError("modified_softmax: M maps distinct values of gate covariate %d to the same "
                                     "value: M must be one-to-one on the data" % (j + 1))
        return out

    def describe(self, params, names):
        names = [n if n == "Intercept" else "%s(%s)" % (self.label, n) for n in names]
        return super().describe(params, names)
