"""What the Newton polish costs on an over-fitted model: k = 3 experts on data with one true expert.

x ~ U(-2, 2)^2, y = x_1 + N(0, 1), n = 1e5 (seed 0); ``GaussianMoE(3).fit``
with the defaults and with ``polish=False`` (warm: each timed fit follows an
untimed one), CPU time, and the polish's Newton steps, Hessians
(``parametrization._newton_state`` calls) and trial passes counted by
wrapping those functions.  Prints and writes ``results/overfit_polish.json``.

    OPENBLAS_NUM_THREADS=1 taskset -c 1 python benchmarks/overfit_polish.py
"""
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import moestat as ms  # noqa: E402
from moestat.fitting import parametrization as P  # noqa: E402

warnings.simplefilter("ignore")
calls = {"hessians": 0, "trials": 0}
_state, _trial = P._newton_state, P._trial


def counted_state(*a, **k):
    calls["hessians"] += 1
    return _state(*a, **k)


def counted_trial(*a, **k):
    calls["trials"] += 1
    return _trial(*a, **k)


P._newton_state, P._trial = counted_state, counted_trial

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
rng = np.random.default_rng(0)
x = rng.uniform(-2, 2, (n, 2))
y = x[:, 0] + rng.normal(size=n)
out = {"n": n, "load1": os.getloadavg()[0]}
for name, kw in (("default", {}), ("polish=False", {"polish": False})):
    model = ms.GaussianMoE(3)
    model.fit(x, y, **kw)
    calls.update(hessians=0, trials=0)
    t = time.process_time()
    res = model.fit(x, y, **kw)
    out[name] = {"cpu_s": time.process_time() - t, "loglik": float(res.loglik), "em_iterations": int(res.n_iter),
                 **calls}
    print("%-13s CPU %.2f s  loglik %.4f  EM iterations %d  Hessians %d  trial passes %d"
          % (name, out[name]["cpu_s"], res.loglik, res.n_iter, calls["hessians"], calls["trials"]))
os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
with open(os.path.join(HERE, "results", "overfit_polish.json"), "w") as fh:
    json.dump(out, fh, indent=1)
