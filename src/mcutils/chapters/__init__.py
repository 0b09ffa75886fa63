"""The chapters layer: everything a chapter decides, in modules named after it
(``chNN_<topic>``; a long chapter splits into several, such as chapter 05's protocol and
its claims).

A chapter module owns its orchestration (sweeps, selections), its claims and their
controls, its tables and figures; the notebook only calls it. It imports the science,
training, registries and core below it, and nothing imports it but the notebooks and
the tooling. Used by chapters 01 to 06 (chapter 00 only trains and evaluates the default
model, through the science modules directly).
"""
