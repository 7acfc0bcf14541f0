"""Voronoi losses between mixing measures, per-parameter errors, and density distances.

The losses of the convergence-rate theory (``theory.md`` §0.1, §2.3, §3.3, §4.4)
compare a fitted mixing measure G = sum_i m_i delta_{omega_i} with the true
G* = sum_j m*_j delta_{omega*_j} through the **Voronoi cells**
A_j = {i : omega_i is nearest to omega*_j}.  Every loss has the same shape::

      sum_j |sum_{i in A_j} m_i - m*_j|                        (mass term)
    + sum_j sum_{i in A_j} m_i sum_b ||Delta_b,ij||^{e_b(|A_j|)}  (parameter terms)

with exponent 1 in singleton cells and a cell-size-dependent exponent
(2, r, r/2 with ``r = r̄(|A_j|)``) in over-specified cells.  Here they are written
once, on plain arrays (:class:`Atoms`: masses and named parameter blocks), so
that every model family only says which atoms its fitted parameter PyTree
holds (``Gate.atoms`` / ``Expert.atoms``, joined by :mod:`moestat.montecarlo.adapters`).

Block names are shared by all families:

``gate_slope``      gate slopes beta_1 (shifted by softmax translations)
``gate_intercept``  gate intercept beta_0 where it is identified (normalized sigmoid)
``gate_activation`` activation-gate slopes beta_1 and temperature tau (no translation)
``expert``          all mean parameters of a strongly identifiable expert (ReLU, GELU, ...)
``intercept``       intercept of a linear mean (b, eta_0, kappa_0)
``slope``           slopes of a linear mean (a, eta_1, kappa_1; A in the Gaussian gate)
``variance``        expert variance (sigma^2, nu, tau)
``loc``, ``scale``  Gaussian-gate location c and covariance Gamma

Softmax translation invariance (``theory.md`` §6.1): a softmax gate is
unchanged when one vector is added to every (beta_0i, beta_1i), so a softmax
loss is defined as the infimum over that common shift (t_0, t_1), with the
Voronoi cells recomputed for every shift.  For a given t_1 the loss is a
convex piecewise-linear function of s = exp(t_0), minimised exactly at one of
its breakpoints; t_1 is searched from the shift-equivariant candidates
beta*_1j - beta_1i and refined by Nelder-Mead, so the loss is invariant to a
shift of the fitted model up to rounding (tested).  Because s -> 0 (every mass
shrunk away) is an admissible limit, a softmax loss never exceeds sum_j m*_j;
``errors["log_scale"] = -inf`` marks a fit that sits at this cap.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

# --------------------------------------------------------------------------- r-bar

#: r̄(m) for m = 1, 2, 3 (Ho & Nguyen 2016, Prop. 2.1).  For m >= 4 only r̄(m) >= 7 is
#: known; moestat uses the convention r̄(m) = 2m (which continues 4, 6), see :func:`rbar`.
RBAR_KNOWN = {1: 1, 2: 4, 3: 6}


def rbar(m):
    """r̄(m): 1, 4, 6 for cells of 1, 2, 3 atoms, and the convention 2m (>= 7 holds) beyond.

    Parameters
    ----------
    m : int or array of int
        Numbers of fitted atoms in a Voronoi cell.

    Returns
    -------
    float ndarray, shape of ``m``

    Examples
    --------
    >>> from moestat.losses import rbar
    >>> rbar([1, 2, 3, 4]).tolist()
    [1.0, 4.0, 6.0, 8.0]
    """
    m = np.asarray(m)
    out = 2.0 * m
    out = np.where(m <= 1, 1.0, out)
    return out


# --------------------------------------------------------------------------- atoms

GATE_KINDS = ("softmax", "sigmoid", "shared", "gaussian", "none")


@dataclass
class Atoms:
    """A mixing measure on plain arrays.

    Parameters
    ----------
    mass : array (k,)
        Atom masses: exp(beta_0) (softmax), sigma(beta_0) (normalized sigmoid),
        omega (shared experts), pi (Gaussian gate).
    blocks : dict name -> array (k, d_b)
        Parameter blocks (names as in the module docstring).
    gate : str
        How the masses arise: "softmax" (translation invariant: losses take
        the infimum over common shifts), "sigmoid", "shared", "gaussian" or "none".

    Examples
    --------
    >>> from moestat.losses import Atoms
    >>> a = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> a.k, a.blocks["slope"].shape                   # 1-d blocks become (k, 1)
    (2, (2, 1))
    """

    mass: np.ndarray
    blocks: dict
    gate: str = "none"

    def __post_init__(self):
        self.mass = np.asarray(self.mass, dtype=np.float64).reshape(-1)
        k = self.mass.shape[0]
        if k == 0:
            raise ValueError("a mixing measure needs at least one atom, got none")
        if self.gate not in GATE_KINDS:
            raise ValueError("Atoms.gate must be one of %s, got %r" % (", ".join(GATE_KINDS), self.gate))
        blocks = {}
        for name, a in self.blocks.items():
            a = np.asarray(a, dtype=np.float64)
            if a.ndim == 1:
                a = a[:, None]
            if a.ndim != 2 or a.shape[0] != k:
                raise ValueError("block %r must have shape (k, d) with k = %d atoms, got %s" % (name, k, a.shape))
            if not np.all(np.isfinite(a)):
                raise ValueError("block %r has non-finite values" % name)
            blocks[name] = a
        if not np.all(np.isfinite(self.mass)) or np.any(self.mass < 0):
            raise ValueError("atom masses must be finite and non-negative, got %s" % self.mass)
        self.blocks = blocks

    @property
    def k(self) -> int:
        return self.mass.shape[0]

    def shifted(self, t0: float = 0.0, t1=None) -> "Atoms":
        """The same softmax measure after adding (t0, t1) to every (beta_0i, beta_1i)."""
        blocks = dict(self.blocks)
        if t1 is not None:
            blocks["gate_slope"] = blocks["gate_slope"] + np.asarray(t1, dtype=np.float64)[None]
        return Atoms(self.mass * math.exp(t0), blocks, self.gate)


# --------------------------------------------------------------------------- exponent rules

Exponent = Any  # None | number | "r" | "r/2" | "2r" | callable(m (array), j (array)) -> array


def _exponent_fn(e: Exponent, rb: Callable) -> Callable | None:
    """Turn an exponent spec into f(m, j) -> exponent array (None: the block is left out)."""
    if e is None:
        return None
    if callable(e):
        return e
    if isinstance(e, str):
        s = e.replace(" ", "")
        table = {"r": 1.0, "r/2": 0.5, "2r": 2.0}
        if s not in table:
            raise ValueError("exponent %r not understood; use a number, 'r', 'r/2', '2r' or a callable" % e)
        c = table[s]
        return lambda m, j: c * rb(m)
    v = float(e)
    return lambda m, j: np.full(np.shape(m), v)


@dataclass(frozen=True)
class VoronoiRule:
    """How one atom group enters a Voronoi loss.

    Parameters
    ----------
    exponents : dict block -> (exponent in singleton cells, exponent in cells of >= 2 atoms)
        ``None`` leaves a block out of that kind of cell.  Blocks of the atoms
        that are not named here are an error (so adapters and losses stay in step).
    mass : "all" | "over" | "none"
        Which cells contribute ``|sum m_i - m*_j|`` ("over": only cells of >= 2 atoms, D_3).
    weighted : bool
        Multiply the parameter terms by the fitted atom mass (False for D_3/D_4 routed terms).
    cell_blocks : tuple of block names, optional
        Blocks defining the Voronoi distance; default every block but ``gate_intercept``.
    topk : int, optional
        Keep only the K largest per-cell contributions (top-K gating, D_5).

    Examples
    --------
    >>> from moestat.losses import Atoms, VoronoiRule, voronoi_loss
    >>> true = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> fit = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.2, -1.0]})
    >>> squared = VoronoiRule(exponents={"slope": (2, 2)})          # squares even in singleton cells
    >>> round(voronoi_loss(fit, true, squared).value, 6)             # 0.5 * 0.2 ** 2
    0.02
    """

    exponents: Mapping[str, tuple]
    mass: str = "all"
    weighted: bool = True
    cell_blocks: tuple | None = None
    topk: int | None = None


# --------------------------------------------------------------------------- core

@dataclass
class VoronoiResult:
    """Value of a Voronoi loss and what it is made of (at the optimal shift for softmax).

    Parameters
    ----------
    value : float
        The loss.
    cells : ndarray, shape (k,)
        The true atom each fitted atom is assigned to.
    cell_terms : ndarray, shape (k*,)
        Each true atom's cell's contribution.
    shift : tuple
        (t0, t1) applied to the fitted atoms (softmax).
    errors : dict
        Per-parameter errors per cell.

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D1, voronoi_loss
    >>> true = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> fit = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.1, -1.0]})
    >>> r = voronoi_loss(fit, true, rule_D1(fit))
    >>> r.cells.tolist(), r.cell_terms.round(6).tolist()
    ([0, 1], [0.05, 0.0])
    """

    value: float
    cells: np.ndarray            # (k,) index of the true atom each fitted atom is assigned to
    cell_terms: np.ndarray       # (k*,) contribution of each true atom's cell
    shift: tuple = (0.0, None)   # (t0, t1) applied to the fitted atoms (softmax)
    errors: dict = field(default_factory=dict)  # per-parameter errors per cell


def _check_compatible(fit: Atoms, true: Atoms, rule: VoronoiRule):
    if set(fit.blocks) != set(true.blocks):
        raise ValueError("fitted and true atoms have different blocks: %s vs %s"
                         % (sorted(fit.blocks), sorted(true.blocks)))
    for b in fit.blocks:
        if fit.blocks[b].shape[1] != true.blocks[b].shape[1]:
            raise ValueError("block %r has dimension %d in the fit but %d in the truth"
                             % (b, fit.blocks[b].shape[1], true.blocks[b].shape[1]))
    unknown = set(fit.blocks) - set(rule.exponents)
    if unknown:
        raise ValueError("the loss has no exponent rule for block(s) %s (rules for %s)"
                         % (sorted(unknown), sorted(rule.exponents)))
    if rule.mass not in ("all", "over", "none"):
        raise ValueError("rule.mass must be 'all', 'over' or 'none', got %r" % rule.mass)


class _Evaluator:
    """Vectorised evaluation of one rule at a batch of gate-slope shifts t1 (T, d)."""

    def __init__(self, fit: Atoms, true: Atoms, rule: VoronoiRule, rb: Callable):
        _check_compatible(fit, true, rule)
        self.fit, self.true, self.rule = fit, true, rule
        self.cell_blocks = rule.cell_blocks or tuple(b for b in true.blocks if b != "gate_intercept")
        self.exps = {b: (_exponent_fn(rule.exponents[b][0], rb), _exponent_fn(rule.exponents[b][1], rb))
                     for b in fit.blocks}

    def parts(self, t1):
        """Cells, sizes, per-block distances to the own cell, atom terms for shifts t1 (T, d) or None."""
        fit, true = self.fit, self.true
        T = 1 if t1 is None else t1.shape[0]
        dist = {}
        for b, fb in fit.blocks.items():
            fb = np.broadcast_to(fb, (T,) + fb.shape)
            if b == "gate_slope" and t1 is not None:
                fb = fb + t1[:, None, :]
            dist[b] = np.sqrt(((fb[:, :, None, :] - true.blocks[b][None, None]) ** 2).sum(-1))  # (T, k, k*)
        D = sum(dist[b] for b in self.cell_blocks)
        cells = np.argmin(D, axis=2)                                                         # (T, k)
        kstar = true.k
        sizes = (cells[:, :, None] == np.arange(kstar)[None, None]).sum(1)                   # (T, k*)
        m = np.take_along_axis(sizes, cells, axis=1)                                         # (T, k)
        own = {b: np.take_along_axis(d, cells[:, :, None], axis=2)[:, :, 0] for b, d in dist.items()}
        term = np.zeros(cells.shape)
        for b, (e1, e2) in self.exps.items():
            for fn, sel in ((e1, m == 1), (e2, m > 1)):
                if fn is None:
                    continue
                e = fn(m, cells)
                term = term + np.where(sel, own[b] ** np.where(sel, e, 1.0), 0.0)
        return cells, sizes, own, term

    def cell_contrib(self, cells, sizes, term, s):
        """Per-cell contributions (T, k*) for a mass scale s (T,) (s = exp(t0))."""
        fit, true, rule = self.fit, self.true, self.rule
        kstar = true.k
        onehot = (cells[:, :, None] == np.arange(kstar)[None, None])                        # (T, k, k*)
        S = (fit.mass[None, :, None] * onehot).sum(1)                                        # (T, k*)
        w = fit.mass[None, :] if rule.weighted else np.ones_like(fit.mass)[None, :]
        W = ((w * term)[:, :, None] * onehot).sum(1)                                         # (T, k*)
        if rule.weighted:  # s = 0 (every mass shrunk away) removes the parameter terms, however large
            W = np.where(s[:, None] > 0, W * s[:, None], 0.0)
        mass = np.abs(s[:, None] * S - true.mass[None])
        if rule.mass == "over":
            mass = np.where(sizes > 1, mass, 0.0)
        elif rule.mass == "none":
            mass = np.zeros_like(mass)
        return mass + W

    def total(self, contrib):
        if self.rule.topk is None:
            return contrib.sum(1)
        K = min(self.rule.topk, contrib.shape[1])
        return -np.sort(-contrib, axis=1)[:, :K].sum(1)

    def best_scale(self, cells, sizes, term):
        """Exact minimiser over s >= 0 of the (convex, piecewise-linear) loss for each shift."""
        fit, true = self.fit, self.true
        kstar = true.k
        onehot = (cells[:, :, None] == np.arange(kstar)[None, None])
        S = (fit.mass[None, :, None] * onehot).sum(1)                                        # (T, k*)
        with np.errstate(divide="ignore", invalid="ignore"):
            cand = [np.zeros(S.shape[0])] + [np.where(S[:, j] > 0, true.mass[j] / S[:, j], 0.0) for j in range(kstar)]
        if self.rule.topk is not None:
            cand += self._crossings(cells, sizes, term, S)
        cand = np.stack(cand, axis=1)                                                         # (T, C)
        vals = np.stack([self.total(self.cell_contrib(cells, sizes, term, cand[:, c]))
                         for c in range(cand.shape[1])], axis=1)
        best = np.argmin(np.where(np.isnan(vals), np.inf, vals), axis=1)
        idx = np.arange(cand.shape[0])
        return cand[idx, best], vals[idx, best]

    def _crossings(self, cells, sizes, term, S):
        """Scales where two cells' linear pieces cross (breakpoints of a top-K sum)."""
        kstar = self.true.k
        onehot = (cells[:, :, None] == np.arange(kstar)[None, None])
        w = self.fit.mass[None, :] if self.rule.weighted else np.ones_like(self.fit.mass)[None, :]
        W = ((w * term)[:, :, None] * onehot).sum(1)
        out = []
        for j in range(kstar):
            for l in range(j + 1, kstar):
                for sj in (1.0, -1.0):
                    for sl in (1.0, -1.0):
                        # c_j(s) = sj (s S_j - m_j) + s W_j,  same for l
                        a = sj * S[:, j] + W[:, j] - sl * S[:, l] - W[:, l]
                        c = sj * self.true.mass[j] - sl * self.true.mass[l]
                        with np.errstate(divide="ignore", invalid="ignore"):
                            s = np.where(a != 0, c / a, 0.0)
                        out.append(np.where(np.isfinite(s) & (s > 0), s, 0.0))
        return out


