"""Misspecified limits (e.g. Ǧ_2 of the DeepSeekMoE D_4 loss) from one very large sample.

``theory.md`` §2.3: the over-specified routed experts of the dense
normalized-sigmoid model converge to Ǧ_2 = argmin KL, not to the truth.  It
is approximated by the MLE of the fitted model on one large sample from the
truth (``reference: {"n": ..., "n_init": ..., "seed": ...}`` in the spec),
computed once per spec and kept in the results store, so every replicate of
every run is compared with the same limit.  Its own error (about n_ref^{-1/2})
is the floor below which the D_4 curve cannot go; choose n_ref well above the
largest n of the grid.
"""
from __future__ import annotations

import json

import jax

from ..fitting import em, pipeline
from .._jax import to_device
from ..data.design import bucket_size
from . import protocols
from .setup import Experiment, params_to_json


def fit_reference(spec, ref: dict) -> dict:
    """Canonical fitted-model parameters (JSON) of the best start on one sample of ``ref["n"]`` points.

    The starts follow the spec's protocol (near-truth starts for "paper", so the
    limit is the one that the replicates' EM runs approach; random restarts for
    "mle"), ``ref["n_init"]`` of them, run to ``ref["tol"]``.
    """
    from .worker import key_seed, replicate_data, replicate_info

    raw = json.loads(json.dumps(spec.raw))
    key = "n_tries" if spec.protocol == "paper" else "n_init"
    prot = dict(raw.get("protocols", {}).get(spec.protocol, {}))
    prot.update({key: int(ref.get("n_init", 10)), "tol": float(ref.get("tol", 1e-10)),
                 "max_iter": int(ref.get("max_iter", 5000))})
    raw.setdefault("protocols", {})[spec.protocol] = prot
    raw.pop("reference", None)
    exp = Experiment.build(type(spec)(raw))
    n, rep = int(ref["n"]), int(ref.get("replicate", 10**6))
    x, y, data = replicate_data(exp, n, rep, N=bucket_size(n))
    p0 = jax.tree_util.tree_map(to_device, protocols.starts(exp, n, rep, x, y, data))
    fixed = em.no_fixed(jax.tree_util.tree_map(lambda a: a[0], p0))
    est = pipeline.estimate(p0, data, exp.ctl, fixed, exp.cfg, replicate_info(exp, n), seed=key_seed(exp, n, rep),
                            polish_fit=False)
    return params_to_json(exp.fit.canonical(est.fit.params))
