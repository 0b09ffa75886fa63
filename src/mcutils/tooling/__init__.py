"""The top layer: tools that run, check and measure the book. Never imported by the
chapters or the science; they run every chapter from outside, not by the chapters.

* :mod:`~mcutils.tooling.notebooks`: the chapter notebooks as files (their parameters,
  their code cells);
* :mod:`~mcutils.tooling.preflight`: the checks made before any chapter starts (CUDA,
  data, weights);
* :mod:`~mcutils.tooling.runner`: the papermill runner, ``python -m mcutils.book``;
* :mod:`~mcutils.tooling.gpucheck`: the headless runner for machines without Jupyter,
  ``python -m mcutils.gpucheck``;
* :mod:`~mcutils.tooling.prose`: the linter of numbers typed into chapter prose;
* :mod:`~mcutils.tooling.offline`: the check that built pages load nothing from the network.
"""
