"""Traced programs kept on disk, so that a fresh process runs a fit's programs without tracing them again.

JAX's persistent compilation cache (set up by :mod:`moestat._config`) keeps
compiled executables keyed by the *lowered* program: a fresh process still
traces every program through the Python code and lowers it to MLIR before it
can look the executable up, and for a first fit that was most of its time
(``benchmarks/README.md``, "What a user feels").  :func:`stored_jit` is
``jax.jit`` plus a store of exported programs (:mod:`jax.export`) under a key
computed *without* tracing:

* the function (module, qualified name and the contents of its file) and
  every static argument (dataclass fields, or the ``repr`` of plain values);
* the tree structure, shapes, dtypes and weak types of the array arguments;
* the environment: the moestat source files (a hash of their contents),
  JAX / jaxlib / Python versions, the backend and its devices, the CPU's
  instruction-set flags, ``XLA_FLAGS`` and the JAX options that change
  programs (float64, matmul precision).

A later process deserializes the exported program (milliseconds), and JAX
compiles it -- or, usually, finds its executable in the persistent cache.
Numbers are unchanged: the exported program is the one ``jax.jit`` traces.

Programs are stored only when the result is certain to be the same:
static arguments of types defined outside moestat, or whose ``repr`` holds
an object address (e.g. a user-written family or callable), and calls from
inside another traced function use plain ``jax.jit``.  The store lives in
``programs/`` under moestat's JAX cache directory and is off when that cache
is off (``MOESTAT_JAX_CACHE=0``) or with ``MOESTAT_PROGRAM_STORE=0`` (the test
suite sets it: tests that replace internal functions must not read or
leave programs traced with the replacements).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import pathlib
import pickle
import platform
import sys
import tempfile

import jax
import jaxlib
import numpy as np

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
_MISSING = object()


class _NotStorable(Exception):
    """A static argument whose repr does not determine the program."""


def store_dir() -> pathlib.Path | None:
    """Directory of the stored programs, or None when the store is off (created on first use)."""
    if os.environ.get("MOESTAT_PROGRAM_STORE", "") in ("0", "false", "no"):
        return None
    from .._config import _cache_dir
    base = _cache_dir()
    if base is None:
        return None
    path = pathlib.Path(base) / "programs"
    try:
        path.mkdir(exist_ok=True)
    except OSError:
        return None
    return path


@functools.lru_cache(maxsize=1)
def _environment() -> str:
    """What every stored program depends on besides its own arguments (computed once per process)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(_PACKAGE)).encode())
        h.update(path.read_bytes())
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    devices = jax.devices()
    parts = [h.hexdigest(), jax.__version__, jaxlib.__version__, sys.version, platform.machine(),
             hashlib.sha256(flags.encode()).hexdigest(),
             devices[0].platform, devices[0].device_kind, str(len(devices)), os.environ.get("XLA_FLAGS", ""),
             str(jax.config.jax_enable_x64), str(jax.config.jax_default_matmul_precision)]
    return "\n".join(parts)


@functools.lru_cache(maxsize=None)
def _source_hash(fun) -> str:
    """Hash of the file that defines ``fun`` (moestat's own files are in :func:`_environment` already)."""
    try:
        return hashlib.sha256(pathlib.Path(inspect.getsourcefile(fun)).read_bytes()).hexdigest()
    except (TypeError, OSError):
        raise _NotStorable(getattr(fun, "__qualname__", repr(fun))) from None


def _token(v) -> str:
    """A text that determines a static argument; raises _NotStorable when it cannot."""
    t = type(v)
    name = "%s.%s" % (t.__module__, t.__qualname__)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        if not t.__module__.startswith("moestat"):
            raise _NotStorable(name)
        return "%s(%s)" % (name, ", ".join("%s=%s" % (f.name, _token(getattr(v, f.name)))
                                           for f in dataclasses.fields(v)))
    if t.__module__ not in ("builtins", "numpy") and not t.__module__.startswith("moestat"):
        raise _NotStorable(name)
    if isinstance(v, (tuple, list)):
        return "%s[%s]" % (name, ", ".join(_token(a) for a in v))
    if isinstance(v, dict):
        return "%s{%s}" % (name, ", ".join("%s: %s" % (_token(a), _token(b)) for a, b in v.items()))
    if isinstance(v, np.ndarray):   # repr abbreviates large arrays: use the bytes
        digest = hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
        return "%s:%s%s:%s" % (name, v.dtype.str, v.shape, digest)
    r = repr(v)
    if " at 0x" in r or (t.__repr__ is object.__repr__):
        raise _NotStorable(name)
    return "%s:%s" % (name, r)


