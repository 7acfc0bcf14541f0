"""Input validation, design matrices, padding to size buckets, weights.

Everything the user hands to ``fit``/``predict`` passes through here first, so
that bad input fails with a ``ValueError``/``TypeError`` that names the
problem, never with a JAX traceback or a silent NaN.

Layout handed to the kernels (``engineering.md`` §8): features-major arrays
``X (p, N)``, ``Xg (pg, N)``, ``y (N,)``, ``w (N,)``; ``N`` is the padded
bucket length and padded points carry weight 0, so every weighted sum is
exact and fits of different n inside one bucket share one compiled program.
"""
from __future__ import annotations

import decimal
import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np

from .._jax import to_device

if TYPE_CHECKING:
    import pandas as pd

BUCKET_MIN = 256
BUCKET_RATIO = 1.25
BUCKET_ALIGN = 8


def pandas():
    """The pandas module, imported on first use: a fit of NumPy arrays never imports it (~0.2 s of a process)."""
    import pandas
    return pandas


class _LazyPandas:
    """Stands for the pandas module in code that builds pandas objects only on request (imports it then)."""

    def __getattr__(self, name: str):
        return getattr(pandas(), name)


#: ``pd.DataFrame(...)`` etc. for modules on the fit path (``from ..data.design import lazy_pandas as pd``)
lazy_pandas = _LazyPandas()


