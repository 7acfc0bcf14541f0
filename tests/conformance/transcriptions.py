"""NumPy/scipy transcriptions of every gate and expert formula, written from the papers, not from moestat.

Nothing here imports moestat.  Each function reads a family's parameters by
their documented field names (``params.coef``, ``params.sigma2``, ...) and
evaluates the published formula on raw covariates ``Z`` / ``X`` of shape
(n, d); moestat's side builds its own design matrices.  Sources are
``/work/shared/theory.md`` (sections in brackets) and the papers it cites.

Gates return (k, n) log weights log g_i(z_n); -inf marks an inactive expert
(sparse routers).  Experts return (k, n) log densities log f_i(y_n | x_n) and
(k, n) conditional means (class probabilities (k, C, n)).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

LOG_HALF = math.log(0.5)


# ---------------------------------------------------------------------------------------------- helpers

def design(Z):
    """[1, z] rows: (1 + d, n) from raw covariates (n, d)."""
    Z = np.asarray(Z, dtype=np.float64).reshape(np.shape(Z)[0], -1)
    return np.vstack([np.ones(Z.shape[0]), Z.T])


def log_softmax_over(s, active=None):
    """log of exp(s_i) / sum_{j active} exp(s_j) along axis 0; -inf outside ``active``."""
    s = np.asarray(s, dtype=np.float64)
    if active is None:
        return s - special.logsumexp(s, axis=0)[None]
    masked = np.where(active, s, -np.inf)
    return np.where(active, s - special.logsumexp(masked, axis=0)[None], -np.inf)


def sigmoid(u):
    """sigma(u) = 1 / (1 + e^-u), written as (1 + tanh(u / 2)) / 2 (no overflow)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, dtype=np.float64)))


def log_sigmoid(u):
    """log sigma(u) = -log(1 + e^-u)."""
    return -np.logaddexp(0.0, -np.asarray(u, dtype=np.float64))


def top_k_active(v, K):
    """(k, n) booleans: the K largest entries of each column; ties go to the lower expert index."""
    k, n = v.shape
    order = np.argsort(-v, axis=0, kind="stable")     # stable: equal scores keep index order
    active = np.zeros((k, n), dtype=bool)
    np.put_along_axis(active, order[:K], True, axis=0)
    return active


# ---------------------------------------------------------------------------------------------- gates

def softmax_gate(params, Z):
    """Softmax gate g_i = exp(b_i0 + b_i1'z) / sum_j exp(b_j0 + b_j1'z)  [theory.md §0.1, §3.2]."""
    return log_softmax_over(np.asarray(params.coef) @ design(Z))


M_MAPS = {"sigmoid": sigmoid, "tanh": np.tanh}


def modified_softmax_gate(params, Z, transform):
    """Modified softmax softmax_i(b_i0 + b_i1' M(z)), M element-wise sigmoid or tanh  [theory.md §1.3]."""
    return log_softmax_over(np.asarray(params.coef) @ design(M_MAPS[transform](np.asarray(Z, np.float64))))


def normalized_sigmoid_gate(params, Z):
    """sigma(b_i'z) / sum_j sigma(b_j'z)  [arXiv:2505.10860 eq. 8; theory.md §2.1]."""
    ls = log_sigmoid(np.asarray(params.coef) @ design(Z))
    return ls - special.logsumexp(ls, axis=0)[None]


def topk_gate(params, Z, K, select="scores"):
    """softmax over the K largest scores, -inf elsewhere  [arXiv:2505.10860 App. F eq. 45; theory.md §2.1].

    ``select="slopes"``: experts ranked on b_i1'z, the intercept added afterwards (the paper's
    TopK(v, K; u)); ``"scores"``: ranked on the whole score b_i0 + b_i1'z.
    """
    coef = np.asarray(params.coef)
    X = design(Z)
    s = coef @ X
    v = s if select == "scores" else coef[:, 1:] @ X[1:]
    return log_softmax_over(s, top_k_active(v, K))


def temperature_gate(params, Z):
    """softmax_i((b_i0 + b_i1'z) / tau), tau = exp(log_temp)  [arXiv:2401.13875; theory.md §4.2]."""
    tau = math.exp(float(np.asarray(params.log_temp)))
    return log_softmax_over(np.asarray(params.coef) @ design(Z) / tau)


