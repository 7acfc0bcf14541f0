"""Data at the door: validation, formulas (patsy's public API), design matrices, padding, weights, groups.

:mod:`moestat.data.design` turns what the user passes (arrays, DataFrames,
formula strings) into the features-major, padded arrays of the kernels;
:mod:`moestat.data.validation` checks scalar options.
"""
