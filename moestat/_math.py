"""Reductions over the short expert axis, unrolled.

XLA:CPU reduces a short *leading* axis 20-40x slower than an explicit chain of
element-wise adds/maxes (``engineering.md`` §7.8), and every (k, N) array in
moestat has the expert axis first.  These helpers unroll over the static k.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
#: 2 / (2j + 1): log(m) = 2 atanh(s) = s * sum_j (2 / (2j + 1)) s^(2j), s = (m - 1) / (m + 1)
_ATANH = tuple(2.0 / (2 * j + 1) for j in range(12))


def ksum(a):
    """Sum of a (k, ...) array over its first axis, unrolled."""
    out = a[0]
    for i in range(1, a.shape[0]):
        out = out + a[i]
    return out


def kmax(a):
    """Maximum of a (k, ...) array over its first axis, unrolled."""
    out = a[0]
    for i in range(1, a.shape[0]):
        out = jnp.maximum(out, a[i])
    return out


@jax.custom_jvp
def log_positive(x):
    """Natural log of float64 values >= 2**-1022 or 0, from element-wise arithmetic only.

    XLA:CPU's float64 ``log`` costs ~3.4 ns per element and does not vectorise
    with the surrounding fusion; this range reduction (exponent and mantissa
    from the bits, mantissa in [1/sqrt 2, sqrt 2)) plus a 12-term atanh series
    costs ~1.3 ns (measured, one core).  Error <= 3 ulp, absolute <= 2.3e-16
    (tests/test_moments.py against numpy.log).  0 gives -inf, NaN and inf give
    NaN; subnormals and negative numbers are outside its domain.  The kernels
    use it for sums of max-shifted exponentials, which lie in [1, k].
    """
    x = jnp.asarray(x)
    bits = lax.bitcast_convert_type(x, jnp.int64)
    e = (bits >> 52) - 1023
    m = lax.bitcast_convert_type((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000, x.dtype)   # in [1, 2)
    big = m > 1.4142135623730951
    m = jnp.where(big, 0.5 * m, m)
    e = (e + big.astype(e.dtype)).astype(x.dtype)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    poly = _ATANH[-1]
    for c in reversed(_ATANH[:-1]):
        poly = poly * z + c
    out = e * _LN2_HI + (s * poly + e * _LN2_LO) + 0.0 * (x - x)    # the last term turns NaN / inf into NaN
    return jnp.where(x == 0, -jnp.inf, out)


@log_positive.defjvp
def _log_positive_jvp(primals, tangents):
    # the bit manipulations have no derivative; d log x = dx / x (itself differentiable: Hessians of the
    # log-likelihood by autodiff, as in the Newton polish and the standard errors, stay exact)
    (x,), (t,) = primals, tangents
    return log_positive(x), t / x


def kshifted_exp(a):
    """(m, e, s) for a (k, ...) array: m the max over the first axis (0 where not finite), e = exp(a - m),
    s = sum of e; then log sum exp(a) = m + log s and softmax(a) = e / s."""
    m = kmax(a)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    e = jnp.exp(a - m[None])
    return m, e, ksum(e)


def klogsumexp(a):
    """log sum_i exp(a_i) over the first axis with a max shift; -inf rows stay -inf."""
    m, _, s = kshifted_exp(a)
    return m + log_positive(s)


def klog_softmax(a):
    """log softmax over the first axis (k, N)."""
    return a - klogsumexp(a)[None]


def inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index per column of probs (k, n) for uniforms u (n,) (host NumPy draws)."""
    c = np.cumsum(probs, axis=0)
    c = c / c[-1:]
    return np.minimum((c < u[None]).sum(0), probs.shape[0] - 1)


def split_intercept(coef, has_intercept: bool):
    """(intercepts (k,), slopes (k, p - 1)) of a host coefficient matrix (k, p) whose column 0 is the
    intercept; without an intercept: zeros and the whole matrix."""
    coef = np.asarray(coef, dtype=np.float64)
    if has_intercept:
        return coef[:, 0], coef[:, 1:]
    return np.zeros(coef.shape[0]), coef


def wsum(w, a):
    """Weighted sum over the data axis: sum_n w_n a_n, with a = (..., N)."""
    return jnp.dot(a, w)
