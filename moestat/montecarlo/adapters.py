"""Fitted parameter PyTrees -> mixing-measure atoms for the Voronoi losses.

The losses (:mod:`moestat.losses`) work on :class:`~moestat.losses.Atoms`:
masses and named parameter blocks.  Each family says what its atoms are
(:meth:`moestat.gating.base.Gate.atoms`, :meth:`moestat.experts.base.Expert.atoms`);
this module only joins the gate's atom groups with the experts' blocks.  It
receives *canonical* parameters (``gate.canonical``, ``expert.canonical``: e.g.
softmax reference row 0, ReLU scale |eta2| = 1), so the truth and a fit are
compared in the same identified coordinates.  Composite models (a shared block
with input-independent weights next to a routed block) form one atom group per
block of experts.
"""
from __future__ import annotations

import numpy as np

from ..losses import Atoms


def model_atoms(setup, params) -> dict[str, Atoms]:
    """{group: Atoms} for canonical parameters of a model.

    Parameters
    ----------
    setup : moestat.montecarlo.setup.ModelSetup
        The gate and expert families and the intercept flags.
    params : MoEParams
        Canonical parameters (:meth:`~moestat.montecarlo.setup.ModelSetup.canonical`).

    Returns
    -------
    dict
        Group name ("moe"; "shared" and "routed" for a shared + routed gate) -> :class:`~moestat.losses.Atoms`,
        the gate's blocks first, then the experts'.
    """
    gate_groups = setup.gate.atom_groups(params.gate, setup.uses_gate_intercept)
    expert_groups = setup.expert.atom_groups(params.expert, setup.intercept)
    if len(gate_groups) != len(expert_groups):
        raise ValueError("the %r gate forms %d atom group(s) but the %r experts %d: the gate's groups and the "
                         "experts' blocks must match" % (setup.gate.name, len(gate_groups), setup.expert.name,
                                                         len(expert_groups)))
    out = {}
    for (name, mass, gblocks, kind), eblocks in zip(gate_groups, expert_groups):
        rows = {np.shape(b)[0] for b in eblocks.values()}
        if rows and rows != {np.shape(mass)[0]}:
            raise ValueError("atom group %r has %d gate masses but expert blocks of %s rows"
                             % (name, np.shape(mass)[0], sorted(rows)))
        out[name] = Atoms(mass, dict(gblocks, **eblocks), kind)
    return out
