"""Experiment specs: one JSON file per published experiment.

A spec names the true model and its parameters, the covariate law, the
fitted model, the initialisation protocols, the n grids (full and quick),
replicates, the losses with their predicted and published slopes, and a root
seed.  The shipped specs live in ``moestat/simulations/*.json`` (package data,
so ``moestat reproduce --list`` works after ``pip install``); any other JSON
file with the same fields can be given by path.

Fields (see ``simulations/README.md`` for a commented example)::

    name, title, source                     identification and citation
    truth: {gate, expert, k, params, intercept, gate_intercept}
           or {target: {name, **settings}}  a named non-MoE truth (:mod:`moestat.montecarlo.targets`)
    x: {law: grid|uniform|normal, low, high, d, ...}
    fit: {gate, expert, k, tol, max_iter, min_variance, ...}
         k: an integer, or {rule: "balance", gamma, s, scale, min, max}: a function of n
    protocol: "paper" | "mle"                default protocol
    protocols: {paper: {gate_sd, expert_sd, variance_sd, variance_start, tol, ...},
                mle: {n_init, tol, max_iter}}   either may set accelerate: true (SQUAREM EM)
    grid: {full: [...], quick: [...]}        unions of {linspace|geomspace: [lo, hi, num]} or {values: [...]}
    replicates: {full: 40, quick: 12}
    seed: int
    losses: [{name, kind, predicted, published, options}]
    reference: {...}                         a misspecified limit (D_4) computed once per run
    variants: {key: {title, truth, fit, losses, protocols, param_rates}}   optional: models compared on
                                             the same data streams (see :meth:`Spec.variants`)
    param_rates: [{group, blocks, cell_size, atoms, predicted, theory_row, note}]
                                             optional: the predicted slope of each per-parameter error
                                             (:mod:`moestat.montecarlo.rates`)

The *hash* of a spec covers everything that changes a stored result (truth,
covariates, fitted model, protocol and its settings, losses, seed) and not the
grid or the number of replicates: those only choose which (n, replicate)
rows are needed, so a quick run's rows are reused by the full run.  Nor does
it cover the documentation of what a run should show: ``note``,
``published_source``, the predicted and published slopes and ``param_rates``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

HARNESS_VERSION = 1
PROTOCOLS = ("paper", "mle")
REQUIRED = ("name", "truth", "fit", "grid", "replicates", "losses")
#: most sample sizes one grid part may ask for
MAX_GRID = 10_000


def spec_dir():
    """The folder of the shipped specs (inside the installed package)."""
    return resources.files("moestat") / "simulations"


def available_specs() -> dict[str, Any]:
    """The shipped experiment specs.

    Returns
    -------
    dict
        {name: path of its JSON file}, sorted by name.

    Examples
    --------
    >>> from moestat.montecarlo import available_specs
    >>> "demystifying-k2" in available_specs()
    True
    """
    out = {}
    for entry in sorted(spec_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out[entry.name[:-5]] = entry
    return out


def load_spec(name_or_path: str) -> "Spec":
    """A spec by name (shipped) or by path to a JSON file.

    Parameters
    ----------
    name_or_path : str
        A name from :func:`available_specs` or the path of a JSON spec.

    Returns
    -------
    Spec

    Raises
    ------
    ValueError
        Naming the file and the fault when it cannot be read, is not valid
        JSON, or is not a valid spec (a missing or malformed field); or when
        the name is neither a file nor a shipped experiment.

    Examples
    --------
    >>> from moestat.montecarlo import load_spec
    >>> spec = load_spec("demystifying-k2")
    >>> spec.name, spec.protocol, spec.replicates(False), spec.grid(False).size
    ('demystifying-k2', 'paper', 40, 200)
    """
    if os.path.exists(name_or_path):
        try:
            with open(name_or_path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError("cannot read the spec file %s: %s"
                             % (name_or_path, getattr(exc, "strerror", None) or exc)) from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError("the spec file %s is not valid JSON: %s at line %d, column %d"
                             % (name_or_path, exc.msg, exc.lineno, exc.colno)) from None
        try:
            return Spec(raw)
        except ValueError as exc:
            raise ValueError("the spec file %s: %s" % (name_or_path, exc)) from None
    specs = available_specs()
    if name_or_path not in specs:
        raise ValueError("unknown experiment %r; available: %s (or give a path to a JSON spec)"
                         % (name_or_path, ", ".join(specs)))
    return Spec(json.loads(specs[name_or_path].read_text()))


def expand_grid(parts) -> np.ndarray:
    """Sorted unique integer sample sizes from a list of {linspace|geomspace: [lo, hi, num]} / {values: [...]}."""
    if isinstance(parts, dict):
        parts = [parts]
    out = []
    for p in parts:
        if "linspace" in p or "geomspace" in p:
            key = "linspace" if "linspace" in p else "geomspace"
            lo, hi, num = p[key]
            if not 1 <= int(num) <= MAX_GRID:
                raise ValueError("grid part %r: the number of sizes must be between 1 and %d" % (p, MAX_GRID))
            out.append((np.linspace if key == "linspace" else np.geomspace)(float(lo), float(hi), int(num)))
        elif "values" in p:
            out.append(np.asarray(p["values"], dtype=float))
        else:
            raise ValueError("grid part %r must have 'linspace', 'geomspace' or 'values'" % (p,))
    n = np.unique(np.round(np.concatenate(out)).astype(np.int64))
    if n.size == 0 or n.min() < 2:
        raise ValueError("sample sizes must be >= 2, got %s" % n[:5])
    return n


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


#: free-text keys that document a spec but never change a result (left out of the hash)
COMMENT_KEYS = ("note", "published_source")


def strip_comments(obj):
    """``obj`` without the documentation keys (:data:`COMMENT_KEYS`), recursively."""
    if isinstance(obj, dict):
        return {k: strip_comments(v) for k, v in obj.items() if k not in COMMENT_KEYS}
    if isinstance(obj, list):
        return [strip_comments(v) for v in obj]
    return obj


@dataclass
class Spec:
    """A validated experiment spec (the raw JSON dict plus helpers).

    Parameters
    ----------
    raw : dict
        The spec (``moestat/simulations/*.json`` format): name, truth, x, fit,
        protocol(s), grid, replicates, seed, losses.  A missing field or an
        unknown protocol is a ValueError.

    Examples
    --------
    >>> from moestat.montecarlo import Spec, load_spec
    >>> raw = load_spec("demystifying-k2").raw
    >>> raw["replicates"] = {"full": 5, "quick": 2}
    >>> spec = Spec(raw)
    >>> spec.replicates(True), spec.grid(True)[:2].tolist()
    (2, [200, 486])
    >>> spec.with_protocol("mle").hash != spec.hash         # the protocol changes the results
    True
    """

    raw: dict

    def __post_init__(self):
        if not isinstance(self.raw, dict):
            raise ValueError("a spec must be a JSON object, got %s" % type(self.raw).__name__)
        missing = [f for f in REQUIRED if f not in self.raw]
        if missing:
            raise ValueError("spec %r lacks field(s): %s" % (self.raw.get("name", "?"), ", ".join(missing)))
        if not isinstance(self.raw["name"], str) or not self.raw["name"]:
            raise ValueError("spec field 'name' must be a non-empty string, got %r" % (self.raw["name"],))
        for key, kind in (("truth", dict), ("fit", dict), ("grid", dict), ("replicates", dict), ("losses", list),
                          ("x", dict), ("protocols", dict)):
            if key in self.raw and not isinstance(self.raw[key], kind):
                raise ValueError("spec %r: field %r must be a JSON %s, got %r"
                                 % (self.name, key, "object" if kind is dict else "array", self.raw[key]))
        self.raw = copy.deepcopy(self.raw)
        p = self.raw.setdefault("protocol", "mle")
        if p not in PROTOCOLS:
            raise ValueError("spec protocol must be one of %s, got %r" % (PROTOCOLS, p))
        for mode in ("full", "quick"):
            if mode not in self.raw["grid"] or mode not in self.raw["replicates"]:
                raise ValueError("spec %r needs grid.%s and replicates.%s" % (self.name, mode, mode))
            try:
                self.grid(mode == "quick")
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                raise ValueError("spec %r: grid.%s is malformed: %s" % (self.name, mode, exc)) from None
            r = self.raw["replicates"][mode]
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ValueError("spec %r: replicates.%s must be a positive integer, got %r" % (self.name, mode, r))
        if not all(isinstance(l, dict) and isinstance(l.get("name"), str) for l in self.raw["losses"]):
            raise ValueError("spec %r: every entry of 'losses' must be an object with a 'name'" % self.name)
        names = [l["name"] for l in self.raw["losses"]]
        if len(set(names)) != len(names):
            raise ValueError("loss names must be unique, got %s" % names)
        if "seed" in self.raw and (isinstance(self.raw["seed"], bool) or not isinstance(self.raw["seed"], int)
                                   or self.raw["seed"] < 0):
            raise ValueError("spec %r: seed must be a non-negative integer, got %r" % (self.name, self.raw["seed"]))
        from .targets import check_sections
        try:
            check_sections(self.raw)
        except ValueError as exc:
            raise ValueError("spec %r: %s" % (self.name, exc)) from None
        from .rates import check_param_rates
        try:
            check_param_rates(self.raw.get("param_rates"))
        except ValueError as exc:
            raise ValueError("spec %r: %s" % (self.name, exc)) from None
        try:
            self.protocol_settings()
        except (TypeError, AttributeError) as exc:
            raise ValueError("spec %r: the protocol settings are malformed: %s" % (self.name, exc)) from None

    # ------------------------------------------------------------------ fields
    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def title(self) -> str:
        return self.raw.get("title", self.name)

    @property
    def protocol(self) -> str:
        return self.raw["protocol"]

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed", 0))

    @property
    def losses(self) -> list[dict]:
        return self.raw["losses"]

    @property
    def param_rates(self) -> list[dict]:
        """The predicted per-parameter error slopes (``param_rates``; empty when the spec states none)."""
        return self.raw.get("param_rates") or []

    def with_protocol(self, protocol: str | None) -> "Spec":
        """A copy using another initialisation protocol (None: unchanged)."""
        if protocol is None or protocol == self.protocol:
            return self
        if protocol not in PROTOCOLS:
            raise ValueError("protocol must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol))
        raw = copy.deepcopy(self.raw)
        raw["protocol"] = protocol
        return Spec(raw)

    def protocol_settings(self) -> dict:
        """Settings of the active protocol merged over the fit defaults (tol, max_iter, ...)."""
        fit = self.raw["fit"]
        base = {"tol": fit.get("tol", 1e-8), "max_iter": fit.get("max_iter", 2000)}
        base.update(strip_comments(self.raw.get("protocols", {}).get(self.protocol, {})))
        for sizing in ("grid", "replicates"):  # choose rows, not results: not part of the hash
            base.pop(sizing, None)
        if not isinstance(base.get("accelerate", False), bool):
            raise ValueError("spec %r: protocols.%s.accelerate must be true or false (SQUAREM EM), got %r"
                             % (self.name, self.protocol, base["accelerate"]))
        if self.protocol == "mle":
            base.setdefault("n_init", 10)
        else:
            for key in ("gate_sd", "expert_sd", "variance_sd"):
                if key not in base:
                    raise ValueError("spec %r: the paper protocol needs protocols.paper.%s = [scale, power]"
                                     % (self.name, key))
        return base

    def _sizing(self, field: str, quick: bool):
        """grid/replicates of a mode; ``protocols.<protocol>.<field>`` overrides the spec-wide one."""
        mode = "quick" if quick else "full"
        own = self.raw.get("protocols", {}).get(self.protocol, {}).get(field, {})
        return own[mode] if mode in own else self.raw[field][mode]

    def grid(self, quick: bool) -> np.ndarray:
        return expand_grid(self._sizing("grid", quick))

    def replicates(self, quick: bool) -> int:
        return int(self._sizing("replicates", quick))

    @property
    def variant(self) -> str | None:
        """The variant key of a spec made by :meth:`variants` (None for a plain spec)."""
        return self.raw.get("variant")

    def variants(self) -> list["Spec"]:
        """One spec per variant, or ``[self]`` when the spec has none.

        ``variants: {key: {...}}`` lists models compared on the same data streams
        (same seed, grid and replicates): each variant replaces ``truth`` and
        ``losses`` (and ``param_rates``) when it gives them, updates the ``fit`` section key by key, and
        gets its own hash (its results are stored apart).  Its loss names get the
        suffix `` (key)`` so that all variants fit in one slope table.
        """
        if not self.raw.get("variants"):
            return [self]
        out = []
        for key, v in self.raw["variants"].items():
            unknown = set(v) - {"title", "truth", "fit", "losses", "protocols", "param_rates", "note"}
            if unknown:
                raise ValueError("spec %r variant %r has unknown field(s) %s" % (self.name, key, sorted(unknown)))
            raw = copy.deepcopy({k: val for k, val in self.raw.items() if k != "variants"})
            raw["variant"] = key
            raw["title"] = "%s -- %s" % (self.title, v.get("title", key))
            if "truth" in v:
                raw["truth"] = copy.deepcopy(v["truth"])
            if "param_rates" in v:
                raw["param_rates"] = copy.deepcopy(v["param_rates"])
            raw["fit"] = dict(raw["fit"], **copy.deepcopy(v.get("fit", {})))
            for p, settings in v.get("protocols", {}).items():
                raw.setdefault("protocols", {}).setdefault(p, {}).update(copy.deepcopy(settings))
            losses = copy.deepcopy(v.get("losses", raw["losses"]))
            for L in losses:
                L["name"] = "%s (%s)" % (L["name"], key)
            raw["losses"] = losses
            out.append(Spec(raw))
        return out

    # ------------------------------------------------------------------ identity
    def hashed_fields(self) -> dict:
        """What decides a stored result; documentation (notes, predicted slopes, ``param_rates``) stays out."""
        r = strip_comments(self.raw)
        return {"version": HARNESS_VERSION, "truth": r["truth"], "x": r.get("x", {}), "fit": r["fit"],
                "protocol": self.protocol, "settings": self.protocol_settings(), "seed": self.seed,
                "losses": [{k: l.get(k) for k in ("name", "kind", "options")} for l in self.losses],
                "reference": r.get("reference")}

    @property
    def hash(self) -> str:
        """Identity of the stored results (16 hex digits of a SHA-256)."""
        return hashlib.sha256(canonical_json(self.hashed_fields()).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return canonical_json(self.raw)