def voronoi_loss(fit: Atoms, true: Atoms, rule: VoronoiRule, *, rb: Callable = rbar,
                 translation: bool | None = None) -> VoronoiResult:
    """Voronoi loss of one atom group (see the module docstring).

    Parameters
    ----------
    fit, true : Atoms
        Fitted and true mixing measures (same blocks).
    rule : VoronoiRule
        Exponents, mass term and weighting.
    rb : callable
        r̄(m) used by the exponents "r" and "r/2".
    translation : bool, optional
        Take the infimum over common softmax shifts; default: when ``fit.gate == "softmax"``.

    Returns
    -------
    VoronoiResult
        ``value`` is finite, or ``inf`` (with a :class:`moestat.MoEWarning`)
        when a parameter term overflows float64 (a fitted parameter so far
        from the truth that its power exceeds 1.8e308); never NaN.

    Examples
    --------
    Two atoms of mass 1/2 each, one slope off by 0.1: the D_1 loss is the
    mass-weighted error in the singleton cells, 0.5 * 0.1.

    >>> from moestat.losses import Atoms, rule_D1, voronoi_loss
    >>> true = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> fit = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.1, -1.0]})
    >>> round(voronoi_loss(fit, true, rule_D1(fit)).value, 6)
    0.05
    """
    with np.errstate(over="ignore", invalid="ignore"):
        res = _voronoi_loss(fit, true, rule, rb, translation)
    if not math.isfinite(res.value):
        from .exceptions import MoEWarning
        warnings.warn("the Voronoi loss overflows float64 (largest fitted |parameter| %.3g): reported as inf"
                      % max(float(np.abs(b).max(initial=0.0)) for b in fit.blocks.values()), MoEWarning,
                      stacklevel=2)
        res.value = math.inf
    return res