def is_pandas(a: Any, *kinds: str) -> bool:
    """``isinstance(a, (pandas.<kind>, ...))`` without importing pandas (not loaded: ``a`` is no pandas object)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(a, tuple(getattr(pd, k) for k in kinds))


class Data(NamedTuple):
    """Padded, features-major data as the kernels see it.

    X : (p, N) expert design (row 0 is the intercept when there is one)
    Xg : (pg, N) gate design
    y : (N,) response (float) or class codes (int)
    w : (N,) case weights; 0 marks padding or an absent row
    """

    X: Any
    Xg: Any
    y: Any
    w: Any
    # None, or a :class:`Groups`: all rows of a group share one latent expert
    groups: Any = None


class Groups(NamedTuple):
    """Group membership as the kernels see it (flexmix's ``y ~ x | id``).

    index : (N,) int32 group slot of each row; padded rows go to the last slot,
        which no real group uses (the slot count G is padded to a bucket too)
    size : (G,) float number of rows in each slot (>= 1, so 1/size is finite)
    """

    index: Any
    size: Any


def bucket_size(n: int, start: int = BUCKET_MIN, ratio: float = BUCKET_RATIO) -> int:
    """The padded length for n points: a geometric grid start * ratio^j (multiple of 8).

    A new n inside the same bucket reuses the compiled program; the default grid
    (256 * 1.25^j) wastes at most 25 % of the work on padding.
    """
    if n <= start:
        return start
    b = float(start)
    while True:
        size = int(math.ceil(b / BUCKET_ALIGN) * BUCKET_ALIGN)
        if size >= n:
            return size
        b *= ratio


def padded_eval(fn, params, A: np.ndarray, family) -> np.ndarray:
    """fn(params, A.T padded to its size bucket, family) restricted to the n real columns.

    Parameters
    ----------
    fn : jitted callable (params, (q, N) features-major array, family) -> (..., N)
        With ``family`` static, e.g. a gate's ``log_weights`` or an expert's ``mean``.
    params : PyTree of arrays
    A : ndarray (n, q), sample-major host array
    family : hashable gate or expert object

    Returns
    -------
    ndarray (..., n)
        Padding to the buckets of :func:`bucket_size` lets every n of a bucket
        reuse one compiled evaluation instead of compiling per n.
    """
    n = A.shape[0]
    At = pad_columns(np.ascontiguousarray(A.T), bucket_size(n))
    return np.asarray(fn(params, to_device(At), family))[..., :n]


def pad_columns(a: np.ndarray, N: int) -> np.ndarray:
    """Pad the last axis of ``a`` with zeros up to length N (a new C-contiguous array, or ``a`` itself when it
    is one already and needs no padding)."""
    a = np.asarray(a)
    extra = N - a.shape[-1]
    if extra < 0:
        raise ValueError("cannot pad %d points into a bucket of %d" % (a.shape[-1], N))
    if extra == 0:
        return np.ascontiguousarray(a)
    out = np.zeros(a.shape[:-1] + (N,), dtype=a.dtype)   # (np.pad: the same array, ~2x the time)
    out[..., :a.shape[-1]] = a
    return out


def make_data(X: np.ndarray, Xg: np.ndarray, y: np.ndarray, w: np.ndarray, N: int | None = None,
              groups: np.ndarray | None = None) -> Data:
    """Row-major host arrays (n, p), (n, pg), (n,), (n,) -> padded device ``Data``.

    groups : (n,) int group codes 0..G-1 (:func:`group_codes`), or None
    """
    n = X.shape[0]
    N = bucket_size(n) if N is None else N
    dX = to_device(pad_columns(np.asarray(X.T, dtype=np.float64), N))     # one copy: transposed and padded
    return Data(
        X=dX,
        Xg=dX if Xg is X else to_device(pad_columns(np.asarray(Xg.T, dtype=np.float64), N)),
        y=to_device(pad_columns(y, N)),
        w=to_device(pad_columns(np.asarray(w, dtype=np.float64), N)),
        groups=None if groups is None else make_groups(groups, N),
    )


# --------------------------------------------------------------------------- groups

def make_groups(codes: np.ndarray, N: int) -> Groups:
    """Device :class:`Groups` for group codes (n,) 0..G-1, padded to N rows and a bucket of slots.

    The slot count is ``bucket_size(G + 1)`` (one spare slot for the padded
    rows), so new numbers of groups inside a bucket reuse the compiled program.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.shape[0]
    G = int(codes.max()) + 1 if n else 0
    slots = bucket_size(G + 1)
    index = np.full(N, slots - 1, dtype=np.int32)
    index[:n] = codes
    size = np.bincount(index, minlength=slots).astype(np.float64)
    return Groups(index=to_device(index), size=to_device(np.maximum(size, 1.0)))


def group_first_rows(codes: np.ndarray, N: int) -> np.ndarray:
    """(N,) index of the first row of each row's group (padded rows point to themselves)."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    first = np.zeros(int(codes.max()) + 1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n)[::-1]
    out = np.arange(N, dtype=np.int32)
    out[:n] = first[codes]
    return out


def group_codes(groups: Any, n: int, data: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated group labels -> (codes (n,) 0..G-1 in order of first appearance, labels (G,)).

    groups : array-like of n labels, or the name of a column of ``data``.
    """
    if isinstance(groups, str):
        if data is None or groups not in getattr(data, "columns", data if isinstance(data, dict) else ()):
            raise ValueError("groups=%r names no column of data" % groups)
        groups = data[groups]
    arr = np.asarray(groups.to_numpy() if is_pandas(groups, "Series", "Index") else groups)
    if arr.ndim != 1:
        raise ValueError("groups must be one-dimensional (n,), got shape %s" % (arr.shape,))
    if arr.shape[0] != n:
        raise ValueError("groups has %d entries but there are %d observations" % (arr.shape[0], n))
    pd = pandas()
    if pd.isna(pd.Series(arr)).any():
        raise ValueError("groups has missing labels, first at row %d" % int(np.argmax(pd.isna(pd.Series(arr)))))
    codes, labels = pd.factorize(pd.Series(arr), sort=False)
    return codes.astype(np.int64), np.asarray(labels)


def check_constant_in_groups(a: np.ndarray, codes: np.ndarray, labels: np.ndarray, what: str) -> None:
    """ValueError naming the first group in which the rows of ``a`` (n,) or (n, d) differ."""
    a2 = a.reshape(a.shape[0], -1)
    bad = np.any(a2 != a2[group_first_rows(codes, codes.shape[0])], axis=1)
    if bad.any():
        g = labels[codes[int(np.argmax(bad))]]
        raise ValueError("%s must be constant within each group, but they vary within group %r"
                         % (what, g.item() if hasattr(g, "item") else g))


# --------------------------------------------------------------------------- validation

def _where_bad(a: np.ndarray) -> str:
    bad = ~np.isfinite(a)
    idx = np.argwhere(bad)
    first = tuple(int(i) for i in idx[0])
    where = "row %d" % first[0] if len(first) == 1 else "row %d, column %d" % first[:2]
    return "%d non-finite value(s) (NaN or inf), first at %s" % (int(bad.sum()), where)


def numeric_objects(arr: np.ndarray, name: str, columns: Sequence[str] | None = None) -> np.ndarray:
    """Float64 values of an object array that holds numbers (what ``df.values`` gives for a mixed frame).

    Parameters
    ----------
    arr : ndarray of dtype object, shape (n,) or (n, d)
        Real numbers (Python, NumPy, ``Decimal``, ``Fraction``, bools), or
        missing values (``None``, ``pd.NA``, NaN), which become NaN for the
        caller's non-finite check to report.
    name : str
        The argument's name, for messages.
    columns : sequence of str, optional
        Column names (a DataFrame's); default: column numbers.

    Returns
    -------
    ndarray of float64, the shape of ``arr``

    Raises
    ------
    TypeError
        Naming the first column that holds a value that is not a real number
        (text, a complex number, a date, ...), its row and the value.

    Examples
    --------
    >>> numeric_objects(np.array([[1, 2.5], [3, None]], dtype=object), "X")
    array([[1. , 2.5],
           [3. , nan]])
    """
    arr = np.asarray(arr, dtype=object)
    out = np.empty(arr.shape, dtype=np.float64)
    cols = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    flat = out.reshape(cols.shape)
    for j in range(cols.shape[1]):
        col = cols[:, j]
        missing = np.asarray(lazy_pandas.isna(lazy_pandas.Series(col, dtype=object)), dtype=bool)
        ok = np.fromiter((m or isinstance(v, (numbers.Real, np.bool_, decimal.Decimal)) for v, m in zip(col, missing)),
                         dtype=bool, count=col.shape[0])
        if not ok.all():
            i = int(np.argmin(ok))
            where = "" if arr.ndim < 2 else (" column %r" % columns[j] if columns is not None and j < len(columns)
                                              else " column %d" % j)
            raise TypeError("%s%s must be numeric: row %d holds %r (%s); convert it (e.g. pd.to_numeric) or "
                            "encode categories with a formula" % (name, where, i, col[i], type(col[i]).__name__))
        vals = np.full(col.shape[0], np.nan)
        vals[~missing] = [float(v) for v in col[~missing]]
        flat[:, j] = vals
    return out


def as_float_matrix(a: Any, name: str) -> np.ndarray:
    """A 2-d float64 matrix from an array-like; clear errors for wrong types and NaN/inf.

    Object arrays of numbers (a mixed DataFrame's ``.values``) are converted;
    text or other non-numeric content is refused naming its column
    (:func:`numeric_objects`).
    """
    columns = None
    if is_pandas(a, "DataFrame"):
        columns = [str(c) for c in a.columns]
        a = a.to_numpy()
    elif is_pandas(a, "Series"):
        a = a.to_numpy()
    arr = np.asarray(a)
    if arr.dtype == object:
        arr = numeric_objects(arr, name, columns)
    if arr.dtype.kind in "USV":
        raise TypeError("%s must be numeric, got values of dtype %s" % (name, arr.dtype))
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float64)
    if arr.dtype.kind == "c":
        raise TypeError("%s must be real-valued, got complex numbers" % name)
    if arr.dtype.kind not in "fiu":
        raise TypeError("%s must be numeric, got dtype %s" % (name, arr.dtype))
    if arr.ndim == 0:
        raise ValueError("%s must be an array of observations, got a scalar" % name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError("%s must be 1- or 2-dimensional (n, d), got shape %s" % (name, arr.shape))
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("%s has %s" % (name, _where_bad(arr)))
    return arr


def as_weights(weights: Any, n: int) -> np.ndarray:
    """Validated case weights (n,), default all ones."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights.to_numpy() if is_pandas(weights, "Series") else weights)
    if w.dtype == object:
        w = numeric_objects(w, "weights")
    if w.dtype.kind not in "fiub":
        raise TypeError("weights must be numeric, got dtype %s" % w.dtype)
    w = w.astype(np.float64).reshape(-1)
    if w.shape[0] != n:
        raise ValueError("weights has %d entries but there are %d observations" % (w.shape[0], n))
    if not np.all(np.isfinite(w)):
        raise ValueError("weights has %s" % _where_bad(w))
    if np.any(w < 0):
        i = int(np.argmax(w < 0))
        raise ValueError("weights must be non-negative; row %d has weight %g" % (i, w[i]))
    if not np.any(w > 0):
        raise ValueError("all weights are zero: there is nothing to fit")
    return w


def check_lengths(**arrays: np.ndarray) -> int:
    lengths = {k: v.shape[0] for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        desc = ", ".join("%s has %d" % kv for kv in lengths.items())
        raise ValueError("inputs have different numbers of observations: %s" % desc)
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("no observations: the inputs are empty")
    return n


# --------------------------------------------------------------------------- design matrices

def _column_names(a: Any, prefix: str, d: int) -> list[str]:
    if is_pandas(a, "DataFrame"):
        return [str(c) for c in a.columns]
    if is_pandas(a, "Series"):
        return [str(a.name) if a.name is not None else prefix]
    if d == 1:
        return [prefix]
    return ["%s%d" % (prefix, j + 1) for j in range(d)]


@dataclass
class Block:
    """One design block (experts or gate): how raw input becomes a matrix.

    ``formula`` holds the statsmodels/patsy design spec when the block came
    from a formula, so that new data for ``predict`` is encoded identically.
    """

    names: list[str]
    intercept: bool
    formula: str | None = None
    spec: Any = None
    #: the fitted data's columns that the formula names; patsy's spec does not pickle, so it is rebuilt
    #: from them when a pickled block is loaded
    source: Any = None

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.formula is not None and self.source is not None:
            state["spec"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.spec is None and self.formula is not None and self.source is not None:
            f = self.formula if "~" in self.formula else "~ " + self.formula
            self.spec = parse_formula(f, self.source, "formula")[2]

    def matrix(self, raw: Any, name: str, data: Any = None) -> np.ndarray:
        """Design matrix (without intercept column) for new data in this block's encoding."""
        if self.formula is not None:
            frame = raw if raw is not None else data
            if not (is_pandas(frame, "DataFrame") or isinstance(frame, dict)):
                raise ValueError("the model was fitted with the formula %r: pass the new data as a DataFrame "
                                 "(X=df or data=df) with the formula's columns" % self.formula)
            mat = _formula_rhs(self.spec, frame)
            mat = _drop_intercept(mat)[0]
            out = as_float_matrix(mat, name)
        else:
            if raw is None:
                raise ValueError("%s is required" % name)
            out = as_float_matrix(raw, name)
        d_expected = len(self.names) - int(self.intercept)
        if out.shape[1] != d_expected:
            raise ValueError("%s has %d column(s), but the model was fitted with %d (%s)"
                             % (name, out.shape[1], d_expected,
                                ", ".join(self.names[int(self.intercept):]) or "none"))
        return out


def _drop_intercept(df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    for name in ("Intercept", "(Intercept)", "1"):
        if name in df.columns:
            return df.drop(columns=[name]), True
    return df, False


def _formula_rhs(spec: Any, frame: Any) -> pd.DataFrame:
    import patsy
    try:
        (mat,) = patsy.build_design_matrices([spec], frame, return_type="dataframe")
    except patsy.PatsyError as exc:  # a missing column or an unseen category level
        raise ValueError("cannot encode the new data with the fitted formula: %s" % exc) from None
    return mat


def parse_formula(formula: str, data: Any, name: str) -> tuple[pd.DataFrame | None, pd.DataFrame, Any]:
    """Evaluate ``"y ~ x1 + x2"`` or ``"~ z"`` with patsy's public formula API (as statsmodels does).

    Returns (lhs or None, rhs with the intercept column if any, rhs design spec).
    Missing values are an error (not dropped silently).
    """
    if data is None:
        raise ValueError("%s is a formula (%r): pass the data frame as data=" % (name, formula))
    if not (is_pandas(data, "DataFrame") or isinstance(data, dict)):
        raise TypeError("data must be a pandas DataFrame or a dict of columns, got %s" % type(data).__name__)
    import patsy
    keep_na = patsy.NAAction(NA_types=[])  # missing values reach the validators, which name them
    try:
        if "~" not in formula:
            raise ValueError("%s formula %r has no '~'" % (name, formula))
        if not formula.split("~", 1)[0].strip():
            rhs = patsy.dmatrix(formula, data, NA_action=keep_na, return_type="dataframe")
            lhs = None
        else:
            lhs, rhs = patsy.dmatrices(formula, data, NA_action=keep_na, return_type="dataframe")
    except patsy.PatsyError as exc:  # unknown column, bad syntax
        raise ValueError("cannot evaluate %s formula %r: %s" % (name, formula, exc)) from None
    spec = rhs.design_info
    return lhs, rhs, spec


def formula_columns(formula: str, data: Any) -> pd.DataFrame:
    """The columns of ``data`` that ``formula`` names (as identifiers or quoted in ``Q("...")``)."""
    import io
    import tokenize
    names = set()
    for tok in tokenize.generate_tokens(io.StringIO(formula).readline):
        if tok.type == tokenize.NAME:
            names.add(tok.string)
        elif tok.type == tokenize.STRING:
            names.add(tok.string.strip("\"'"))
    frame = pandas().DataFrame(data) if isinstance(data, dict) else data
    return frame[[c for c in frame.columns if c in names]].copy()


@dataclass
class Design:
    """The validated, unpadded inputs of one fit (row-major, intercepts included)."""

    X: np.ndarray               # (n, p) expert design
    Xg: np.ndarray              # (n, pg) gate design (after the gate's input transform)
    y: np.ndarray               # (n,) response as given (validated by the expert family)
    w: np.ndarray               # (n,)
    expert_block: Block
    gate_block: Block
    gate_same_as_expert: bool
    y_name: str = "y"
    extra: dict = field(default_factory=dict)
    # group codes (n,) 0..G-1 and their labels (G,); None when ungrouped
    group_codes: np.ndarray | None = None
    group_labels: np.ndarray | None = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def n_groups(self) -> int | None:
        """Number of groups, or None for an ungrouped design."""
        return None if self.group_labels is None else int(self.group_labels.shape[0])

    @property
    def n_eff(self) -> int:
        """Number of rows with positive weight."""
        return int(np.count_nonzero(self.w > 0))


def _add_intercept(a: np.ndarray, names: list[str], add: bool) -> tuple[np.ndarray, list[str]]:
    if not add:
        return a, names
    return np.column_stack([np.ones(a.shape[0]), a]), ["Intercept"] + names


def build_design(X: Any, y: Any, gate_X: Any, weights: Any, data: Any, *,
                 intercept: bool, gate_intercept: bool,
                 gate_transform=None, y_check=None) -> Design:
    """Turn user input into a validated :class:`Design`.

    X : array (n,) / (n, d), DataFrame, or formula ``"y ~ x1 + x2"`` (with ``data``)
    y : array/Series, or None when X is a formula with a left-hand side
    gate_X : None (same covariates as the experts), array, DataFrame, or ``"~ z"``
    gate_transform : callable applied to the gate covariates (not the intercept),
        e.g. the element-wise sigmoid of modified-softmax gating
    y_check : callable(y, name) -> validated y (the expert family's check)
    """
    expert_formula = isinstance(X, str)
    y_name = "y"
    if expert_formula:
        lhs, rhs, spec = parse_formula(X, data, "X")
        if lhs is None and y is None:
            raise ValueError("formula %r has no response: write it as 'y ~ x'" % X)
        rhs_noint, has_int = _drop_intercept(rhs)
        x_raw = as_float_matrix(rhs_noint.to_numpy() if rhs_noint.shape[1] else np.empty((rhs.shape[0], 0)), "X")
        x_names = [str(c) for c in rhs_noint.columns]
        expert_block = Block(names=(["Intercept"] if has_int else []) + x_names, intercept=has_int,
                             formula=X, spec=spec, source=formula_columns(X, data))
        if lhs is not None:
            if lhs.shape[1] != 1:
                raise ValueError("the formula's left-hand side must be one column, got %d" % lhs.shape[1])
            y_name = str(lhs.columns[0])
            y = lhs.iloc[:, 0].to_numpy()
        add_int = has_int
    else:
        if X is None:
            raise ValueError("X is required (an array, a DataFrame or a formula)")
        x_raw = as_float_matrix(X, "X")
        x_names = _column_names(X, "x", x_raw.shape[1])
        add_int = intercept
        expert_block = Block(names=(["Intercept"] if add_int else []) + x_names, intercept=add_int)
        if is_pandas(y, "Series") and y.name is not None:
            y_name = str(y.name)
    if y is None:
        raise ValueError("y is required")
    y_arr = y.to_numpy() if is_pandas(y, "Series", "DataFrame") else np.asarray(y)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr[:, 0]
    if y_arr.ndim != 1:
        raise ValueError("y must be one-dimensional (n,), got shape %s" % (y_arr.shape,))
    y_arr = y_check(y_arr, "y") if y_check is not None else y_arr

    gate_same = gate_X is None
    if gate_same:
        g_raw, g_names = x_raw, list(x_names)
        g_int = gate_intercept if not expert_formula else has_int
        gate_block = Block(names=(["Intercept"] if g_int else []) + g_names, intercept=g_int,
                           formula=expert_block.formula, spec=expert_block.spec, source=expert_block.source)
    elif isinstance(gate_X, str):
        gdata = data
        _, grhs, gspec = parse_formula(gate_X if "~" in gate_X else "~ " + gate_X, gdata, "gate_X")
        g_df, g_int = _drop_intercept(grhs)
        g_raw = as_float_matrix(g_df.to_numpy() if g_df.shape[1] else np.empty((grhs.shape[0], 0)), "gate_X")
        g_names = [str(c) for c in g_df.columns]
        gate_block = Block(names=(["Intercept"] if g_int else []) + g_names, intercept=g_int,
                           formula=gate_X, spec=gspec, source=formula_columns(gate_X, gdata))
    else:
        g_raw = as_float_matrix(gate_X, "gate_X")
        g_names = _column_names(gate_X, "z", g_raw.shape[1])
        g_int = gate_intercept
        gate_block = Block(names=(["Intercept"] if g_int else []) + g_names, intercept=g_int)

    w = None if weights is None else weights
    n = check_lengths(X=x_raw, y=y_arr, gate_X=g_raw)
    w = as_weights(w, n)
    if gate_transform is not None:
        g_raw = np.asarray(gate_transform(g_raw), dtype=np.float64)
    Xmat, _ = _add_intercept(x_raw, x_names, expert_block.intercept)
    if g_raw is x_raw and gate_block.intercept == expert_block.intercept:
        Gmat = Xmat   # the same matrix (one copy; make_data and with_intercepts see it is shared); not written to
    else:
        Gmat, _ = _add_intercept(g_raw, g_names, gate_block.intercept)
    if Xmat.shape[1] == 0:
        raise ValueError("the expert design has no columns (no covariates and no intercept)")
    if Gmat.shape[1] == 0:
        raise ValueError("the gate design has no columns (no covariates and no intercept)")
    return Design(X=Xmat, Xg=Gmat, y=y_arr, w=w, expert_block=expert_block, gate_block=gate_block,
                  gate_same_as_expert=gate_same, y_name=y_name,
                  extra={"row_index": row_index(data if expert_formula else X, n)})


def row_index(src: Any, n: int) -> pd.Index | None:
    """The pandas row index of ``src`` (DataFrame or Series with n rows), else None."""
    if is_pandas(src, "DataFrame", "Series") and len(src.index) == n:
        return src.index
    return None


def drop_gate_intercept(design: Design) -> Design:
    """The design without the gate's intercept column, for gates that take raw covariates."""
    b = design.gate_block
    design.Xg = design.Xg[:, 1:]
    design.gate_block = Block(names=b.names[1:], intercept=False, formula=b.formula, spec=b.spec, source=b.source)
    return design


def family_design(design: Design, gate, expert) -> Design:
    """The design as a gate and an expert family take it.

    A gate on the raw covariates (``gate.uses_intercept`` False, e.g. the
    Gaussian gate) loses the intercept column, and the expert design becomes
    the expert's features (``expert.transform_design``, e.g. polynomial terms).
    """
    if design.gate_block.intercept and not gate.uses_intercept:
        design = drop_gate_intercept(design)
    design.X = expert.transform_design(design.X, design.expert_block.intercept)
    return design


def new_design(design: Design, X: Any, gate_X: Any, data: Any = None, gate_transform=None) -> tuple[np.ndarray, np.ndarray]:
    """Expert and gate matrices for new data, encoded like the fitted design."""
    if is_pandas(X, "DataFrame") and design.expert_block.formula is not None:
        data, X = X, None
    x_raw = design.expert_block.matrix(X, "X", data)
    if gate_X is None and design.gate_same_as_expert:
        g_raw = x_raw
    elif gate_X is None and design.gate_block.formula is not None:
        g_raw = design.gate_block.matrix(None, "gate_X", data if data is not None else X)
    elif gate_X is None:
        raise ValueError("the model was fitted with separate gate covariates: pass gate_X")
    else:
        g_raw = design.gate_block.matrix(gate_X, "gate_X")   # a formula block reads a DataFrame itself
    check_lengths(X=x_raw, gate_X=g_raw)
    if gate_transform is not None:
        g_raw = np.asarray(gate_transform(g_raw), dtype=np.float64)
    Xmat, _ = _add_intercept(x_raw, [], design.expert_block.intercept)
    Gmat, _ = _add_intercept(g_raw, [], design.gate_block.intercept)
    return Xmat, Gmat


def standardize_columns(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted z-scores of each column (constant columns become 0)."""
    wn = w / w.sum()
    mu = wn @ a
    # the row-vector broadcasts over a few columns run NumPy's inner loop q elements at a time (~0.5 ms each at
    # n = 1e5, q = 3): the same element-wise operations on the flat array against the tiled vector take ~0.1
    flat = a.ndim == 2 and a.flags.c_contiguous
    c = (a.ravel() - _tiled(mu, a.shape[0])).reshape(a.shape) if flat else a - mu
    sd = np.sqrt(wn @ (c * c))
    sd = np.where(sd > 0, sd, 1.0)
    if flat:
        np.divide(c.reshape(-1), _tiled(sd, a.shape[0]), out=c.reshape(-1))
    else:
        c /= sd
    return c


def _tiled(v: np.ndarray, n: int) -> np.ndarray:
    """v (q,) repeated n times, flat (n q,): by doubling copies (np.tile repeats element-wise, ~5x slower)."""
    out = np.empty(n * v.size, dtype=v.dtype)
    out[:v.size] = v
    filled = v.size
    while filled < out.size:
        m = min(filled, out.size - filled)
        out[filled:filled + m] = out[:m]
        filled += m
    return out


def as_sequence(x: Any) -> Sequence:
    return x if isinstance(x, (list, tuple)) else [x]
