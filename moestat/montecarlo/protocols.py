"""Initialisation protocols: the papers' near-truth starts and random-restart MLE.

``paper`` (``theory.md`` §3.5, §4.4, §6.2; meteoritsSim ``ParamNMoE.initParam(nearTrue=TRUE)``):
each fitted expert i is assigned a true expert s_i at random such that every
true expert is covered and the reference (fitted expert 0) goes to the true
reference (expert 0); then, per fitted expert and per parameter block, *one*
scalar draw is added to the whole block:

* gate coefficients (free entries only: the softmax reference row stays 0):
  + N(0, (a_g n^{b_g})^2),   default a_g = 0.005, b_g = -0.083
* expert mean coefficients: + N(0, (a_e n^{b_e})^2),   0.05, -0.083
* variances: + |N(0, (a_v n^{b_v})^2)|,   0.005, -0.25.

The Gaussian (GLLiM) gate of AISTATS'24 (``theory.md`` §4.4) gets the same
treatment: masses pi*_j split equally among the copies of true atom j,
centres + one gate draw per atom, covariance diagonals + one variance draw.

With ``variance_start: "sd"`` the variance starts from the true *standard
deviation* plus the noise -- what the authors' R code does (it passes the
sampler's standard deviations as ``sigmak_0``).  ``n_tries`` such starts are
run and the best log-likelihood kept (the R code's ``n_tries``).

``mle``: ``n_init`` data-driven starts (k-means and random-centre partitions
of [x, y], :mod:`moestat.fitting.starts`), EM from each, best non-degenerate
log-likelihood -- the estimator the theory is about.

All draws come from NumPy streams keyed by (seed, n, replicate), separate
from the data stream.
"""
from __future__ import annotations

import jax
import numpy as np

from ..fitting import em, pipeline
from .._jax import to_device

GROUP_FIELDS = ("sigma2",)  # leaves treated as variances


def init_stream(seed: int, n: int, rep: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(n), int(rep), 1])


def assignment(k: int, kstar: int, rng: np.random.Generator) -> np.ndarray:
    """Random map fitted -> true experts covering all true experts, with 0 -> 0 (reference)."""
    if k < kstar:
        raise ValueError("the fitted model has fewer experts (%d) than the truth (%d)" % (k, kstar))
    while True:
        s = rng.integers(0, kstar, size=k)
        s[0] = 0
        if np.unique(s).size == kstar:
            return s


def _blocks_of(params):
    """Expert parameter PyTrees per composite block (a plain family is one block)."""
    return list(params.blocks) if hasattr(params, "blocks") else [params]


def near_truth_start(exp, n: int, rng: np.random.Generator) -> em.MoEParams:
    """One near-truth start for the fitted model (see the module docstring)."""
    st = exp.settings
    sd_g = st["gate_sd"][0] * n ** st["gate_sd"][1]
    sd_e = st["expert_sd"][0] * n ** st["expert_sd"][1]
    sd_v = st["variance_sd"][0] * n ** st["variance_sd"][1]
    as_sd = st.get("variance_start", "variance") == "sd"
    true = exp.truth.canonical(exp.true_params)
    base = exp.base()
    t_blocks, f_blocks = _blocks_of(true.expert), _blocks_of(base.expert)
    if len(t_blocks) != len(f_blocks):
        raise ValueError("the paper protocol needs the same expert blocks in the truth and the fitted model")
    # assignment per expert block (composite models); global true-row indices for the gate
    s_local, s_glob, off = [], [], 0
    for tb, fb in zip(t_blocks, f_blocks):
        kt, kf = _rows(tb), _rows(fb)
        a = assignment(kf, kt, rng)
        s_local.append(a)
        s_glob.append(off + a)
        off += kt
    s = np.concatenate(s_glob)
    gate = _gate_start(exp.fit.gate, true.gate, base.gate, s, s_local, rng, sd_g, sd_v)
    free_blocks = _blocks_of(exp.fit.expert.free_mask(base.expert))
    new_blocks = [_expert_block(tb, a, rng, sd_e, sd_v, as_sd, fb)
                  for tb, a, fb in zip(t_blocks, s_local, free_blocks)]
    expert = type(base.expert)(blocks=tuple(new_blocks)) if hasattr(base.expert, "blocks") else new_blocks[0]
    out = em.MoEParams(gate=gate, expert=expert)
    return jax.tree_util.tree_map(lambda a, b: np.asarray(a, dtype=np.float64).reshape(np.shape(b)), out, base)


def _rows_start(true_p, free, s, rng, sd):
    """Rows of the assigned true experts plus one scalar N(0, sd^2) per row, on the free entries only."""
    return jax.tree_util.tree_map(
        lambda t, f: np.asarray(t)[s] + rng.normal(0.0, sd, size=(s.size,) + (1,) * (np.ndim(t) - 1))
        * np.asarray(f), true_p, free)


