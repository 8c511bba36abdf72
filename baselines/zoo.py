"""Model families that register ``family.tag`` names when imported (``load_plugins``)."""
from __future__ import annotations

from foleybench.registry import MODELS

# Martel & Wagner 2023 (arXiv 2308.12408): three waveform models, three sizes each.
for _family in ("deepfusion", "wavenet_video", "av_transformer"):
    for _tag in ("debug", "tiny", "paper"):
        MODELS.add(f"{_family}.{_tag}", "foleybench.baselines.martel_wagner:build_model",
                   {"family": _family, "config": _tag}, tasks=("v2a",), family=_family,
                   paper="arXiv 2308.12408")

# The AV transformer's first variant in the paper: strided-convolution audio tokens.
for _tag in ("strided_debug", "strided_tiny"):
    MODELS.add(f"av_transformer.{_tag}", "foleybench.baselines.martel_wagner:build_model",
               {"family": "av_transformer", "config": _tag}, tasks=("v2a",), family="av_transformer",
               paper="arXiv 2308.12408")
