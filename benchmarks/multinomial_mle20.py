"""The default MultinomialMoE fit against direct optimisation from the truth on 20 steep-design data sets.

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/multinomial_mle20.py  (prints one line per data set and a summary)
"""
import time, numpy as np, warnings
warnings.simplefilter("ignore")
import moestat as ms
from moestat.truths import multinomial_regimes as mr
import _references  # noqa: F401  (tests/ on sys.path)
from references.direct import direct_mle
N = 2000
ms.MultinomialMoE(2).fit(*mr.simulate_steep(N, seed=[1, 1, 1])[:2])     # compile
ok, times, first = 0, [], []
for r in range(20):
    x, y, z = mr.simulate_steep(N, seed=[2024, N, r])
    X = np.column_stack([np.ones(N), x])
    ref = direct_mle(X, X, y, mr.STEEP_GATE, mr.STEEP_EXPERTS)[0]
    t = time.perf_counter(); res = ms.MultinomialMoE(2).fit(x, y); dt = time.perf_counter() - t
    lls = res.restarts.loglik.to_numpy()
    nreach = int((lls > ref - 1e-3).sum())
    ok += abs(res.loglik - ref) < 1e-4; times.append(dt)
    print("rep %2d  ref %.6f  fit %.6f  diff %+.1e  full runs in the MLE basin %2d/10  EM iters %4d  polish %d  %.2fs"
          % (r, ref, res.loglik, res.loglik - ref, nreach, res.n_iter, res.n_polish, dt), flush=True)
print("reached %d/20; time median %.2fs max %.2fs (40 screened candidates + 10 full EM runs per fit)" % (ok, np.median(times), np.max(times)))