class StoredProgram:
    """A ``jax.jit`` function whose traced programs are stored on disk (see the module docstring).

    Calls behave as the jitted function's; its other attributes (``lower``,
    ``trace``, ...) are the jitted function's.
    """

    def __init__(self, fun, static_argnames=()):
        self.fun = fun
        self.jitted = jax.jit(fun, static_argnames=static_argnames)
        self.static = frozenset(static_argnames)
        self.signature = inspect.signature(fun)
        self.memo: dict = {}
        functools.update_wrapper(self, fun)

    def __getattr__(self, name):
        return getattr(self.jitted, name)

    def __call__(self, *args, **kwargs):
        directory = store_dir()
        if directory is None:
            return self.jitted(*args, **kwargs)
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        statics = {k: v for k, v in bound.arguments.items() if k in self.static}
        names = [k for k in bound.arguments if k not in self.static]
        leaves, in_tree = jax.tree_util.tree_flatten(tuple(bound.arguments[k] for k in names))
        if any(isinstance(a, jax.core.Tracer) for a in leaves):   # inside another traced function
            return self.jitted(*args, **kwargs)
        avals = [jax.typeof(a) for a in leaves]
        try:
            key = self._key(statics, in_tree, avals)
        except _NotStorable:
            return self.jitted(*args, **kwargs)
        program = self.memo.get(key, _MISSING)
        if program is _MISSING:
            program = self.memo[key] = self._load(directory, key) or self._export(directory, key, names, statics,
                                                                                  in_tree, avals)
        if program is None:
            return self.jitted(*args, **kwargs)
        call, out_tree = program
        return jax.tree_util.tree_unflatten(out_tree, call(*leaves))

    def _key(self, statics, in_tree, avals) -> str:
        parts = [_environment(), _source_hash(self.fun), self.fun.__module__, self.fun.__qualname__, str(in_tree)]
        parts += ["%s=%s" % (k, _token(statics[k])) for k in sorted(statics)]
        parts += ["%s%s" % (a, "~" if getattr(a, "weak_type", False) else "") for a in avals]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @staticmethod
    def _load(directory: pathlib.Path, key: str):
        path = directory / (key + ".jaxexport")
        if not path.exists():
            return None
        try:
            blob, out_tree = pickle.loads(path.read_bytes())
            exported = jax.export.deserialize(bytearray(blob))
        except Exception:   # unreadable or from an incompatible version: trace again (and overwrite)
            return None
        return jax.jit(exported.call), out_tree

    def _export(self, directory: pathlib.Path, key: str, names, statics, in_tree, avals):
        box = {}

        def flat(*leaves):
            args = dict(zip(names, jax.tree_util.tree_unflatten(in_tree, leaves)), **statics)
            out, box["out_tree"] = jax.tree_util.tree_flatten(self.fun(**args))
            return out

        specs = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals]
        try:
            exported = jax.export.export(jax.jit(flat))(*specs)
            blob = bytes(exported.serialize())
        except Exception:   # e.g. an operation jax.export does not support, or flatbuffers missing
            return None
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(pickle.dumps((blob, box["out_tree"])))
            os.replace(tmp, directory / (key + ".jaxexport"))
        except OSError:     # a read-only or full disk: the program still runs
            pass
        return jax.jit(exported.call), box["out_tree"]


def stored_jit(fun=None, *, static_argnames=()):
    """``jax.jit(fun, static_argnames=...)`` with its programs stored on disk (:class:`StoredProgram`).

    Parameters
    ----------
    fun : callable
        A pure function of arrays (PyTrees of arrays) and static arguments,
        returning a PyTree of arrays, written in moestat (the key covers
        moestat's source files and the file that defines ``fun``, not
        other packages' code).
    static_argnames : sequence of str
        Arguments that are compile-time constants (hashable), as for ``jax.jit``.

    Returns
    -------
    StoredProgram
        Used as a decorator: ``@stored_jit(static_argnames=("cfg",))``.

    Examples
    --------
    >>> import numpy as np
    >>> from moestat.fitting.programs import stored_jit
    >>> @stored_jit(static_argnames=("power",))
    ... def scaled_power(x, power):
    ...     return 2.0 * x ** power
    >>> scaled_power(np.arange(3.0), power=2).tolist()
    [0.0, 2.0, 8.0]
    """
    if fun is None:
        return functools.partial(stored_jit, static_argnames=static_argnames)
    return StoredProgram(fun, tuple(static_argnames))
