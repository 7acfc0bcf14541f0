"""The estimation pipeline: starts, the jitted EM/CEM/SEM loop, best-start choice and the Newton polish.

Gates and experts reach this layer only through the hooks declared on
:class:`moestat.gating.Gate` and :class:`moestat.experts.Expert`; the shared
Newton kernels (:mod:`moestat.fitting.newton`, :mod:`moestat.fitting.moments`)
sit below both families.
"""
