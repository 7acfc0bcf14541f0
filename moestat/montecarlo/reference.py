"""Misspecified limits (e.g. Ǧ_2 of the DeepSeekMoE D_4 loss) from one very large sample.

``theory.md`` §2.3: the over-specified routed experts of the dense
normalized-sigmoid model converge to Ǧ_2 = argmin KL, not to the truth.  It
is approximated by the MLE of the fitted model on one large sample from the
truth (``reference: {"n": ..., "n_init": ..., "seed": ...}`` in the spec),
computed once per spec and kept in the results store, so every replicate of
every run is compared with the same limit.  Its own error (about n_ref^{-1/2})
is the floor below which the D_4 curve cannot go; choose n_ref well above the
largest n of the grid.

The fit is also kept in a per-user cache (``~/.cache/moestat/references``,
one JSON file per :func:`reference_key`; ``MOESTAT_REFERENCE_CACHE`` moves it,
``0`` turns it off), so a new output folder of the same spec reuses it instead
of fitting it again (the DeepSeekMoE Thm 4 reference takes minutes).
"""
from __future__ import annotations

import hashlib
import json
import os

import jax

from ..fitting import em, pipeline
from .._jax import to_device
from ..data.design import bucket_size
from . import protocols
from .setup import Experiment, params_to_json
from .spec import canonical_json


def reference_key(spec) -> str:
    """Identity of a spec's reference fit: its hashed fields without the losses (16 hex digits).

    Examples
    --------
    >>> from moestat.montecarlo import load_spec
    >>> from moestat.montecarlo.reference import reference_key
    >>> s, renamed = load_spec("deepseek-thm4"), load_spec("deepseek-thm4")     # two independent copies
    >>> renamed.raw["losses"][0]["name"] = "D4-renamed"
    >>> renamed.hash == s.hash, reference_key(renamed) == reference_key(s), len(reference_key(s))
    (False, True, 16)
    """
    fields = {k: v for k, v in spec.hashed_fields().items() if k != "losses"}
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:16]


def cache_dir() -> str | None:
    """The per-user folder of reference fits, or None when ``MOESTAT_REFERENCE_CACHE=0``."""
    setting = os.environ.get("MOESTAT_REFERENCE_CACHE", "")
    if setting in ("0", "false", "no"):
        return None
    return setting or os.path.join(os.path.expanduser("~"), ".cache", "moestat", "references")


def cached_reference(spec) -> dict | None:
    """The cached reference parameters of ``spec`` (JSON, as :func:`fit_reference` returns), or None."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        with open(os.path.join(folder, reference_key(spec) + ".json")) as fh:
            entry = json.load(fh)
    except (OSError, ValueError):  # absent, unreadable or a partial file: fit again
        return None
    return entry.get("params") if entry.get("key") == reference_key(spec) else None


def cache_reference(spec, params: dict, seconds: float) -> str | None:
    """Write a reference fit into the per-user cache (whole or not at all); returns the path or None."""
    folder = cache_dir()
    if folder is None:
        return None
    path = os.path.join(folder, reference_key(spec) + ".json")
    tmp = "%s.partial-%d" % (path, os.getpid())
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump({"key": reference_key(spec), "experiment": spec.name, "protocol": spec.protocol,
                       "reference": spec.raw.get("reference"), "seconds": round(float(seconds), 1),
                       "params": params}, fh)
        os.replace(tmp, path)
    except OSError:  # a read-only home: the store still holds the fit
        if os.path.exists(tmp):
            os.remove(tmp)
        return None
    return path


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
