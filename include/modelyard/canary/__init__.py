"""Canary analysis: live metrics of the canary against production, and the move they decide.

``analysis`` compares the two arms of the request log (scipy.stats), ``decision`` promotes,
rolls back or waits through the registry's stages, ``report`` records every analysis in MLflow,
``loadgen`` is the demo's simulated users, ``auto`` moves a freshly gated version to canary.
"""
