"""Independent references for the tests: a plain NumPy EM and direct likelihood optimisation with SciPy."""
