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


def near_truth_start(exp, n: int, rng: np.random.Generator) -> em.MoEParams:
    """One near-truth start for the fitted model (see the module docstring)."""
    st = exp.settings
    sd_g = st["gate_sd"][0] * n ** st["gate_sd"][1]
    sd_e = st["expert_sd"][0] * n ** st["expert_sd"][1]
    sd_v = st["variance_sd"][0] * n ** st["variance_sd"][1]
    as_sd = st.get("variance_start", "variance") == "sd"
    true, base, t_blocks, f_blocks, free_blocks = _paper_layout(exp)
    # assignment per expert block (composite models); global true-row indices for the gate
    s_local, s_glob, off = [], [], 0
    for (_, tb), (_, fb) in zip(t_blocks, f_blocks):
        kt, kf = _rows(tb), _rows(fb)
        a = assignment(kf, kt, rng)
        s_local.append(a)
        s_glob.append(off + a)
        off += kt
    s = np.concatenate(s_glob)
    gate = exp.fit.gate.near_truth(true.gate, base.gate, s, s_local, rng, sd_g, sd_v)
    new_blocks = [_expert_block(tb, a, rng, sd_e, sd_v, as_sd, fb, fam.variance_fields)
                  for (fam, tb), a, (_, fb) in zip(t_blocks, s_local, free_blocks)]
    expert = exp.fit.expert.from_parts(new_blocks)
    out = em.MoEParams(gate=gate, expert=expert)
    return jax.tree_util.tree_map(lambda a, b: np.asarray(a, dtype=np.float64).reshape(np.shape(b)), out, base)


def _paper_layout(exp):
    """(canonical truth, fitted base, truth's and fit's expert blocks, free-entry blocks) as host arrays.

    The same for every start of an experiment: computed once per process (``exp.extras``).
    """
    if "paper_layout" not in exp.extras:
        host = lambda t: jax.tree_util.tree_map(np.asarray, t)  # noqa: E731
        true, base = host(exp.truth.canonical(exp.true_params)), host(exp.base())
        t_blocks, f_blocks = exp.truth.expert.parts(true.expert), exp.fit.expert.parts(base.expert)
        if len(t_blocks) != len(f_blocks):
            raise ValueError("the paper protocol needs the same expert blocks in the truth and the fitted model")
        free_blocks = exp.fit.expert.parts(host(exp.fit.expert.free_mask(base.expert)))
        exp.extras["paper_layout"] = (true, base, t_blocks, f_blocks, free_blocks)
    return exp.extras["paper_layout"]


def _rows(params) -> int:
    return int(np.shape(jax.tree_util.tree_leaves(params)[0])[0])


def _expert_block(tb, s, rng, sd_e, sd_v, as_sd, free, variances):
    """Rows ``s`` of one block of true expert parameters plus the protocol's noise (free entries only).

    ``variances``: the fields holding variances (:attr:`moestat.experts.base.Expert.variance_fields`).
    """
    fields = {}
    for name, t, f in zip(tb._fields, tb, free):
        t = np.asarray(t, dtype=np.float64)[s]
        f = np.asarray(f, dtype=np.float64)
        shape = (s.size,) + (1,) * (t.ndim - 1)
        if name in variances:
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


def mle_responsibilities(exp, n: int, rep: int, x, y, data):
    """The starting partitions of :func:`mle_starts` as padded responsibilities (S, k, N) on the device, and
    the base parameters they start from."""
    X, _ = exp.fit.designs(x)
    seed = int(init_stream(exp.spec.seed, n, rep).generate_state(1)[0] % (2**31 - 1))
    R = pipeline.start_responsibilities(exp.fit.gate, exp.fit.expert, X, np.asarray(y), np.ones(X.shape[0]),
                                        exp.fit.k, int(exp.settings["n_init"]), seed)
    R = pipeline.pad_responsibilities(R, data.w.shape[0])
    return to_device(R), jax.tree_util.tree_map(to_device, exp.base())


def mle_starts(exp, n: int, rep: int, x, y, data) -> em.MoEParams:
    """``n_init`` data-driven starts (k-means / random centres), made as ``fit`` makes them (:mod:`moestat.fitting.pipeline`)."""
    R, base = mle_responsibilities(exp, n, rep, x, y, data)
    out = em.params_from_resp(R, base, data, exp.ctl, em.no_fixed(base), pipeline.start_config(exp.cfg),
                              batch_size=1)
    return jax.tree_util.tree_map(np.asarray, out)


def starts(exp, n: int, rep: int, x, y, data) -> em.MoEParams:
    """Starting values of replicate ``rep`` of size ``n`` under the spec's protocol."""
    if exp.spec.protocol == "paper":
        return paper_starts(exp, n, rep)
    return mle_starts(exp, n, rep, x, y, data)
