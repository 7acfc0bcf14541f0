"""Reductions over the short expert axis, unrolled.

XLA:CPU reduces a short *leading* axis 20-40x slower than an explicit chain of
element-wise adds/maxes (``engineering.md`` §7.8), and every (k, N) array in
moestat has the expert axis first.  These helpers unroll over the static k.
"""
from __future__ import annotations

import jax.numpy as jnp


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


def klogsumexp(a):
    """log sum_i exp(a_i) over the first axis with a max shift; -inf rows stay -inf."""
    m = kmax(a)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    s = ksum(jnp.exp(a - m_safe[None]))
    return m_safe + jnp.log(s)


def klog_softmax(a):
    """log softmax over the first axis (k, N)."""
    return a - klogsumexp(a)[None]


def wsum(w, a):
    """Weighted sum over the data axis: sum_n w_n a_n, with a = (..., N)."""
    return jnp.dot(a, w)
