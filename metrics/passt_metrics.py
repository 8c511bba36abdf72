"""FD-PaSST and KL-PaSST (``fd_passt``, ``kl_passt``): the shared FD and KL metrics on the
``passt`` embedder, with its input protocol as the option ``split``.

- ``split="av-benchmark"`` (default; MMAudio Table 1): each clip cut to the protocol length,
  then zero-padded to 10 s; one 768-d vector and one logit row per clip.
- ``split="audiocraft"`` (named variant, ``--opt fd_passt.split=audiocraft``): audiocraft's
  ``PasstKLDivergenceMetric`` input: 10 s segments without padding, segments of 0.15 s or
  less dropped. FD takes every segment as a sample (``n_frames_*`` counts them); KL scores
  segment i of the generated clip against segment i of the reference and averages over
  the clip's segments (a clip whose two sides have different segment counts is excluded:
  audiocraft requires equal shapes). Only the input differs: KL stays KL(ref || gen) over
  log-softmax with no epsilon (audiocraft adds 1e-6 to the generated probabilities).

``is_passt`` is the shared :class:`~foleybench.metrics.inception_score.InceptionScore` on
``passt`` (av-benchmark: 10 splits, seed 2020); audiocraft has no PaSST IS, so it has no
split option.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from foleybench.api import ClipPair, FoleybenchError, ScoreContext
from foleybench.metrics.base import Excluded
from foleybench.metrics.embedders import get_embedder
from foleybench.metrics.embedders.passt import N_CLASSES, SPLITS
from foleybench.metrics.fd import FDMetric, FrechetMetric
from foleybench.metrics.functional.kl import kl_divergence
from foleybench.metrics.kl import KLMetric


def _embedder_opts(metric: str, split: str) -> dict[str, Any]:
    """get_embedder options: none for the default, so fd_passt, kl_passt and is_passt share
    one embedder instance (and its one forward pass per file)."""
    if split not in SPLITS:
        raise FoleybenchError(f"{metric}.split: must be one of {list(SPLITS)}, not {split!r}")
    return {} if split == SPLITS[0] else {"split": split}


class PasstFD(FDMetric):
    """FD-PaSST: Frechet distance of PaSST embeddings (768-d), lower is better."""

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int | None = None, fd_inf: bool = False,
                 ddof: int = 1, split: str = "av-benchmark"):
        opts = _embedder_opts("fd_passt", split)
        self.split = split
        FrechetMetric.__init__(self, ctx, "passt", ddof, **opts)
        self.name = "fd_passt"
        self.n_boot = n_boot if n_boot is not None else (200 if self.dim <= 256 else 0)
        self.fd_inf = fd_inf


class PasstKL(KLMetric):
    """KL-PaSST: mean per-clip KL(softmax(ref logits) || softmax(gen logits)), lower is better."""

    def __init__(self, ctx: ScoreContext | None = None, n_boot: int = 1000, split: str = "av-benchmark"):
        opts = _embedder_opts("kl_passt", split)
        self.split = split
        super(KLMetric, self).__init__(ctx)  # KLMetric's own __init__ would build the default embedder
        self.embedder_name, self.name, self.n_boot = "passt", "kl_passt", n_boot
        self.embedder = get_embedder("passt", self.ctx, **opts)

    def batch_rows(self, pairs: list[ClipPair], a: list[np.ndarray], b: list[np.ndarray]) -> list[Any]:
        if self.split == "av-benchmark":
            return super().batch_rows(pairs, a, b)
        rows: list[Any] = []
        for g, r in zip(a, b):  # [S, 527] per side: segment i against segment i
            g, r = np.asarray(g).reshape(-1, N_CLASSES), np.asarray(r).reshape(-1, N_CLASSES)
            if g.shape != r.shape:
                rows.append(Excluded(f"kl_passt (split=audiocraft): the generated audio has {len(g)} 10 s "
                                     f"segment(s), the reference {len(r)}; segments are compared one to one"))
            else:
                rows.append(float(np.mean(kl_divergence(r, g))))
        return rows

    def extras(self, ids: list[str], values: np.ndarray) -> dict[str, Any]:
        extras = super().extras(ids, values)
        if self.split == "audiocraft":
            extras["per_clip_value"] = "mean over the clip's 10 s segments of KL(ref segment || gen segment)"
        return extras
