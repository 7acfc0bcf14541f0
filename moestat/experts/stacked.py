"""Experts of several families in one model: blocks of experts, each block one family.

``Stacked(((ReLUExpert(), 2), ("linear", 3)))`` is a 5-expert family whose
experts 0-1 are ReLU neurons and 2-4 linear Gaussian experts, as in the
DeepSeekMoE model with shared ReLU and routed linear experts (``theory.md``
§2.5, Theorem 4).  Every method splits the expert axis into the blocks, calls
the block's family and concatenates, so the EM, the Newton polish and the
standard errors need no special case.  Parameters are
``StackedParams(blocks=(params_block_0, params_block_1, ...))``.

All blocks must see the same expert design (e.g. linear and neuron blocks, or
polynomial blocks of one degree) and share one response type.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .base import Expert, get_expert, register


class StackedParams(NamedTuple):
    blocks: tuple  # one parameter PyTree per block, in block (= expert) order


def _check_block(block):
    if not (isinstance(block, (tuple, list)) and len(block) == 2):
        raise TypeError("each block must be a pair (expert, count), got %r" % (block,))
    fam, count = block
    fam = get_expert(fam)
    if isinstance(fam, Stacked):
        raise TypeError("a Stacked expert cannot contain another Stacked expert; list its blocks instead")
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise ValueError("the expert count of a block must be an integer >= 1, got %r" % (count,))
    return fam, int(count)


@register
@dataclass(frozen=True)
class Stacked(Expert):
    """Blocks of experts from different families (see the module docstring).

    Parameters
    ----------
    blocks : sequence of (expert, count)
        Expert family (name or object) and number of experts of each block, in
        expert order.
    """

    blocks: Any = ()
    response: ClassVar[str] = "continuous"
    name: ClassVar[str] = "stacked"

    def __post_init__(self):
        blocks = tuple(_check_block(b) for b in self.blocks)
        if not blocks:
            raise ValueError("Stacked needs at least one (expert, count) block")
        kinds = {f.response for f, _ in blocks}
        if len(kinds) > 1:
            raise ValueError("all blocks of a Stacked expert must have the same response type, got %s"
                             % sorted(kinds))
        object.__setattr__(self, "blocks", blocks)

    @property
    def label(self) -> str:
        """E.g. ``"2 relu + 3 linear"``."""
        return " + ".join("%d %s" % (c, f.name) for f, c in self.blocks)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(c for _, c in self.blocks)

    @property
    def n_experts(self) -> int:
        return sum(self.counts)

    def _check_k(self, k):
        if k != self.n_experts:
            raise ValueError("the model has n_experts=%d but the Stacked expert defines %d (%s)"
                             % (k, self.n_experts, " + ".join(map(str, self.counts))))

    def _split(self, a):
        """Split the leading (expert) axis of ``a`` into the blocks."""
        out, start = [], 0
        for c in self.counts:
            out.append(a[start:start + c])
            start += c
        return out

    def _map(self, method, params, *args):
        return StackedParams(blocks=tuple(getattr(f, method)(pb, *args)
                                          for (f, _), pb in zip(self.blocks, params.blocks)))

    # ---- host-side set-up ------------------------------------------------------------
    def check_y(self, y, name="y"):
        return self.blocks[0][0].check_y(y, name)

    def prepare(self, y, w):
        info = {}
        for f, _ in self.blocks:
            info.update(f.prepare(y, w))
        return info

    def transform_design(self, X, intercept):
        outs = [f.transform_design(X, intercept) for f, _ in self.blocks]
        for (f, _), o in zip(self.blocks[1:], outs[1:]):
            if o.shape != outs[0].shape or not np.array_equal(o, outs[0]):
                raise ValueError("the blocks of a Stacked expert must use the same expert design, but %r and %r "
                                 "build different features (e.g. polynomial degrees differ)"
                                 % (self.blocks[0][0].name, f.name))
        return outs[0]

    def init_features(self, X, y):
        return self.blocks[0][0].init_features(X, y)

    # ---- parameters ------------------------------------------------------------------
    def init_params(self, k, p, info):
        self._check_k(k)
        return StackedParams(blocks=tuple(f.init_params(c, p, info) for f, c in self.blocks))

    def n_free_params(self, k, p):
        self._check_k(k)
        return sum(f.n_free_params(c, p) for f, c in self.blocks)

    def unconstrain(self, params):
        return self._map("unconstrain", params)

    def constrain(self, u):
        return self._map("constrain", u)

    def canonical(self, params):
        return self._map("canonical", params)

    def free_mask(self, params):
        return self._map("free_mask", params)

    # ---- kernels ---------------------------------------------------------------------
    def log_density(self, params, X, y):
        return jnp.concatenate([f.log_density(pb, X, y) for (f, _), pb in zip(self.blocks, params.blocks)], axis=0)

    def m_step(self, params, tau, X, y, w, ctl, max_halvings, fixed):
        taus = self._split(tau)
        return StackedParams(blocks=tuple(
            f.m_step(pb, tb, X, y, w, ctl, max_halvings, fb)
            for (f, _), pb, tb, fb in zip(self.blocks, params.blocks, taus, fixed.blocks)))

    def mean(self, params, X):
        return jnp.concatenate([f.mean(pb, X) for (f, _), pb in zip(self.blocks, params.blocks)], axis=0)

    def sample(self, key, params, X, z):
        keys = jax.random.split(key, len(self.blocks))
        y, start = None, 0
        for (f, c), pb, kb in zip(self.blocks, params.blocks, keys):
            inside = (z >= start) & (z < start + c)
            yb = f.sample(kb, pb, X, jnp.clip(z - start, 0, c - 1))
            y = yb if y is None else jnp.where(inside, yb, y)
            start += c
        return y

    def describe(self, params, names):
        rows, start = [], 0
        for (f, c), pb in zip(self.blocks, params.blocks):
            rows += [(i + start, t, v) for i, t, v in f.describe(pb, names)]
            start += c
        return rows

    def noise_variances(self, params):
        """The blocks' variances, concatenated, when every block is Gaussian; else None."""
        parts = [f.noise_variances(pb) for (f, _), pb in zip(self.blocks, params.blocks)]
        return None if any(v is None for v in parts) else np.concatenate(parts)

    def parts(self, params):
        return [(f, pb) for (f, _), pb in zip(self.blocks, params.blocks)]

    def from_parts(self, parts):
        return StackedParams(blocks=tuple(parts))

    def atom_groups(self, params, intercept):
        """One group of atom blocks per block of experts (each from its family's :meth:`atoms`)."""
        return [f.atoms(pb, intercept) for (f, _), pb in zip(self.blocks, params.blocks)]

    def degenerate(self, params, n_eff, info):
        parts = self._split(np.asarray(n_eff))
        return np.concatenate([np.asarray(f.degenerate(pb, nb, info), dtype=bool)
                               for (f, _), pb, nb in zip(self.blocks, params.blocks, parts)])

    # ---- inference (moestat.inference) -----------------------------------------------
    def report(self, params):
        """Block reports concatenated in expert order (the order of :meth:`describe`)."""
        return jnp.concatenate([f.report(pb) for (f, _), pb in zip(self.blocks, params.blocks)])

    def permute(self, params, perm):
        """Relabel experts within their blocks (experts of different families cannot swap)."""
        perm = np.asarray(perm, dtype=int)
        out, start = [], 0
        for (f, c), pb in zip(self.blocks, params.blocks):
            local = perm[start:start + c] - start
            if local.min() < 0 or local.max() >= c:
                raise ValueError("a Stacked expert can only relabel experts within a block; permutation %s moves "
                                 "experts across blocks of sizes %s" % (perm.tolist(), list(self.counts)))
            out.append(f.permute(pb, local))
            start += c
        return StackedParams(blocks=tuple(out))

    def at_bound(self, params, ctl):
        return StackedParams(blocks=tuple(f.at_bound(pb, ctl) for (f, _), pb in zip(self.blocks, params.blocks)))

    def feasible(self, params, ctl):
        return all(f.feasible(pb, ctl) for (f, _), pb in zip(self.blocks, params.blocks))