def activation_gate(params, Z, activation="sigmoid", min_temperature=1e-6):
    """Activation dense-to-sparse gate softmax_i(act(b_i1'z) / tau + b_i0)  [theory.md §4.2].

    tau is read as max(exp(log_temp), min_temperature) (the gate's documented floor).
    """
    coef = np.asarray(params.coef)
    tau = max(math.exp(float(np.asarray(params.log_temp))), min_temperature)
    Zt = np.asarray(Z, dtype=np.float64).reshape(np.shape(Z)[0], -1)
    s = M_MAPS[activation](coef[:, 1:] @ Zt.T) / tau + coef[:, :1]
    return log_softmax_over(s)


def gaussian_gate_joint(params, Z):
    """(k, n) log pi_i + log N(z | c_i, Gamma_i): the joint terms of the GLLiM gate  [theory.md §4.4]."""
    Zt = np.asarray(Z, dtype=np.float64).reshape(np.shape(Z)[0], -1)
    pi, c, G = (np.asarray(a, dtype=np.float64) for a in (params.weight, params.mean, params.cov))
    return np.stack([math.log(pi[i]) + stats.multivariate_normal(c[i], G[i]).logpdf(Zt).reshape(-1)
                     for i in range(pi.shape[0])])


def gaussian_gate(params, Z):
    """pi_i N(z | c_i, Gamma_i) / sum_j pi_j N(z | c_j, Gamma_j)  [theory.md §4.4]."""
    return log_softmax_over(gaussian_gate_joint(params, Z))


def shared_routed_gate(params, Z, routed):
    """[omega / 2, g_routed(z) / 2]: shared block with constant weights, routed block  [theory.md §2.1 eq. 1]."""
    n = np.shape(Z)[0]
    om = np.asarray(params.shared, dtype=np.float64)
    shared = np.repeat((LOG_HALF + np.log(om))[:, None], n, axis=1)
    return np.vstack([shared, LOG_HALF + routed(params.routed, Z)])


def prototyping_gate(params, Z, groups, combine="softmax"):
    """M6-T expert prototyping: top-1 of each of G contiguous groups, winners combined  [arXiv:2105.15082 §3].

    combine="softmax": exp(s_i) / sum over the winners; "average": 1/G for each winner.
    """
    s = np.asarray(params.coef) @ design(Z)
    k, n = s.shape
    m = k // groups
    active = np.zeros((k, n), dtype=bool)
    for g in range(groups):
        win = g * m + np.argmax(s[g * m:(g + 1) * m], axis=0)    # argmax: first maximum (lower index)
        active[win, np.arange(n)] = True
    if combine == "average":
        return np.where(active, -math.log(groups), -np.inf)
    return log_softmax_over(s, active)


def tsallis(p, q):
    """Tsallis entropy (1 - sum_i p_i^q) / (q - 1) of each column; Shannon -sum p log p at q = 1."""
    if q == 1.0:
        return -np.sum(special.xlogy(p, p), axis=0)
    return (1.0 - np.sum(p ** q, axis=0)) / (q - 1.0)


def entropy_switched_gate(params, Z, K, threshold, q):
    """Top-K softmax where the dense softmax's Tsallis entropy is below threshold, dense softmax elsewhere.

    [DynMoLE, arXiv:2504.00661: the router's Tsallis entropy decides the routing.]
    """
    s = np.asarray(params.coef) @ design(Z)
    p = np.exp(log_softmax_over(s))
    sparse = tsallis(p, q) < threshold
    active = top_k_active(s, K) | ~sparse[None]
    return log_softmax_over(s, active)


# ---------------------------------------------------------------------------------------------- experts

def linear_mean(params, X):
    return np.asarray(params.coef) @ design(X)


def gaussian_log_density(mean, sigma2, y):
    """(k, n) scipy.stats.norm.logpdf(y | mean_i, sd_i)."""
    sd = np.sqrt(np.asarray(sigma2, dtype=np.float64))[:, None]
    return stats.norm.logpdf(np.asarray(y)[None], loc=mean, scale=sd)


