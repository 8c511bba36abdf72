"""FoleyGen's visual encoders behind one interface: frames ``[B, F, 3, S, S]`` -> ``[B, F, dim]``.

Frames come in at the config's ``visual_fps`` (``video_context.prepare_frames``: the
frame shown at each time, area-resized to ``frame_size``, values in [-1, 1]).

- ``tiny_cnn``: a small CNN trained with the LM. It sees each frame and its difference
  from the previous one (6 channels), so a per-frame feature carries motion: synthfoley's
  sounds start where things move or hit, which a single still frame cannot show.
- ``clip``: CLIP ViT-B/32 image embeddings per frame, the network and weights record of
  the CLIPSIM evaluator (metrics/embedders/clip.py), frozen; 512-d, L2-normalised.
- ``imagebind``: the ImageBind vision tower of the IB-score evaluator
  (metrics/embedders/imagebind.py), frozen; each frame as a still image (two identical
  frames, as ImageBind embeds images); 1024-d for the huge weights.

The frozen encoders load through the evaluators' ``build`` (strict, the weights registry;
``mode="proxy"`` for seeded random init).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VISUAL_ENCODERS = ("tiny_cnn", "clip", "imagebind")


class VisualEncoder(nn.Module):
    """frames float ``[B, F, 3, S, S]`` in [-1, 1] -> features ``[B, F, dim]``."""

    dim: int
    trainable: bool = False

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TinyCNN(VisualEncoder):
    """Frame + frame difference -> 3 strided convs -> global mean -> ``dim`` (trainable)."""

    trainable = True

    def __init__(self, dim: int = 64, width: int = 16):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(
            nn.Conv2d(6, width, 3, 2, 1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.GELU())
        self.out = nn.Linear(4 * width, dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B, Fr = frames.shape[:2]
        prev = torch.cat([frames[:, :1], frames[:, :-1]], 1)  # the first frame's difference is 0
        h = self.net(torch.cat([frames, frames - prev], 2).flatten(0, 1))  # [B*F, C, s, s]
        # mean and max over space: max keeps a small moving object's response
        h = torch.cat([h.mean((-2, -1)), h.amax((-2, -1))], -1)
        return self.out(h).view(B, Fr, self.dim)


class _Frozen(VisualEncoder):
    """A frozen evaluator tower run on 224 x 224 frames with CLIP's mean/std."""

    size = 224

    def __init__(self, embedder: object, dim: int):
        super().__init__()
        self.embedder, self.dim = embedder, dim
        self.net = embedder.net  # type: ignore[attr-defined]
        self.net.requires_grad_(False)

    def _images(self, frames: torch.Tensor) -> torch.Tensor:
        from foleybench.metrics.functional import video_preprocess as vp

        x = (frames.flatten(0, 1) + 1) / 2  # [N, 3, S, S] in [0, 1]
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0, 1)
        mean = torch.tensor(vp.CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(vp.CLIP_STD, device=x.device)[:, None, None]
        return (x - mean) / std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B, Fr = frames.shape[:2]
        return self.embed(self._images(frames)).float().view(B, Fr, -1)


class CLIPFrames(_Frozen):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.encode_image(images).float(), dim=-1)


class ImageBindFrames(_Frozen):
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        # the tower takes [N, clips, 3, time, H, W]: one clip per frame, the frame twice in time
        return self.net.embed_vision(images[:, None, :, None].expand(-1, -1, -1, 2, -1, -1))


def build_visual(name: str, dim: int = 64, mode: str = "pretrained", seed: int = 0) -> VisualEncoder:
    """The visual encoder ``name`` (:data:`VISUAL_ENCODERS`); ``dim`` is the tiny CNN's width
    (the frozen towers have their own); ``mode`` for the frozen towers' weights."""
    if name == "tiny_cnn":
        return TinyCNN(dim)
    if name == "clip":
        from foleybench.metrics.embedders.clip import build

        e = build(mode=mode, seed=seed)
        return CLIPFrames(e, 512)
    if name == "imagebind":
        from foleybench.metrics.embedders.imagebind import build as build_ib

        e = build_ib(mode=mode, seed=seed)
        return ImageBindFrames(e, e.dim)
    raise ValueError(f"unknown visual encoder {name!r} (known: {', '.join(VISUAL_ENCODERS)})")
