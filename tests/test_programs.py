"""The store of traced programs (moestat.fitting.programs): same results as jax.jit, no tracing when stored."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moestat as ms
from moestat.fitting import programs


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The store switched on, in a temporary JAX cache directory."""
    monkeypatch.setenv("MOESTAT_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("MOESTAT_PROGRAM_STORE", "1")
    return tmp_path / "programs"


def _traced_counter():
    """A function of an array and a static power, counting how often its Python body runs (= traces)."""
    calls = []

    def weighted_power(x, w, power):
        calls.append(power)
        return {"value": jnp.sum(w * x ** power), "scaled": 2.0 * x}
    return weighted_power, calls


def test_stored_program_is_reused_by_a_new_process_without_tracing(store):
    fun, calls = _traced_counter()
    x, w = np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0])
    first = programs.stored_jit(fun, static_argnames=("power",))
    out = first(x, w, power=3)
    assert out["value"] == pytest.approx(0.5 * 1 + 1.0 * 8 + 2.0 * 27, rel=1e-15)   # by hand: 62.5
    np.testing.assert_array_equal(np.asarray(out["scaled"]), 2.0 * x)
    assert len(list(store.glob("*.jaxexport"))) == 1
    traced = len(calls)
    # a fresh wrapper (as in a new process: empty memory) loads the stored program and does not trace the body
    again = programs.stored_jit(fun, static_argnames=("power",))
    out2 = again(x * 2, w, power=3)
    assert len(calls) == traced
    assert out2["value"] == pytest.approx(0.5 * 8 + 1.0 * 64 + 2.0 * 216, rel=1e-15)
    # another static value or another shape is another program
    again(x, w, power=2)
    again(np.ones(4), np.ones(4), power=3)
    assert len(list(store.glob("*.jaxexport"))) == 3


def test_not_stored_when_the_static_argument_is_not_determined_by_its_repr(store):
    fun, calls = _traced_counter()

    class Power:     # a type outside moestat: its code is not part of the key
        def __init__(self, p):
            self.p = p

        def __hash__(self):
            return hash(self.p)

        def __eq__(self, other):
            return self.p == other.p

        def __rpow__(self, base):
            return base ** self.p

    prog = programs.stored_jit(fun, static_argnames=("power",))
    out = prog(np.array([2.0]), np.array([1.0]), power=Power(2))
    assert float(out["value"]) == 4.0
    assert not store.exists() or not list(store.glob("*.jaxexport"))


def test_static_arrays_are_keyed_by_their_contents():
    """repr abbreviates large arrays; two arrays that differ in the middle must give different keys."""
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1.0
    assert repr(a) == repr(b)
    assert programs._token(a) != programs._token(b)
    assert programs._token({"x": (a, 1.5)}) == programs._token({"x": (a.copy(), 1.5)})


def test_inside_a_traced_function_the_plain_jit_runs(store):
    fun, _ = _traced_counter()
    prog = programs.stored_jit(fun, static_argnames=("power",))
    outer = jax.jit(lambda x: prog(x, jnp.ones_like(x), power=2)["value"])
    assert float(outer(np.array([1.0, 2.0]))) == 5.0
    assert not list(store.glob("*.jaxexport"))


def test_store_off(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESTAT_JAX_CACHE", str(tmp_path))
    monkeypatch.setenv("MOESTAT_PROGRAM_STORE", "0")
    assert programs.store_dir() is None
    monkeypatch.setenv("MOESTAT_PROGRAM_STORE", "1")
    monkeypatch.setenv("MOESTAT_JAX_CACHE", "0")
    assert programs.store_dir() is None


def test_a_fit_from_stored_programs_equals_the_traced_fit(tmp_path):
    """Two fresh processes share a cache: the second fit runs the stored programs; the fits agree bit for bit."""
    script = textwrap.dedent("""
        import json, moestat as ms
        res = ms.GaussianMoE(2).fit("y ~ x", data=ms.datasets.load_sim_moe2())
        print(json.dumps({"loglik": float(res.loglik), "params": res.params.tolist(), "n_iter": int(res.n_iter)}))
    """)
    env = dict(os.environ, MOESTAT_JAX_CACHE=str(tmp_path), MOESTAT_PROGRAM_STORE="1",
               PYTHONPATH=os.pathsep.join(sys.path))
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True).stdout.splitlines()[-1]) for _ in range(2)]
    stored = list((tmp_path / "programs").glob("*.jaxexport"))
    assert len(stored) >= 5
    assert runs[0] == runs[1]
    reference = ms.datasets.sim_moe2_reference()["mle"]["loglik"]   # R optim on the observed log-likelihood
    assert runs[0]["loglik"] == pytest.approx(reference, abs=1e-8)
