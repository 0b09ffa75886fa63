"""Site percolation and the percolation argument for input-space connectivity (chapter 02).

The input-space connectivity paper argues that same-class regions of a classifier are
connected for a geometric reason: in high dimension a random set that fills even a small
fraction ``p`` of space percolates, because the site-percolation threshold ``p_c(d)``
of the hypercubic lattice falls like ``1 / (2d - 1)``. This package makes the argument
quantitative and tests it on networks:

* :mod:`~mcutils.percolation.lattice`: finite lattices, cluster labelling (``ndimage``
  and ``csgraph`` back ends), spanning and connection probabilities, the spanning
  estimator of ``p_c``;
* :mod:`~mcutils.percolation.growth`: clusters grown on unbounded lattices (Leath /
  Grassberger epidemic growth) and ``p_c`` by bisection on the bending of ``N(t)``;
* :mod:`~mcutils.percolation.thresholds`: published values, the ``1/(2d - 1)`` series,
  the threshold table (its claim checks are chapter 02's, in
  :mod:`mcutils.chapters.ch02_percolation`);
* :mod:`~mcutils.percolation.fields`: exact connection and spanning onsets of scalar
  fields on small grids, correlation lengths, null models (independent sites, Gaussian
  random field, ball);
* :mod:`~mcutils.percolation.networks`: slices of a network's input space through
  same-class pairs and at random, their onsets against the nulls on identical grids
  (the chapter's study of them is :mod:`mcutils.chapters.ch02_percolation`).

Every public name is available from ``mcutils.percolation`` directly. Used by chapter 02.
"""

from mcutils.percolation import fields, growth, lattice, networks, thresholds
from mcutils.percolation.fields import *  # noqa: F403
from mcutils.percolation.growth import *  # noqa: F403
from mcutils.percolation.lattice import *  # noqa: F403
from mcutils.percolation.networks import *  # noqa: F403
from mcutils.percolation.thresholds import *  # noqa: F403

__all__ = (fields.__all__ + growth.__all__ + lattice.__all__ + networks.__all__
           + thresholds.__all__)
