"""Gaussian experts with a polynomial mean: y | x, z=i ~ N(beta_i' phi_d(x), sigma_i^2).

phi_d(x) holds every monomial of total degree <= d in the covariates (the
intercept being the degree-0 term), so the mean is a polynomial of order d
(Mendes & Jiang 2012, ``theory.md`` §5).  The mean is linear in beta, so the
M-step is the closed-form weighted least squares and ML variance of the linear
family (:func:`moestat.experts.gaussian.gaussian_m_step`) on the polynomial
features; the features are built once, on the host, by :meth:`transform_design`.

Term names follow R/patsy: ``x^2`` for a power, ``x1:x2`` for a product,
``x1^2:x2`` for both.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from itertools import combinations_with_replacement

import numpy as np

from .base import register
from .gaussian import GaussianLinear


def monomial_powers(n_vars: int, degree: int) -> list[tuple[int, ...]]:
    """Exponent tuples of the monomials of total degree 2..degree in ``n_vars`` variables, graded order."""
    out = []
    for deg in range(2, degree + 1):
        for combo in combinations_with_replacement(range(n_vars), deg):
            out.append(tuple(combo.count(j) for j in range(n_vars)))
    return out


def monomial_name(powers: tuple[int, ...], names: list[str]) -> str:
    """``x1^2:x2`` for powers (2, 1) on names (x1, x2)."""
    parts = [nm if e == 1 else "%s^%d" % (nm, e) for nm, e in zip(names, powers) if e > 0]
    return ":".join(parts)


@register
@dataclass(frozen=True)
class GaussianPolynomial(GaussianLinear):
    """Gaussian experts whose mean is a polynomial of order ``degree`` in the expert covariates.

    Parameters
    ----------
    degree : int
        Total degree of the mean polynomial (1 gives the linear family).

    Examples
    --------
    >>> import numpy as np, moestat as ms
    >>> x = np.linspace(-1, 1, 400); y = np.where(x > 0, x**2, -x) + 0.01 * np.sin(40 * x)
    >>> res = ms.GaussianMoE(2, expert=ms.experts.GaussianPolynomial(degree=2)).fit(x, y, n_init=2)
    >>> list(res.params_frame().query("expert == 1")["term"])
    ['Intercept', 'x', 'x^2', 'sigma']
    """

    name = "polynomial"
    degree: int = 2

    def __post_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, numbers.Integral) or self.degree < 1:
            raise ValueError("degree must be an integer >= 1, got %r" % (self.degree,))

    def transform_design(self, X, intercept):
        X = np.asarray(X, dtype=np.float64)
        raw = X[:, 1:] if intercept else X
        cols = [np.prod(raw ** np.asarray(pw)[None, :], axis=1) for pw in monomial_powers(raw.shape[1], self.degree)]
        return np.column_stack([X] + cols) if cols else X

    def term_names(self, names: list[str], width: int) -> list[str]:
        """Names of the ``width`` polynomial features built from the design names ``names``."""
        for intercept in ((True, False) if names and names[0] == "Intercept" else (False,)):
            raw = names[1:] if intercept else names
            terms = list(names) + [monomial_name(pw, raw) for pw in monomial_powers(len(raw), self.degree)]
            if len(terms) == width:
                return terms
        raise ValueError("the polynomial expert has %d coefficients, which does not match design terms %s"
                         % (width, names))

    def describe(self, params, names):
        return super().describe(params, self.term_names(list(names), np.shape(params.coef)[1]))
