"""Input-space mode connectivity: paths between inputs, loss profiles, barriers, bypasses.

Everything here works on *batches of pairs* of inputs ``a, c`` of shape
``[pairs, C, H, W]`` in pixel space (normalisation is the model's first layer), with
one target class per pair, on whatever device the model lives on.

* :func:`linear_path`, :func:`~mcutils.inputspace.interpolate`: points on straight paths.
* :func:`~mcutils.inputspace.loss_profiles`: cross-entropy of the target class at evenly spaced points of
  every straight path, all pairs x points evaluated in large flattened batches.
* :func:`~mcutils.inputspace.barrier`: the barrier of a profile (``"gap"``: the highest loss on the path
  minus the larger endpoint loss; ``"max"``: the highest loss itself).
* :func:`~mcutils.inputspace.find_barrier`: the same barrier from an adaptive search (a coarse grid, then
  refinement around the highest local maxima) with far fewer forward passes.
* :func:`~mcutils.inputspace.bypass_barrier`: moves barrier points ``B`` of all pairs at once inside the
  hyperplane through ``B`` orthogonal to ``C - A`` to lower their loss.
* :func:`~mcutils.inputspace.connect`: recursive piecewise-linear paths (find the highest point of every
  bad segment, bypass it, repeat) and :func:`path_profiles` for their loss.
* :func:`~mcutils.inputspace.synthesize`: synthetic inputs of given classes by feature visualisation, and
  :func:`~mcutils.inputspace.synthetic_pairs`: same-class pairs as the paper's code makes them (``A`` with a
  smoothness penalty, ``C`` without).
* :func:`input_normalization`: the model's ``(mean, std)``; input optimisers take
  ``space="normalized"`` to run in the paper's normalised units. :data:`FVO_PAPER`,
  :data:`FVO_PAPER_EVOLUTION`, :data:`BYPASS_PAPER` and :data:`FREE_PAPER` hold the
  paper's settings.
* :func:`~mcutils.inputspace.path_length`, :func:`~mcutils.inputspace.relative_path_length`, :func:`~mcutils.inputspace.detour_angle`,
  :func:`~mcutils.inputspace.chord_deviation`: how far a piecewise path is from the straight line.

* :func:`~mcutils.inputspace.learn_input_curve`: learned Bezier and polychain curves between
  inputs (the weight-space curve fitting in input space), with :func:`curve_profiles`
  and :func:`curve_geometry` to check them (chapter 07).

The package is split by concept: :mod:`~mcutils.inputspace.paths`,
:mod:`~mcutils.inputspace.bypass`, :mod:`~mcutils.inputspace.learned`, :mod:`~mcutils.inputspace.synthesis` and
:mod:`~mcutils.inputspace.geometry`; every public name is importable from here.
:mod:`mcutils.chapters.ch01_input_space` and :mod:`mcutils.chapters.ch03_untrained` hold
the orchestration of chapters 01 and 03.
Pairing (:func:`mcutils.data.loading.matched_pairs`) and image folders
(:func:`mcutils.data.formats.load_image_folder`) live in :mod:`mcutils.data`.

Used by chapters 01, 03, 04 and 07.
"""

from mcutils.data import load_image_folder, matched_pairs
from mcutils.inputspace._common import BARRIER_KINDS, DEFAULT_BATCH_SIZE  # noqa: F401
from mcutils.inputspace.bypass import (
    BYPASS_PAPER,
    FREE_PAPER,
    PROJECTIONS,
    ConnectResult,
    bypass_barrier,
    connect,
    path_barriers,
    path_profiles,
    project_to_hyperplane,
)
from mcutils.inputspace.geometry import (
    chord_deviation,
    detour_angle,
    path_length,
    random_bend,
    relative_deviation,
    relative_path_length,
)
from mcutils.inputspace.learned import (
    InputCurve,
    curve_geometry,
    curve_points,
    curve_profiles,
    learn_input_curve,
)
from mcutils.inputspace.paths import (
    BarrierRecorder,
    barrier,
    class_reference_loss,
    connected_fraction,
    find_barrier,
    interpolate,
    interpolated_inputs,
    linear_path,
    loss_profiles,
    rounds_needed,
    segment_losses,
)
from mcutils.inputspace.synthesis import (
    FVO_PAPER,
    FVO_PAPER_EVOLUTION,
    SPACES,
    SyntheticPairs,
    input_normalization,
    penalty_gradient_ratio,
    synthesize,
    synthetic_pairs,
    synthetic_pairs_at,
    total_variation,
)

__all__ = [
    "PROJECTIONS",
    "SPACES",
    "interpolate",
    "linear_path",
    "interpolated_inputs",
    "loss_profiles",
    "segment_losses",
    "barrier",
    "find_barrier",
    "project_to_hyperplane",
    "total_variation",
    "bypass_barrier",
    "ConnectResult",
    "connect",
    "path_profiles",
    "path_barriers",
    "random_bend",
    "synthesize",
    "path_length",
    "relative_path_length",
    "detour_angle",
    "chord_deviation",
    "relative_deviation",
    "matched_pairs",
    "load_image_folder",
    "BARRIER_KINDS",
    "connected_fraction",
    "rounds_needed",
    "class_reference_loss",
    "BarrierRecorder",
    "input_normalization",
    "SyntheticPairs",
    "penalty_gradient_ratio",
    "synthetic_pairs",
    "synthetic_pairs_at",
    "FVO_PAPER",
    "FVO_PAPER_EVOLUTION",
    "BYPASS_PAPER",
    "FREE_PAPER",
    "InputCurve",
    "learn_input_curve",
    "curve_points",
    "curve_profiles",
    "curve_geometry",
]