def _voronoi_loss(fit, true, rule, rb, translation) -> VoronoiResult:
    ev = _Evaluator(fit, true, rule, rb)
    if translation is None:
        translation = fit.gate == "softmax"
    if not translation:
        cells, sizes, own, term = ev.parts(None)
        s = np.ones(1)
        contrib = ev.cell_contrib(cells, sizes, term, s)
        return _result(ev, ev.total(contrib)[0], cells[0], sizes[0], own, contrib[0], (0.0, None), 1.0)
    if "gate_slope" not in fit.blocks:
        t1_best = None
        cells, sizes, own, term = ev.parts(None)
    else:
        t1_best = _search_shift(ev, fit, true)
        cells, sizes, own, term = ev.parts(t1_best[None])
    s, val = ev.best_scale(cells, sizes, term)
    contrib = ev.cell_contrib(cells, sizes, term, s)
    t0 = math.log(s[0]) if s[0] > 0 else -math.inf
    return _result(ev, val[0], cells[0], sizes[0], own, contrib[0], (t0, t1_best), s[0])


def _search_shift(ev: _Evaluator, fit: Atoms, true: Atoms) -> np.ndarray:
    """The gate-slope shift t1 minimising the loss (the exact best scale inside).

    Candidates beta*_1j - beta_1i (they move with any shift of the fit), then a
    zooming grid search around the best three (Nelder-Mead beyond d = 2).  The
    step is set by the truth only, so the search is equivariant under shifts of
    the fitted model and the loss is shift-invariant up to rounding.
    """
    fb, tb = fit.blocks["gate_slope"], true.blocks["gate_slope"]
    d = fb.shape[1]
    cands = np.vstack([(tb[None, :, :] - fb[:, None, :]).reshape(-1, d)])

    def f_batch(T):
        cells, sizes, _, term = ev.parts(T)
        return ev.best_scale(cells, sizes, term)[1]

    vals = f_batch(cands)
    order = np.argsort(vals, kind="stable")
    step = 0.05 * (1.0 + float(np.abs(tb).max()))
    best_t, best_v = cands[order[0]], float(vals[order[0]])
    top = order[: min(3, order.size)]
    if d <= 2:
        found = _zoom(f_batch, cands[top], vals[top], step)
    else:
        found = [_nelder_mead(f_batch, cands[c], float(vals[c]), step) for c in top]
    for t, v in found:
        if v < best_v:
            best_t, best_v = t, v
    return np.asarray(best_t, dtype=np.float64)


