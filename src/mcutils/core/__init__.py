"""The bottom layer: what every other layer needs, importing nothing above it. Used by
every chapter.

* :mod:`~mcutils.core.checks`: :class:`~mcutils.core.checks.ParameterError` and argument checks;
* :mod:`~mcutils.core.paths`: where the repository and the checkpoint cache are;
* :mod:`~mcutils.core.profiles`: the papermill parameter profiles (``profiles/*.yaml``);
* :mod:`~mcutils.core.tensors`: per-row norms and broadcasting;
* :mod:`~mcutils.core.runtime`: device, seeds, the speed plan and the execution contexts;
* :mod:`~mcutils.core.store`: the load-or-train checkpoint cache;
* :mod:`~mcutils.core.stats`: intervals and tests;
* :mod:`~mcutils.core.report`: glued numbers, claims and provenance.
"""
