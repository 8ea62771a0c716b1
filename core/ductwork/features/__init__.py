"""Features: durable workflows, declarative (``features:`` in config) or code-first.

The interpreter walks a feature's layers of sequences (sequences in one layer concurrently,
steps of one sequence in order), checkpointing each step's result in the run store (see
:mod:`ductwork.engine.steps`). Step types are a registry (:mod:`ductwork.features.types`);
functions are registered by name (:mod:`ductwork.features.functions`).
"""