def _zoom(f_batch, xs, fxs, step, rounds: int = 40, pts: int = 9):
    """Grid searches on [-h, h]^d around each incumbent xs (C, d), shrinking h when the best point is inside.

    The C searches are independent and run side by side (one ``f_batch`` call
    per round for all of them).  Returns [(x, f(x))] per start.
    """
    xs, fxs = np.array(xs, dtype=np.float64), [float(v) for v in fxs]
    C, d = xs.shape
    axis = np.linspace(-1.0, 1.0, pts)
    offs = np.stack(np.meshgrid(*([axis] * d), indexing="ij"), -1).reshape(-1, d)
    P = offs.shape[0]
    h = np.full(C, float(step))
    active = list(range(C))
    for _ in range(rounds):
        if not active:
            break
        vals = f_batch(np.concatenate([xs[c][None] + h[c] * offs for c in active]))
        still = []
        for j, c in enumerate(active):
            v = vals[j * P:(j + 1) * P]
            i = int(np.argmin(v))
            moved_to_edge = v[i] < fxs[c] and bool(np.any(np.abs(offs[i]) == 1.0))
            if v[i] < fxs[c]:
                xs[c], fxs[c] = xs[c] + h[c] * offs[i], float(v[i])
            if not moved_to_edge:  # the minimum is bracketed: zoom in
                h[c] *= 0.35
            if not h[c] < 1e-13 * step:
                still.append(c)
        active = still
    return [(xs[c], fxs[c]) for c in range(C)]


def _nelder_mead(f_batch, x0, f0, step):
    from scipy.optimize import minimize
    d = x0.shape[0]
    simplex = np.vstack([x0] + [x0 + step * np.eye(d)[i] for i in range(d)])
    res = minimize(lambda t: float(f_batch(np.asarray(t)[None])[0]), x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "xatol": 1e-11 * step, "fatol": 0.0,
                            "maxiter": 400 * d, "maxfev": 800 * d})
    return (np.asarray(res.x), float(res.fun)) if res.fun < f0 else (x0, f0)


def _result(ev, value, cells, sizes, own, contrib, shift, s) -> VoronoiResult:
    """Package one evaluation (batch entry 0) with the per-cell errors."""
    fit, true = ev.fit, ev.true
    # log of the optimal mass scale exp(t0): -inf means the infimum is the limit t0 -> -inf, where the loss
    # equals sum_j m*_j (the fit is so far from the truth that shrinking every mass to 0 is best)
    errors = {"log_scale": float(shift[0])}
    for j in range(true.k):
        members = cells == j
        errors["size[%d]" % j] = int(sizes[j])
        errors["mass[%d]" % j] = float(abs(s * fit.mass[members].sum() - true.mass[j]))
        for b, d in own.items():
            errors["%s[%d]" % (b, j)] = float(d[0][members].max()) if members.any() else float("nan")
    return VoronoiResult(value=float(value), cells=np.asarray(cells), cell_terms=np.asarray(contrib),
                         shift=shift, errors=errors)


# --------------------------------------------------------------------------- the theory's losses

def _all(blocks, exact, over):
    return {b: (exact, over) for b in blocks}




def rule_D1(atoms: Atoms) -> VoronoiRule:
    """D_1 (strongly identifiable experts; exact-fitted D_1 of §3.3): exponent 1 / 2 on every block.

    Parameters
    ----------
    atoms : Atoms
        Any atoms with the blocks of the model.

    Returns
    -------
    VoronoiRule

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D1
    >>> rule_D1(Atoms(mass=[1.0], blocks={"slope": [1.0], "variance": [0.5]})).exponents
    {'slope': (1, 2), 'variance': (1, 2)}
    """
    return VoronoiRule(exponents=_all(atoms.blocks, 1, 2))


def rule_D2(atoms: Atoms) -> VoronoiRule:
    """D_2 (linear experts, ``theory.md`` §2.3/§3.3): r̄-dependent exponents in over-specified cells.

    Gated (softmax) group: beta_1 r, slope r/2, intercept r, variance r/2.
    Shared group: slope 2, intercept r, variance r/2.

    Parameters
    ----------
    atoms : Atoms
        Atoms with blocks among gate_slope, slope, intercept, variance, expert.

    Returns
    -------
    VoronoiRule

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D2
    >>> a = Atoms(mass=[1.0], blocks={"gate_slope": [0.0], "slope": [1.0], "intercept": [0.0]}, gate="softmax")
    >>> rule_D2(a).exponents
    {'gate_slope': (1, 'r'), 'slope': (1, 'r/2'), 'intercept': (1, 'r')}
    """
    if atoms.gate == "shared":
        ex = {"slope": (1, 2), "intercept": (1, "r"), "variance": (1, "r/2"), "expert": (1, 2)}
    else:
        ex = {"gate_slope": (1, "r"), "slope": (1, "r/2"), "intercept": (1, "r"), "variance": (1, "r/2"),
              "expert": (1, 2)}
    _missing(atoms, ex)
    return VoronoiRule(exponents={b: ex[b] for b in atoms.blocks})


def _missing(atoms, ex):
    miss = [b for b in atoms.blocks if b not in ex]
    if miss:
        raise ValueError("this loss does not define exponents for block(s) %s" % miss)
    return {}


def rule_D3_routed(atoms: Atoms) -> VoronoiRule:
    """D_3 routed block (normalized sigmoid, sparse): unweighted terms, mass term only in cells >= 2.

    Singleton cells include ``|Delta beta_0|``; over-specified cells use squares (beta_0 left out).

    Parameters
    ----------
    atoms : Atoms

    Returns
    -------
    VoronoiRule

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D3_routed
    >>> r = rule_D3_routed(Atoms(mass=[1.0], blocks={"gate_intercept": [0.0], "expert": [1.0]}, gate="sigmoid"))
    >>> r.exponents, r.mass, r.weighted
    ({'gate_intercept': (1, None), 'expert': (1, 2)}, 'over', False)
    """
    ex = {b: (1, 2) for b in atoms.blocks}
    if "gate_intercept" in ex:
        ex["gate_intercept"] = (1, None)
    return VoronoiRule(exponents=ex, mass="over", weighted=False)


