"""How often the unbounded MLE runs off to infinity on the d = 1 regime truths (design "d1") (|coef| > 30), n = 2000 and 10000.

Run: OPENBLAS_NUM_THREADS=1 python benchmarks/multinomial_regime_divergence.py  (about 20 minutes on 2 busy cores)
"""
import numpy as np, warnings, time
warnings.simplefilter("ignore")
import moestat as ms
from moestat.truths import multinomial_regimes as mr
import _references  # noqa: F401  (tests/ on sys.path)
from references.direct import direct_mle
for reg in (1, 2):
    for n in (2000, 10000):
        big, above, t0 = 0, 0, time.time()
        R = 10
        for rep in range(R):
            x, y, z = mr.simulate_regime(n, reg, seed=[2024, n, rep], design="d1")
            X = np.column_stack([np.ones(n), x])
            ref = direct_mle(X, X, y, mr.gate_coefficients(design="d1"), mr.expert_coefficients(reg, design="d1"))[0]
            res = ms.MultinomialMoE(2).fit(x, y)
            big += np.abs(res.params_tree.expert.coef).max() > 30 or np.abs(res.params_tree.gate.coef).max() > 30
            above += res.loglik > ref + 1e-4
        print("regime %d n %d: %d/%d fits with |coef| > 30, %d/%d above the truth-started optimum (%.0fs)" % (reg, n, big, R, above, R, time.time() - t0), flush=True)
