"""Monte Carlo throughput: the bucket ladder, padding invariance, bucket-affine scheduling, the reference cache."""
import os
import random

import numpy as np
import pytest

from moestat.montecarlo import Store, load_spec
from moestat.montecarlo.executors import AffinityScheduler, LocalPool
from moestat.montecarlo.spec import Spec


def test_mc_bucket_ladder_and_the_deepseek_grid():
    from moestat.montecarlo.worker import mc_bucket
    # by hand: powers of two 1024 ... 16384, then 16384 * 2^(j/4) rounded up to a multiple of 8
    coarse = [1024 * 2 ** j for j in range(5)]
    fine = [int(np.ceil(16384 * 2 ** (j / 4) / 8) * 8) for j in range(1, 32)]
    ladder = coarse + fine
    assert fine[:4] == [19488, 23176, 27560, 32768]
    for n in [1, 100, 1024, 1025, 2048, 2049, 16384, 16385, 19488, 19489, 99999, 100000, 131072, 131073, 10 ** 6]:
        assert mc_bucket(n) == min(b for b in ladder if b >= n)
        assert mc_bucket(n) % 8 == 0
    grid = load_spec("deepseek-thm1").grid(False)
    buckets = {mc_bucket(n) for n in grid}
    assert len(grid) == 20 and len(buckets) == 10 and set(coarse) <= buckets
    # padding above 16384 is at most 2^(1/4) - 1 (19 %)
    big = np.unique(np.geomspace(16385, 10 ** 6, 200).astype(int))
    assert max(mc_bucket(n) / n for n in big) <= 2 ** 0.25 + 1e-3


def _pid(task):
    return os.getpid()


def _fail(task):
    raise ValueError("task %r refused" % (task,))


def test_scheduler_keeps_groups_on_their_owner_and_hands_out_each_task_once():
    rng = random.Random(0)
    tasks = [{"group": g, "i": i} for i, g in enumerate("aaaabbbcccccd")]
    s = AffinityScheduler(tasks, workers=2)
    running, got, owner_first = {0: [], 1: []}, [], {}
    while s.remaining or running[0] or running[1]:
        for w in (0, 1):
            while len(running[w]) < 2:
                t = s.next_for(w, force=not (running[0] or running[1]))
                if t is None:
                    break
                owner_first.setdefault(t["group"], w)
                running[w].append(t)
        w = rng.choice([v for v in (0, 1) if running[v]])
        t = running[w].pop(0)
        s.finished(t)
        got.append(t["i"])
    assert sorted(got) == list(range(len(tasks)))
    # the first two tasks of every group went to the worker that took the group
    assert s.owner == owner_first and set(s.owner) == set("abcd") and s.owner["a"] != s.owner["b"]


def test_scheduler_helps_only_with_groups_whose_program_is_cached():
    s = AffinityScheduler([{"group": 1, "i": i} for i in range(4)], workers=2)
    assert s.next_for(0)["i"] == 0
    assert s.next_for(1) is None                                   # group 1 is being compiled by worker 0
    assert s.next_for(1, force=True)["i"] == 3                    # nothing else in flight anywhere: help anyway
    s.finished({"group": 1})
    assert s.next_for(1)["i"] == 2 and s.next_for(0)["i"] == 1 and s.remaining == 0


def test_pool_runs_groups_on_one_worker_and_reports_failures():
    pool = LocalPool(2)
    try:
        tasks = [{"group": g, "i": i} for i, g in enumerate("aabb")]
        pids = {t["i"]: pid for t, pid in pool.imap_unordered(_pid, tasks)}
        assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
        with pytest.raises(ValueError, match="refused"):
            list(pool.imap_unordered(_fail, [{"group": 0}]))
        assert len(list(pool.imap_unordered(_pid, [1, 2, 3]))) == 3      # still usable after a failed task
        with pytest.raises(RuntimeError, match="worker process of moestat's process pool died"):
            list(pool.imap_unordered(os._exit, [3]))
    finally:
        pool.close(abort=True)


