"""Checks of scalar options (integers, non-negative numbers) with messages that name the option."""
from __future__ import annotations

import numbers

import numpy as np


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError("%s must be an integer, got %r" % (name, value))
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return int(value)


def check_float(value, name, minimum=0.0, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a number, got %r" % (name, value))
    v = float(value)
    if not np.isfinite(v) or v < minimum or (strict and v == minimum):
        raise ValueError("%s must be a finite number %s %g, got %r" % (name, ">" if strict else ">=", minimum, value))
    return v