def rule_D4_routed(atoms: Atoms) -> VoronoiRule:
    """D_4 routed block (normalized sigmoid, dense): unweighted, exponent 1, no mass term.

    Measured against the misspecified limit Ǧ_2 (the ``true`` atoms passed in).

    Parameters
    ----------
    atoms : Atoms

    Returns
    -------
    VoronoiRule

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D4_routed
    >>> r = rule_D4_routed(Atoms(mass=[1.0], blocks={"slope": [1.0]}, gate="sigmoid"))
    >>> r.exponents, r.mass
    ({'slope': (1, 1)}, 'none')
    """
    return VoronoiRule(exponents=_all(atoms.blocks, 1, 1), mass="none", weighted=False)


def rule_gaussian_gate(true: Atoms, tilde: bool) -> VoronoiRule:
    """D̄ (tilde=False) and D̃ (tilde=True) of the Gaussian-gated MoE (``theory.md`` §4.4).

    Over-specified cells: loc r, scale r/2, slope 2 (D̃: r/2 in cells whose true loc is 0),
    intercept r, variance r/2.

    Parameters
    ----------
    true : Atoms
        The true atoms (D̃'s slope exponent depends on which true locations are 0).
    tilde : bool
        D̃ instead of D̄.

    Returns
    -------
    VoronoiRule

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_gaussian_gate
    >>> t = Atoms(mass=[1.0], blocks={"loc": [0.0], "slope": [1.0]}, gate="gaussian")
    >>> rule_gaussian_gate(t, tilde=False).exponents
    {'loc': (1, 'r'), 'slope': (1, 2)}
    """
    slope_over: Exponent = 2
    if tilde:
        zero = np.all(np.abs(true.blocks["loc"]) < 1e-12, axis=1)          # (k*,)

        def slope_over(m, j):  # noqa: F811 -- the D̃ rule depends on the true atom
            return np.where(zero[j], 0.5 * rbar(m), 2.0)
    ex = {"loc": (1, "r"), "scale": (1, "r/2"), "slope": (1, slope_over), "intercept": (1, "r"),
          "variance": (1, "r/2")}
    _missing(true, ex)
    return VoronoiRule(exponents={b: ex[b] for b in true.blocks})


