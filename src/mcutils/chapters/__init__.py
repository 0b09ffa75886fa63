"""The chapters layer: one module per chapter, holding everything the chapter decides.

A chapter module owns its orchestration (sweeps, selections), its claims and their
controls, its tables and figures; the notebook only calls it. It imports the science,
training, registries and core below it, and nothing imports it but the notebooks and
the tooling. Used by chapters 04 and 05 so far (the others still call the science
modules directly).
"""
