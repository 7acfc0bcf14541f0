"""Predicted per-parameter error slopes of a spec (its ``param_rates`` field).

The per-parameter errors of a run (``param_slopes.csv``) are keyed
``<group>.<block>[j]``: the atom group (``moe``; ``shared`` and ``routed`` for a
shared + routed gate), the parameter block (the names of :mod:`moestat.losses`,
plus ``mass`` for the cell mass) and the *true* atom ``j`` whose Voronoi cell the
error is measured in (:func:`moestat.losses.voronoi_loss`).  Which slope the
theory predicts for such an error depends on the block and on the size of the
cell (theory.md §0.1: an over-specified cell of m atoms with exponent e gives
n^(-1/(2e))), sometimes on the true atom too, so a spec states it declaratively::

    "param_rates": [
      {"group": "routed", "blocks": ["gate_slope", "intercept"], "cell_size": 2,
       "predicted": -0.125, "theory_row": 12, "note": "D_2: exponent r(2) = 4"},
      {"group": "routed", "blocks": ["mass"], "predicted": -0.5, "theory_row": null}
    ]

``group`` and ``blocks`` select the errors; ``cell_size`` (an integer or a list
of integers; omitted: any size) is compared with the cell size most replicates
of that true atom have; ``atoms`` (optional list of true-atom indices) restricts
a rule to some true atoms; ``predicted`` is the slope of the error on log n;
``theory_row`` the row of theory.md §7 (null where the table has none:
``note`` then names the section).  The first matching rule decides.  The field
documents what a run should show and never changes a stored result, so it is
not part of the spec hash (:meth:`moestat.montecarlo.spec.Spec.hashed_fields`).
"""
from __future__ import annotations

import math
import re

#: ``<group>.<block>[<true atom>]``, the keys of the per-parameter errors
PARAM_KEY = re.compile(r"^(?P<group>[A-Za-z0-9_]+)\.(?P<block>[A-Za-z0-9_]+)\[(?P<atom>\d+)\]$")

RULE_FIELDS = {"group", "blocks", "cell_size", "atoms", "predicted", "theory_row", "note"}


def _int_list(value, what: str) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise ValueError("%s must be a non-negative integer or a non-empty list of them, got %r" % (what, value))
    return values


def check_param_rates(rules) -> list[dict]:
    """Validate a ``param_rates`` list.

    Parameters
    ----------
    rules : list of dict or None
        The spec field (None: no predictions).

    Returns
    -------
    list of dict
        The rules (an empty list for None).

    Raises
    ------
    ValueError
        Naming the rule and the fault: not a list of objects, an unknown key, a
        missing or non-string ``group``, empty ``blocks``, a non-numeric
        ``predicted``, a ``cell_size``/``atoms`` that is not a non-negative
        integer (list), a ``theory_row`` that is not an integer or null.

    Examples
    --------
    >>> from moestat.montecarlo.rates import check_param_rates
    >>> check_param_rates([{"group": "moe", "blocks": ["slope"], "predicted": -0.5, "theory_row": 7}])[0]["group"]
    'moe'
    >>> check_param_rates([{"group": "moe", "blocks": ["slope"], "predicted": "fast"}])
    Traceback (most recent call last):
    ...
    ValueError: param_rates[0]: 'predicted' must be a number, got 'fast'
    """
    if rules is None:
        return []
    if not isinstance(rules, list):
        raise ValueError("param_rates must be a JSON array of rules, got %r" % (rules,))
    for i, rule in enumerate(rules):
        where = "param_rates[%d]" % i
        if not isinstance(rule, dict):
            raise ValueError("%s must be a JSON object, got %r" % (where, rule))
        unknown = set(rule) - RULE_FIELDS
        if unknown:
            raise ValueError("%s has unknown field(s) %s (allowed: %s)" % (where, sorted(unknown), sorted(RULE_FIELDS)))
        if not isinstance(rule.get("group"), str) or not rule["group"]:
            raise ValueError("%s: 'group' must be a non-empty string (an atom group: moe, shared, routed), got %r"
                             % (where, rule.get("group")))
        blocks = rule.get("blocks")
        if not isinstance(blocks, list) or not blocks or not all(isinstance(b, str) and b for b in blocks):
            raise ValueError("%s: 'blocks' must be a non-empty list of block names, got %r" % (where, blocks))
        p = rule.get("predicted")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ValueError("%s: 'predicted' must be a number, got %r" % (where, p))
        for key in ("cell_size", "atoms"):
            if key in rule:
                _int_list(rule[key], "%s: %r" % (where, key))
        row = rule.get("theory_row")
        if row is not None and (isinstance(row, bool) or not isinstance(row, int)):
            raise ValueError("%s: 'theory_row' must be an integer or null, got %r" % (where, row))
    return rules


def predicted_rate(rules, parameter: str, cell_size=None) -> tuple[float, int | None]:
    """The predicted slope and theory.md §7 row of one per-parameter error.

    Parameters
    ----------
    rules : list of dict
        A spec's ``param_rates`` (see the module docstring).
    parameter : str
        An error key ``<group>.<block>[j]`` (e.g. ``"routed.slope[0]"``).
    cell_size : float, optional
        The size of true atom ``j``'s Voronoi cell in most replicates; a rule
        with a ``cell_size`` matches only an integer size in its list.

    Returns
    -------
    (float, int or None)
        (predicted slope, theory row) of the first matching rule, or
        (nan, None) when no rule matches or ``parameter`` is not an error key.

    Examples
    --------
    >>> from moestat.montecarlo import load_spec
    >>> from moestat.montecarlo.rates import predicted_rate
    >>> rules = load_spec("demystifying-k3").param_rates
    >>> predicted_rate(rules, "moe.gate_slope[1]", 2.0)      # theory.md §7 row 5: n^(-1/(2 r(2)))
    (-0.125, 5)
    >>> predicted_rate(rules, "moe.variance[0]", 1.0)         # row 7: an exactly-specified atom
    (-0.5, 7)
    """
    rule = matching_rule(rules, parameter, cell_size)
    return (math.nan, None) if rule is None else (float(rule["predicted"]), rule.get("theory_row"))


def matching_rule(rules, parameter: str, cell_size=None) -> dict | None:
    """The first rule of ``rules`` that covers the error ``parameter`` in a cell of ``cell_size`` atoms, or None.

    Parameters and matching as in :func:`predicted_rate`, which reads its
    ``predicted`` and ``theory_row``; the rule's ``note`` says where the rate
    comes from.

    Examples
    --------
    >>> from moestat.montecarlo import load_spec
    >>> from moestat.montecarlo.rates import matching_rule
    >>> matching_rule(load_spec("deepseek-thm2").param_rates, "shared.intercept[0]", 2)["note"]
    'D2 shared kappa_0: exponent r_1(2) = 4'
    """
    m = PARAM_KEY.match(parameter)
    if m is None:
        return None
    group, block, atom = m.group("group"), m.group("block"), int(m.group("atom"))
    size = None
    if cell_size is not None and math.isfinite(float(cell_size)) and float(cell_size) == round(float(cell_size)):
        size = int(round(float(cell_size)))
    for rule in rules or []:
        if rule["group"] != group or block not in rule["blocks"]:
            continue
        if "atoms" in rule and atom not in _int_list(rule["atoms"], "atoms"):
            continue
        if "cell_size" in rule and (size is None or size not in _int_list(rule["cell_size"], "cell_size")):
            continue
        return rule
    return None
