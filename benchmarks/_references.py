"""Make the test references (``tests/references/``: NumPy EM, direct SciPy MLE) importable from benchmark scripts.

Benchmark scripts run as ``python benchmarks/NAME.py``, so this directory is on
``sys.path``; ``import _references`` adds ``tests/`` after it.
"""
import os
import sys

TESTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