def test_padding_to_the_monte_carlo_bucket_changes_a_fit_only_in_rounding():
    from moestat.data.design import bucket_size
    from moestat.montecarlo.worker import experiment_for, fit_replicate_cpu, mc_bucket, replicate_data
    from test_montecarlo import tiny_spec
    exp = experiment_for(tiny_spec().raw)
    n = 300
    assert bucket_size(n) == 320 and mc_bucket(n) == 1024
    a = fit_replicate_cpu(exp, n, 1, replicate_data(exp, n, 1, N=320))
    b = fit_replicate_cpu(exp, n, 1, replicate_data(exp, n, 1))
    assert b.fit.loglik == pytest.approx(a.fit.loglik, rel=1e-12) and a.fit.n_iter == b.fit.n_iter
    for u, v in zip(np.asarray(a.fit.params.expert.coef).ravel(), np.asarray(b.fit.params.expert.coef).ravel()):
        assert v == pytest.approx(u, rel=1e-9, abs=1e-12)


def test_reference_fit_is_cached_per_user_and_keyed_by_what_it_depends_on(tmp_path, monkeypatch):
    from moestat.montecarlo import reference, runner
    from test_montecarlo import tiny_spec
    monkeypatch.setenv("MOESTAT_REFERENCE_CACHE", str(tmp_path / "refs"))
    spec = tiny_spec(reference={"n": 400, "n_init": 1, "max_iter": 50})
    calls = []
    monkeypatch.setattr(reference, "fit_reference", lambda s, r: calls.append(r["n"]) or {"p": [float(r["n"])]})
    log = []
    with Store(tmp_path / "a.sqlite") as st:
        st.register(spec)
        assert runner.ensure_reference(spec, st, log.append) == {"p": [400.0]} and calls == [400]
    with Store(tmp_path / "b.sqlite") as st:                       # a new output folder: from the cache
        st.register(spec)
        assert runner.ensure_reference(spec, st, log.append) == {"p": [400.0]} and calls == [400]
        assert st.get_meta(spec.hash, "reference") == {"p": [400.0]}
    assert "per-user cache" in log[-1]
    renamed = tiny_spec(reference={"n": 400, "n_init": 1, "max_iter": 50},
                        losses=[{"name": "D1-again", "kind": "D1", "predicted": -0.5}])
    assert reference.cached_reference(renamed) == {"p": [400.0]}    # losses do not change the reference
    other = tiny_spec(reference={"n": 800, "n_init": 1, "max_iter": 50})
    assert reference.cached_reference(other) is None
    with Store(tmp_path / "c.sqlite") as st:
        st.register(other)
        assert runner.ensure_reference(other, st, log.append) == {"p": [800.0]} and calls == [400, 800]
    monkeypatch.setenv("MOESTAT_REFERENCE_CACHE", "0")
    assert reference.cached_reference(spec) is None and reference.cache_reference(spec, {}, 1.0) is None
    (tmp_path / "refs" / (reference.reference_key(other) + ".json")).write_text("{not json")
    monkeypatch.setenv("MOESTAT_REFERENCE_CACHE", str(tmp_path / "refs"))
    assert reference.cached_reference(other) is None                # a damaged entry is fitted again


def test_reference_fit_of_a_tiny_spec_round_trips_through_the_cache(tmp_path, monkeypatch):
    """The cached entry holds exactly the parameters that a direct fit of the reference gives."""
    from moestat.montecarlo import reference, runner
    from test_montecarlo import tiny_spec
    monkeypatch.setenv("MOESTAT_REFERENCE_CACHE", str(tmp_path / "refs"))
    spec = tiny_spec(reference={"n": 400, "n_init": 1, "max_iter": 50})
    with Store(tmp_path / "a.sqlite") as st:
        st.register(spec)
        got = runner.ensure_reference(spec, st, lambda m: None)
    direct = reference.fit_reference(spec, spec.raw["reference"])
    assert reference.cached_reference(Spec(spec.raw)) == got == direct
    assert np.isfinite(np.asarray(direct["expert"]["coef"], dtype=float)).all()


_FAULTS = """
import resource, sys
import numpy as np
from moestat._parallel import keep_heap_memory
applied = keep_heap_memory() if sys.argv[1] == "keep" else False
def touch():
    a = np.ones(8 << 20)          # 64 MiB: above glibc's largest mmap threshold (32 MiB)
    return float(a[::4096].sum())
touch()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    touch()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc mallopt")
def test_keep_heap_memory_reuses_freed_large_blocks_instead_of_faulting_fresh_pages():
    import subprocess
    import sys
    out = {}
    for mode in ("default", "keep"):
        r = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        applied, faults = r.stdout.split()
        out[mode] = (applied == "True", int(faults))
    # by default every 64 MiB block re-faults its pages: 16384 small pages each, or >= 32 transparent huge pages
    assert out["default"][1] >= 3 * 32
    assert out["keep"][0] and out["keep"][1] < out["default"][1] / 10
