"""Model families that register ``family.tag`` names when imported (``load_plugins``)."""
from __future__ import annotations

from foleybench.registry import MODELS

# Martel & Wagner 2023 (arXiv 2308.12408): three waveform models, three sizes each.
for _family in ("deepfusion", "wavenet_video", "av_transformer"):
    for _tag in ("debug", "tiny", "paper"):
        MODELS.add(f"{_family}.{_tag}", "foleybench.baselines.martel_wagner:build_model",
                   {"family": _family, "config": _tag}, tasks=("v2a",), family=_family,
                   paper="arXiv 2308.12408")