def polynomial_features(X, degree):
    """[1, x, then every monomial of total degree 2..degree]: graded, and within a degree by decreasing
    powers of the earlier covariates (x1^2, x1 x2, x2^2, x1^3, x1^2 x2, ...), the order R/patsy print."""
    X = np.asarray(X, dtype=np.float64).reshape(np.shape(X)[0], -1)
    d = X.shape[1]
    cols = [np.ones(X.shape[0])] + [X[:, j] for j in range(d)]

    def powers(total, nvars):
        if nvars == 1:
            yield (total,)
            return
        for first in range(total, -1, -1):
            for rest in powers(total - first, nvars - 1):
                yield (first,) + rest

    for deg in range(2, degree + 1):
        for pw in powers(deg, d):
            cols.append(np.prod([X[:, j] ** e for j, e in enumerate(pw)], axis=0))
    return np.vstack(cols)


def polynomial_mean(params, X, degree):
    return np.asarray(params.coef) @ polynomial_features(X, degree)


def gelu(u):
    """GELU(u) = u Phi(u) with the standard normal CDF (exact form)."""
    return u * stats.norm.cdf(u)


NEURON_ACTS = {"relu": lambda u: np.maximum(u, 0.0), "gelu": gelu}


def neuron_mean(params, X, act, bias=True):
    """eta2 act(eta1'x + eta0); eta0 = 0 without bias  [theory.md §2.5, h(x) = kappa2 act(kappa1 x + kappa0)]."""
    coef = np.array(params.coef, dtype=np.float64)
    if not bias:
        coef[:, 0] = 0.0
    return np.asarray(params.scale)[:, None] * NEURON_ACTS[act](coef @ design(X))


def poisson_mean(params, X, offset):
    return np.exp(np.asarray(params.coef) @ design(X) + np.asarray(offset)[None])


def poisson_log_density(params, X, y, offset):
    return stats.poisson.logpmf(np.asarray(y)[None], poisson_mean(params, X, offset))


def _log_p_q(eta, link):
    """log p and log(1 - p) for p = link^-1(eta), each written so that it keeps its precision in the tails."""
    if link == "logit":            # p = 1 / (1 + e^-eta)
        return log_sigmoid(eta), log_sigmoid(-eta)
    if link == "probit":           # p = Phi(eta)
        return special.log_ndtr(eta), special.log_ndtr(-eta)
    u = np.exp(eta)                # cloglog: p = 1 - exp(-e^eta)
    return np.log(-np.expm1(-u)), -u


def binomial_mean(params, X, link):
    """Success probabilities link^-1(b'x)."""
    return np.exp(_log_p_q(np.asarray(params.coef) @ design(X), link)[0])


def binomial_log_density(params, X, y, trials, link):
    """log C(t, y) + y log p + (t - y) log(1 - p), the binomial pmf with stable logs of p and 1 - p.

    scipy.stats.binom.logpmf gives the same values where p is not within ~1e-8 of 0 or 1 (checked in the
    tests); it computes log(1 - p) from a rounded p and so loses precision in the tails.
    """
    lp, lq = _log_p_q(np.asarray(params.coef) @ design(X), link)
    y, t = np.asarray(y, dtype=np.float64)[None], np.asarray(trials, dtype=np.float64)[None]
    logc = special.gammaln(t + 1.0) - special.gammaln(y + 1.0) - special.gammaln(t - y + 1.0)
    # 0 log 0 = 0: a row with y = 0 (or y = t) has no success (failure) term
    return logc + np.where(y > 0, y * lp, 0.0) + np.where(t - y > 0, (t - y) * lq, 0.0)


def binomial_log_density_scipy(params, X, y, trials, link):
    """scipy.stats.binom.logpmf(y; t, p): the library reference (accurate away from p = 0, 1)."""
    p = binomial_mean(params, X, link)
    return stats.binom.logpmf(np.asarray(y)[None], np.asarray(trials)[None], p)


def multinomial_mean(params, X):
    """(k, C, n) class probabilities softmax_c(A_ic x) of each expert  [theory.md §1.2]."""
    A = np.asarray(params.coef, dtype=np.float64)                          # (k, C, p)
    eta = np.einsum("kcp,pn->kcn", A, design(X))
    return np.exp(eta - special.logsumexp(eta, axis=1, keepdims=True))


def multinomial_log_density(params, X, y):
    """(k, n) scipy.stats.multinomial.logpmf(one-hot(y); 1, p_i(x))."""
    P = multinomial_mean(params, X)
    k, C, n = P.shape
    onehot = np.eye(C)[np.asarray(y, dtype=int)]                           # (n, C)
    return np.stack([stats.multinomial.logpmf(onehot, 1, P[i].T) for i in range(k)])
