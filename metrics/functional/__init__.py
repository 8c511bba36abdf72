"""Pure metric math (no state, no registry): Frechet distances, AV-Align, bootstrap."""
from foleybench.metrics.functional.av_align import AVAlignResult, av_align
from foleybench.metrics.functional.bootstrap import bootstrap_ci
from foleybench.metrics.functional.frechet import (
    FrechetReference,
    fd_infinity,
    frechet_distance,
    gaussian_stats,
)

__all__ = [
    "AVAlignResult",
    "FrechetReference",
    "av_align",
    "bootstrap_ci",
    "fd_infinity",
    "frechet_distance",
    "gaussian_stats",
]
