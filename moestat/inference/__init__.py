"""Inference on fitted models: results objects, observed information, bootstrap, LRT, model selection, tests."""