def sigmoid_ridge_loss(fit: Atoms, true: Atoms, rule: VoronoiRule, rb: Callable = rbar,
                       points: int = 65) -> VoronoiResult:
    """A normalized-sigmoid Voronoi loss minimised over the truth's intercept ridge.

    When every true gate slope is 0 the normalized-sigmoid weights are
    w*_j = sigma(beta*_0j) / sum_l sigma(beta*_0l), and every scale c in
    (0, 1 / max_j w*_j) with sigma(beta_0j) = c w*_j gives the same gate: the
    true intercepts (and masses sigma(beta*_0j)) are identified only up to this
    ridge (``theory.md`` §2.3 note on D_3).  The loss of a fit is then the
    infimum over the ridge, as a softmax loss is the infimum over
    translations: the true atoms get masses c w*_j and intercepts
    logit(c w*_j), and c is chosen by a grid over logit(c max_j w*_j) in
    [-8, 8] (``points`` values) refined by a bounded Brent search.  The
    Voronoi cells do not depend on c (intercepts do not enter the cell
    distance).  ``errors["ridge_scale"]`` is the optimal c (the truth as
    written has c = sum_j sigma(beta*_0j)).

    Parameters
    ----------
    fit, true : Atoms
        Normalized-sigmoid atoms (``gate == "sigmoid"``) with a ``gate_intercept`` block.
    rule : VoronoiRule
        E.g. :func:`rule_D3_routed`.

    Returns
    -------
    VoronoiResult

    Examples
    --------
    A fit on the ridge (sigma(beta_0) = 1.4 w*) has the truth's gate: the loss is 0, the raw D3 is not.

    >>> import numpy as np
    >>> from scipy.special import expit, logit
    >>> from moestat.losses import Atoms, rule_D3_routed, sigmoid_ridge_loss
    >>> b0 = np.array([-0.5, 0.5]); w = expit(b0) / expit(b0).sum()
    >>> def atoms(b):
    ...     return Atoms(expit(b), {"gate_intercept": b[:, None], "gate_slope": np.zeros((2, 1)),
    ...                             "expert": np.array([[1.0], [2.0]])}, "sigmoid")
    >>> r = sigmoid_ridge_loss(atoms(logit(1.4 * w)), atoms(b0), rule_D3_routed(atoms(b0)))
    >>> round(r.value, 4), round(r.errors["ridge_scale"], 3)
    (0.0, 1.4)
    """
    from scipy.optimize import minimize_scalar
    if true.gate != "sigmoid" or "gate_intercept" not in true.blocks:
        raise ValueError("the intercept ridge exists for normalized-sigmoid atoms with a gate_intercept block")
    slope = true.blocks.get("gate_slope")
    if slope is not None and np.any(slope != 0):
        raise ValueError("the intercept ridge exists only when every true gate slope is 0")
    w = true.mass / true.mass.sum()
    top = 1.0 / w.max()

    def at(u):
        m = top * w * (1.0 / (1.0 + math.exp(-u)))
        blocks = dict(true.blocks, gate_intercept=np.log(m / (1.0 - m))[:, None])
        return voronoi_loss(fit, Atoms(m, blocks, true.gate), rule, rb=rb, translation=False)

    grid = np.linspace(-8.0, 8.0, points)
    vals = np.array([at(u).value for u in grid])
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, points - 1)]
    u = grid[i]
    if hi > lo:
        r = minimize_scalar(lambda v: at(v).value, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        if r.fun < vals[i]:
            u = float(r.x)
    best = at(u)
    best.errors["ridge_scale"] = float(top / (1.0 + math.exp(-u)))
    return best


def _group_rule(kind: str, fit: Atoms, true: Atoms, options: dict) -> VoronoiRule:
    if fit.gate == "shared":
        return rule_D2(fit) if kind == "D2" else rule_D1(fit)
    if kind in ("D1", "D5"):
        r = rule_D1(fit)
        if kind == "D5":
            if "topk" not in options:
                raise ValueError("loss D5 needs the option topk (the number of activated experts K)")
            r = VoronoiRule(exponents=r.exponents, topk=int(options["topk"]))
        return r
    if kind == "D2":
        return rule_D2(fit)
    if kind == "D3":
        return rule_D3_routed(fit)
    if kind == "D4":
        return rule_D4_routed(fit)
    if kind in ("Dbar", "Dtilde"):
        return rule_gaussian_gate(true, tilde=kind == "Dtilde")
    raise ValueError("unknown Voronoi loss %r; choose one of %s" % (kind, ", ".join(VORONOI_KINDS)))


VORONOI_KINDS = ("D1", "D2", "D3", "D4", "D5", "Dbar", "Dtilde")


@dataclass
class LossValue:
    """A composite loss: total value, per-group results and the flat per-parameter errors.

    Parameters
    ----------
    value : float
        The sum over groups.
    groups : dict
        Group name -> :class:`VoronoiResult`.

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D1, voronoi_loss
    >>> true = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> fit = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.1, -1.0]})
    >>> from moestat.losses import theory_loss
    >>> lv = theory_loss("D1", {"experts": fit}, {"experts": true})
    >>> round(lv.value, 6), list(lv.groups)
    (0.05, ['experts'])
    """

    value: float
    groups: dict

    @property
    def errors(self) -> dict:
        out = {}
        for g, r in self.groups.items():
            out.update({"%s.%s" % (g, k): v for k, v in r.errors.items()})
        return out


def theory_loss(kind: str, fit: Mapping[str, Atoms], true: Mapping[str, Atoms], options: dict | None = None,
                rb: Callable = rbar) -> LossValue:
    """One of the theory's Voronoi losses, summed over the atom groups of a model.

    Parameters
    ----------
    kind : "D1" | "D2" | "D3" | "D4" | "D5" | "Dbar" | "Dtilde"
        D1/D2: softmax (Gaussian MoE §3.3, DeepSeekMoE Thms 1-2; shared groups get
        the shared-expert version); D3/D4: normalized sigmoid (Thms 3-4; the
        routed truth of D4 is the misspecified limit Ǧ_2); D5: top-K
        (``options={"topk": K}``); Dbar/Dtilde: Gaussian gate (§4.4).
        ``options={"intercept_ridge": True}`` takes normalized-sigmoid groups
        at their infimum over the truth's intercept ridge
        (:func:`sigmoid_ridge_loss`; all true gate slopes 0);
        ``options={"omit_blocks": [...]}`` leaves those blocks' terms out
        (same Voronoi cells), to see which terms drive a loss.
    fit, true : dict group -> Atoms
        The same groups on both sides (e.g. {"shared": ..., "routed": ...}).
    options : dict, optional
        ``{"topk": K}`` for D5.
    rb : callable
        r̄(m).

    Returns
    -------
    LossValue
        ``value`` (the sum over groups), ``groups`` (group -> VoronoiResult), ``errors``.

    Examples
    --------
    >>> from moestat.losses import Atoms, rule_D1, voronoi_loss
    >>> true = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.0, -1.0]})
    >>> fit = Atoms(mass=[0.5, 0.5], blocks={"slope": [1.1, -1.0]})
    >>> from moestat.losses import theory_loss
    >>> round(theory_loss("D1", {"experts": fit}, {"experts": true}).value, 6)
    0.05
    """
    options = options or {}
    if set(fit) != set(true):
        raise ValueError("fit and truth have different atom groups: %s vs %s" % (sorted(fit), sorted(true)))
    groups = {}
    for g in fit:
        rule = _group_rule(kind, fit[g], true[g], options)
        omit = [b for b in options.get("omit_blocks", ()) if b in rule.exponents]
        if omit:  # same cells, those blocks' terms left out
            cells = rule.cell_blocks or tuple(b for b in fit[g].blocks if b != "gate_intercept")
            rule = VoronoiRule(exponents=dict(rule.exponents, **{b: (None, None) for b in omit}), mass=rule.mass,
                               weighted=rule.weighted, cell_blocks=cells, topk=rule.topk)
        if options.get("intercept_ridge") and true[g].gate == "sigmoid":
            groups[g] = sigmoid_ridge_loss(fit[g], true[g], rule, rb=rb)
        else:
            groups[g] = voronoi_loss(fit[g], true[g], rule, rb=rb)
    return LossValue(value=float(sum(r.value for r in groups.values())), groups=groups)


# --------------------------------------------------------------------------- density distances

@dataclass
class DensityDistance:
    """E_X of a distance between conditional densities, with a numerical error estimate.

    ``value`` is the estimate; ``error`` bounds its numerical error: the
    difference between two quadrature resolutions (``method`` "quadrature")
    plus, for Monte Carlo averages over X, 2 standard errors (``method`` "monte-carlo").

    Parameters
    ----------
    value : float
    error : float
    method : "quadrature" or "monte-carlo"

    Examples
    --------
    >>> from moestat.losses import DensityDistance
    >>> DensityDistance(value=0.1, error=1e-9, method="quadrature").method
    'quadrature'
    """

    value: float
    error: float
    method: str


def _simpson_weights(G: int, h: float) -> np.ndarray:
    if G % 2 == 0:
        raise ValueError("Simpson's rule needs an odd number of points, got %d" % G)
    w = np.ones(G)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return w * h / 3.0


def gauss_legendre_nodes(low: float, high: float, pieces: int = 16, order: int = 8):
    """Composite Gauss-Legendre nodes and weights for the uniform average over [low, high].

    Parameters
    ----------
    low, high : float
        The interval.
    pieces : int
        Sub-intervals.
    order : int
        Gauss-Legendre nodes per sub-interval.

    Returns
    -------
    nodes, weights : ndarray, shape (pieces * order,)
        The weights sum to 1 (an average, not an integral).

    Examples
    --------
    >>> from moestat.losses import gauss_legendre_nodes
    >>> x, w = gauss_legendre_nodes(0.0, 2.0, pieces=4, order=3)
    >>> x.shape, round(float(w.sum()), 12), round(float(w @ x ** 2), 12)    # E[X^2] = 4/3
    ((12,), 1.0, 1.333333333333)
    """
    x, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(low, high, pieces + 1)
    nodes = ((edges[:-1, None] + edges[1:, None]) / 2 + (edges[1:, None] - edges[:-1, None]) / 2 * x[None]).ravel()
    weights = ((edges[1:, None] - edges[:-1, None]) / 2 * w[None]).ravel() / (high - low)
    return nodes, weights


#: the distances :func:`conditional_distance` computes
DENSITY_KINDS = ("tv", "hellinger", "kl")


def _per_x_distance(lp, lq, wy, kind, xp=np, grid_first: bool = False):
    """Distance per X node from log densities (M, G) on a y grid with weights wy (G,) (or classes: wy = 1).

    ``xp`` is the array namespace (NumPy, or ``jax.numpy`` inside a compiled
    program); ``grid_first``: lp and lq are (G, M) instead.
    """
    def integrate(a):
        return wy @ a if grid_first else a @ wy

    if kind == "tv":
        return 0.5 * integrate(xp.abs(xp.exp(lp) - xp.exp(lq)))
    if kind == "hellinger":
        return xp.sqrt(xp.maximum(0.5 * integrate((xp.exp(0.5 * lp) - xp.exp(0.5 * lq)) ** 2), 0.0))
    if kind == "kl":
        p = xp.exp(lp)
        with np.errstate(invalid="ignore"):   # p = 0 points contribute 0, whatever q is
            term = xp.where(p > 0, p * (lp - lq), 0.0)
        return integrate(term)
    raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, DENSITY_KINDS)), kind))