def _gate_start(gate, true_g, base_g, s, s_local, rng, sd, sd_v):
    """Near-truth gate parameters for the fitted experts assigned by ``s`` (``s_local`` per expert block)."""
    if hasattr(base_g, "shared") and hasattr(base_g, "routed"):
        # DeepSeekMoE: constant shared weights split equally among the copies of a true shared expert,
        # the routed gate as any gate on the routed block
        a = s_local[0]
        omega = np.asarray(true_g.shared, dtype=np.float64)[a] / np.bincount(a)[a]
        routed = _rows_start(true_g.routed, gate.routed.free_mask(base_g.routed), s_local[1], rng, sd)
        return base_g._replace(shared=omega / omega.sum(), routed=routed)
    if getattr(gate, "joint", False) and hasattr(true_g, "cov"):
        return _gaussian_gate_start(true_g, s, rng, sd, sd_v)
    if getattr(gate, "joint", False):
        raise ValueError("the paper protocol is defined for conditional gates (softmax, normalized sigmoid, "
                         "top-K, shared+routed); use --protocol mle for the %r gate" % gate.name)
    return _rows_start(true_g, gate.free_mask(base_g), s, rng, sd)


def _gaussian_gate_start(true_g, s, rng, sd, sd_v):
    """Gaussian (GLLiM) gate, as the AISTATS'24 code (``theory.md`` §4.4): pi*_j split equally among the
    copies of true atom j, centres + one N(0, sd^2) draw per atom, covariance diagonals + one |N(0, sd_v^2)|."""
    w = np.asarray(true_g.weight, dtype=np.float64)
    mean = np.asarray(true_g.mean, dtype=np.float64)[s]
    cov = np.asarray(true_g.cov, dtype=np.float64)[s].copy()
    d = mean.shape[1]
    mean = mean + rng.normal(0.0, sd, size=(s.size, 1))
    cov = cov + np.abs(rng.normal(0.0, sd_v, size=(s.size, 1, 1))) * np.eye(d)[None]
    weight = w[s] / np.bincount(s, minlength=w.size)[s]
    return type(true_g)(weight=weight / weight.sum(), mean=mean, cov=cov)


def _rows(params) -> int:
    return int(np.shape(jax.tree_util.tree_leaves(params)[0])[0])


def _expert_block(tb, s, rng, sd_e, sd_v, as_sd, free):
    """Rows ``s`` of one block of true expert parameters plus the protocol's noise (free entries only)."""
    fields = {}
    for name in tb._fields:
        t = np.asarray(getattr(tb, name), dtype=np.float64)[s]
        f = np.asarray(getattr(free, name), dtype=np.float64)
        shape = (s.size,) + (1,) * (t.ndim - 1)
        if name in GROUP_FIELDS:
            start = np.sqrt(t) if as_sd else t
            fields[name] = start + np.abs(rng.normal(0.0, sd_v, size=shape))
        else:
            fields[name] = t + rng.normal(0.0, sd_e, size=shape) * f
    return type(tb)(**fields)


def paper_starts(exp, n: int, rep: int) -> em.MoEParams:
    """``n_tries`` near-truth starts stacked on a leading axis."""
    rng = np.random.default_rng(init_stream(exp.spec.seed, n, rep))
    starts = [near_truth_start(exp, n, rng) for _ in range(int(exp.settings.get("n_tries", 1)))]
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *starts)


def mle_starts(exp, n: int, rep: int, x, y, data) -> em.MoEParams:
    """``n_init`` data-driven starts (k-means / random centres), made as ``fit`` makes them (:mod:`moestat.fitting.pipeline`)."""
    X, _ = exp.fit.designs(x)
    seed = int(init_stream(exp.spec.seed, n, rep).generate_state(1)[0] % (2**31 - 1))
    R = pipeline.start_responsibilities(exp.fit.gate, exp.fit.expert, X, np.asarray(y), np.ones(X.shape[0]),
                                        exp.fit.k, int(exp.settings["n_init"]), seed)
    R = pipeline.pad_responsibilities(R, data.w.shape[0])
    base = jax.tree_util.tree_map(to_device, exp.base())
    out = em.params_from_resp(to_device(R), base, data, exp.ctl, em.no_fixed(base), pipeline.start_config(exp.cfg),
                              batch_size=1)
    return jax.tree_util.tree_map(np.asarray, out)


def starts(exp, n: int, rep: int, x, y, data) -> em.MoEParams:
    """Starting values of replicate ``rep`` of size ``n`` under the spec's protocol."""
    if exp.spec.protocol == "paper":
        return paper_starts(exp, n, rep)
    return mle_starts(exp, n, rep, x, y, data)