def quadrature_error(value: float, half_y: float | None, coarse_x: float | None = None, per_x=None) -> float:
    """The numerical error estimate of :func:`conditional_distance` from its pieces.

    Parameters
    ----------
    value : float
        The distance on the full resolution.
    half_y : float or None
        The same on half as many y points (None: class probabilities, no y grid).
    coarse_x : float, optional
        The same on the coarse X quadrature (8 pieces instead of 16).
    per_x : array (M,), optional
        Instead of ``coarse_x``, for a Monte Carlo average over X: the per-draw distances.

    Returns
    -------
    float
        ``|value - half_y|`` plus ``|value - coarse_x|``, or plus 2 standard errors of ``per_x``.

    Examples
    --------
    >>> from moestat.losses import quadrature_error
    >>> quadrature_error(0.5, 0.5 + 1e-9, 0.5 - 2e-9) < 3.1e-9
    True
    """
    err = 0.0 if half_y is None else abs(value - half_y)
    if per_x is None:
        return err + abs(value - coarse_x)
    return err + _monte_carlo_error(np.asarray(per_x))


def conditional_distance(logp: Callable, logq: Callable, *, kind: str = "tv", x_uniform=None, x_sample=None,
                         y_range=None, y_points: int = 2001, categorical: bool = False,
                         y_support=None) -> DensityDistance:
    """E_X[dist(p(.|X), q(.|X))] for total variation, Hellinger distance or KL divergence, with its numerical error.

    Parameters
    ----------
    logp, logq : callable (X (M, d), y) -> (M, G) log conditional densities at the points y
        (continuous responses: y is a grid (G,); counts: y is ``y_support``;
        categorical: y is None and the callables return (M, C) log class probabilities).
    kind : "tv" | "hellinger" | "kl"
        TV = ``(1/2) int |p - q| dy``; Hellinger = ``sqrt((1/2) int (sqrt p - sqrt q)^2 dy)``;
        KL = ``int p log(p / q) dy`` (p is the first density: KL(p, q)).
    x_uniform : (low, high), optional
        X ~ Uniform[low, high] (d = 1): composite Gauss-Legendre, 16 pieces x 8 nodes.
        The error estimate is the change from 8 pieces.
    x_sample : array (M, d), optional
        Draws of X for a Monte Carlo average; the error adds 2 standard errors.
    y_range : (low, high)
        Integration range of y (continuous responses); it should leave out only
        negligible mass.  Simpson's rule on ``y_points`` points; the error
        estimate adds the change from half as many points.
    y_points : int
        Points of the y grid (made odd).
    categorical : bool
        Class probabilities instead of densities on a y grid.
    y_support : array of int (G,), optional
        Count responses: the support points 0, 1, ..., Y to sum over (instead
        of ``y_range``).  It should leave out only negligible mass; the error
        estimate adds the mass left out, 1 - sum_y p(y|x) and the same for q
        (largest over the X nodes): for TV half their sum, for Hellinger the
        square root of half their sum (both bounds), for KL their sum times
        (1 + ``abs(log(p / q))`` at the last support point) (an estimate).

    Returns
    -------
    DensityDistance
        ``value``, ``error`` (numerical error bound) and ``method``.

    Examples
    --------
    N(0, 1) against N(1, 1), whatever X: TV = 2 Phi(1/2) - 1 = 0.38292...

    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> from moestat.losses import conditional_distance
    >>> logp = lambda X, y: np.broadcast_to(norm.logpdf(y, 0.0, 1.0), (len(X), len(y)))
    >>> logq = lambda X, y: np.broadcast_to(norm.logpdf(y, 1.0, 1.0), (len(X), len(y)))
    >>> d = conditional_distance(logp, logq, x_uniform=(0, 1), y_range=(-10, 11))
    >>> round(d.value, 5), round(float(2 * norm.cdf(0.5) - 1), 5), d.error < 1e-6
    (0.38292, 0.38292, True)

    KL(N(0, 1), N(1, 1)) = 1/2, and KL of Poisson(2) from Poisson(3) summed over the counts:

    >>> round(conditional_distance(logp, logq, kind="kl", x_uniform=(0, 1), y_range=(-10, 11)).value, 6)
    0.5
    >>> import math
    >>> from scipy.stats import poisson
    >>> lp = lambda X, y: np.broadcast_to(poisson.logpmf(y, 2.0), (len(X), len(y)))
    >>> lq = lambda X, y: np.broadcast_to(poisson.logpmf(y, 3.0), (len(X), len(y)))
    >>> d = conditional_distance(lp, lq, kind="kl", x_uniform=(0, 1), y_support=np.arange(60))
    >>> round(d.value, 10), round(2 * math.log(2 / 3) + 3 - 2, 10), d.error < 1e-12
    (0.1890697838, 0.1890697838, True)
    """
    if kind not in DENSITY_KINDS:
        raise ValueError("kind must be one of %s, got %r" % (", ".join(map(repr, DENSITY_KINDS)), kind))
    if (x_uniform is None) == (x_sample is None):
        raise ValueError("give exactly one of x_uniform=(low, high) or x_sample=array")
    if categorical and y_support is not None:
        raise ValueError("give y_support (counts) or categorical=True (classes), not both")
    if x_uniform is not None:
        lo, hi = map(float, x_uniform)
        fine = gauss_legendre_nodes(lo, hi, 16, 8)
        coarse = gauss_legendre_nodes(lo, hi, 8, 8)
        xs = [(fine[0][:, None], fine[1]), (coarse[0][:, None], coarse[1])]
        method = "quadrature"
    else:
        X = np.asarray(x_sample, dtype=np.float64)
        X = X[:, None] if X.ndim == 1 else X
        xs = [(X, np.full(X.shape[0], 1.0 / X.shape[0]))]
        method = "monte-carlo"

    if y_support is not None:
        return _count_distance(logp, logq, kind, xs, method, y_support)

    def at(Xn, y_pts):
        if categorical:
            lp = logp(Xn, None)
            return _per_x_distance(lp, logq(Xn, None), np.ones(lp.shape[1]), kind)
        y = np.linspace(float(y_range[0]), float(y_range[1]), y_pts)
        wy = _simpson_weights(y_pts, float(y[1] - y[0]))
        return _per_x_distance(logp(Xn, y), logq(Xn, y), wy, kind)

    if not categorical:
        if y_range is None:
            raise ValueError("continuous responses need y_range=(low, high)")
        y_points = int(y_points) | 1
    per_x = at(xs[0][0], y_points)
    value = float(per_x @ xs[0][1])
    half = None if categorical else float(at(xs[0][0], (y_points // 2) | 1) @ xs[0][1])
    if method == "quadrature":
        err = quadrature_error(value, half, float(at(xs[1][0], y_points) @ xs[1][1]))
    else:
        err = quadrature_error(value, half, per_x=per_x)
    return DensityDistance(value=value, error=err, method=method)


def _monte_carlo_error(per_x) -> float:
    """Two standard errors of a Monte Carlo average over X (inf for a single draw)."""
    return 2.0 * float(np.std(per_x, ddof=1) / np.sqrt(per_x.size)) if per_x.size > 1 else float("inf")


def _count_distance(logp, logq, kind, xs, method, y_support) -> DensityDistance:
    """:func:`conditional_distance` for count responses: a sum over ``y_support`` (see its docstring)."""
    y = np.asarray(y_support, dtype=np.float64)
    if y.ndim != 1 or y.size < 1 or np.any(y < 0) or np.any(y != np.round(y)):
        raise ValueError("y_support must be a 1-d array of non-negative whole numbers, got %r" % (y_support,))
    wy = np.ones(y.size)

    def at(Xn):
        lp, lq = logp(Xn, y), logq(Xn, y)
        # mass above the support, per node: it enters the value through its lower bound (tail terms
        # 1/2 |p_out - q_out| for TV, 1/2 (sqrt p_out - sqrt q_out)^2 for Hellinger^2, p_out log(p_out / q_out)
        # for KL, by the log-sum inequality), and the error bound as before
        p_out = np.clip(1.0 - np.exp(lp).sum(axis=1), 0.0, 1.0)
        q_out = np.clip(1.0 - np.exp(lq).sum(axis=1), 0.0, 1.0)
        tail = float(np.max(p_out)) + float(np.max(q_out))
        if kind == "tv":
            trunc = 0.5 * tail
            per_x = _per_x_distance(lp, lq, wy, kind) + 0.5 * np.abs(p_out - q_out)
        elif kind == "hellinger":
            trunc = math.sqrt(0.5 * tail)
            h2 = _per_x_distance(lp, lq, wy, kind) ** 2 + 0.5 * (np.sqrt(p_out) - np.sqrt(q_out)) ** 2
            per_x = np.sqrt(np.minimum(h2, 1.0))
        else:
            trunc = tail * (1.0 + float(np.max(np.abs(lp[:, -1] - lq[:, -1]))))
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(p_out > 0, p_out * (np.log(p_out) - np.log(q_out)), 0.0)
            # p_out at rounding level against a q_out clipped to 0 gives inf: left to the error bound
            per_x = _per_x_distance(lp, lq, wy, kind) + np.where(np.isfinite(out), out, 0.0)
        return per_x, trunc

    per_x, err = at(xs[0][0])
    value = float(per_x @ xs[0][1])
    if method == "quadrature":
        coarse, _ = at(xs[1][0])
        err += abs(value - float(coarse @ xs[1][1]))
    else:
        err += _monte_carlo_error(per_x)
    return DensityDistance(value=value, error=err, method=method)


def regression_distance(mean_p: Callable, mean_q: Callable, *, x_uniform=None, x_sample=None) -> DensityDistance:
    """The L2(mu) distance of two regression functions, sqrt(E_X (m_p(X) - m_q(X))^2), with its numerical error.

    Parameters
    ----------
    mean_p, mean_q : callable X (M, d) -> (M,) conditional means E[Y | X].
    x_uniform : (low, high), optional
        X ~ Uniform[low, high] (d = 1): composite Gauss-Legendre, 16 pieces x 8
        nodes; the error estimate is the change from 8 pieces.
    x_sample : array (M, d), optional
        Draws of X for a Monte Carlo average; the error is 2 standard errors of
        the mean square, carried through the square root.

    Returns
    -------
    DensityDistance
        ``value`` (the L2 distance), ``error`` and ``method``.

    Examples
    --------
    m_p(x) = x and m_q(x) = 0 on Uniform[0, 1]: sqrt(E X^2) = 1/sqrt(3).

    >>> import math
    >>> import numpy as np
    >>> from moestat.losses import regression_distance
    >>> d = regression_distance(lambda X: X[:, 0], lambda X: 0.0 * X[:, 0], x_uniform=(0, 1))
    >>> round(d.value, 12), round(1 / math.sqrt(3), 12), d.error < 1e-12
    (0.57735026919, 0.57735026919, True)
    """
    if (x_uniform is None) == (x_sample is None):
        raise ValueError("give exactly one of x_uniform=(low, high) or x_sample=array")

    def sq(X):
        a, b = np.asarray(mean_p(X), dtype=np.float64), np.asarray(mean_q(X), dtype=np.float64)
        if a.shape != (X.shape[0],) or b.shape != (X.shape[0],):
            raise ValueError("the mean functions must return one value per row of X (%d,), got %s and %s"
                             % (X.shape[0], a.shape, b.shape))
        return (a - b) ** 2

    if x_uniform is not None:
        lo, hi = map(float, x_uniform)
        (xf, wf), (xc, wc) = gauss_legendre_nodes(lo, hi, 16, 8), gauss_legendre_nodes(lo, hi, 8, 8)
        ms_ = float(sq(xf[:, None]) @ wf)
        value = math.sqrt(max(ms_, 0.0))
        return DensityDistance(value=value, error=abs(value - math.sqrt(max(float(sq(xc[:, None]) @ wc), 0.0))),
                               method="quadrature")
    X = np.asarray(x_sample, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    per_x = sq(X)
    ms_ = float(per_x.mean())
    value = math.sqrt(ms_)
    half = _monte_carlo_error(per_x)
    return DensityDistance(value=value, error=math.sqrt(ms_ + half) - value, method="monte-carlo")
