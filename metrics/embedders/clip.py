"""CLIP ViT-B/32 (OpenAI weights) through open_clip: image and text towers for CLIPSIM.

Pretrained: OpenAI's ``ViT-B-32.pt`` (a TorchScript archive; its sha256 is the hash in
the published URL) or an open_clip state_dict (``open_clip_pytorch_model.bin``). Its
tensors load strictly into ``open_clip.create_model("ViT-B-32", force_quick_gelu=True)``
after dropping the three integer fields OpenAI stores (input_resolution, context_length,
vocab_size). Proxy: the same architecture, seeded random init.

Frames: ``n_frames`` (default 8) spread uniformly over the clip (or ``ctx.clip_seconds``),
each resized (short side 224, bicubic, antialiased, uint8 as open_clip's PIL path rounds),
centre-cropped 224, CLIP mean/std. ``embed_inputs`` -> ``[F, 512]`` L2-normalised image
embeddings (one row per frame); ``embed_text`` -> ``[N, 512]`` L2-normalised.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import Factory, build_net
from foleybench.metrics.embedders.video_base import VideoEmbedder, read_frames
from foleybench.metrics.functional import video_preprocess as vp
from foleybench.weights import WeightRecord, register

_OPENAI_SHA = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
register(WeightRecord(
    name="clip", filename="ViT-B-32.pt",
    url=f"https://openaipublic.azureedge.net/clip/models/{_OPENAI_SHA}/ViT-B-32.pt", sha256=_OPENAI_SHA,
    license="MIT (OpenAI CLIP)", paper="Radford et al. 2021 (CLIP)",
    note="sha256 as published in the URL path; open_clip's create_model(..., pretrained='openai') "
         "downloads the same file"))

_OPENAI_INT_KEYS = ("input_resolution", "context_length", "vocab_size")


def _make_model() -> torch.nn.Module:
    import open_clip

    # OpenAI trained with QuickGELU; open_clip sets it for pretrained="openai" and so do we.
    return open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)


class CLIPEmbedder(VideoEmbedder):
    name = "clip"
    version = "1"
    kind = "cross"
    rate = 0.0  # frames sampled by count, not by rate
    dim = 512
    frames_level = True

    def __init__(self, net: torch.nn.Module, *, weights: str, sha256: str, device: str = "cpu",
                 n_frames: int = 8, amp: bool = True):
        import open_clip

        super().__init__(net, weights=weights, checkpoint_sha256=sha256, device=device, amp=amp)
        self.n_frames = n_frames
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32")

    def preprocess_id(self) -> str:
        return (f"clip|{self.n_frames} frames uniform over clip|short224:{vp.RESIZE_METHODS['bicubic_aa_uint8']}"
                f"|centercrop224|clip-mean-std{self.precision_id()}")

    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """-> float32 ``[F, 3, 224, 224]`` normalised frames (F = n_frames, fewer if the clip is shorter)."""
        clip = read_frames(path, duration_s=ctx.clip_seconds,
                           pick=lambda n, fps: vp.sample_uniform(n, self.n_frames))
        x = vp.frames_to_tensor(clip.frames)
        x = vp.center_crop(vp.resize(x, vp.short_side_size(*x.shape[-2:], 224), "bicubic_aa_uint8"), 224)
        return vp.normalize(x, vp.CLIP_MEAN, vp.CLIP_STD).numpy()

    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """Per clip ``[F, 512]`` L2-normalised image embeddings (one per sampled frame)."""
        sizes = [len(x) for x in inputs]
        flat = np.concatenate([np.asarray(x) for x in inputs])
        # Identical frames (a still held, the static baseline: 8 equal frames per clip) go
        # through the network once and their embedding is repeated.
        slot: dict[bytes, int] = {}
        where, keep = [], []
        for i, f in enumerate(flat):
            j = slot.setdefault(hashlib.sha256(f.tobytes()).digest(), len(slot))
            where.append(j)
            if j == len(keep):
                keep.append(i)
        unique = flat if len(keep) == len(flat) else flat[keep]
        y = self._run(lambda x: torch.nn.functional.normalize(self.net.encode_image(x[0]).float(), dim=-1), [unique])
        if len(keep) < len(flat):
            y = y[torch.tensor(where)]
        return [a.numpy() for a in torch.split(y, sizes)]

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """``[N, 512]`` L2-normalised text embeddings (open_clip's tokenizer, 77 tokens)."""
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InputError("text", "empty or non-string prompt")
        tokens = self.tokenizer(list(texts)).numpy()
        y = self._run(lambda t: torch.nn.functional.normalize(self.net.encode_text(t[0]).float(), dim=-1), [tokens])
        return y.numpy()


def _load(path: Path, make: Factory) -> tuple[torch.nn.Module, dict[str, Any]]:
    """OpenAI's TorchScript file (its tensors) or an open_clip state_dict, strictly, less
    the three integer fields OpenAI stores."""
    sd = (dict(W.read_torchscript(path).state_dict()) if W.is_torchscript_archive(path)
          else W.read_state_dict(path))
    net = make()
    W.load_strict(net, {k: v for k, v in sd.items() if k not in _OPENAI_INT_KEYS}, str(path))
    return net, {}


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          **opts: Any) -> CLIPEmbedder:
    """mode "pretrained": OpenAI's ViT-B-32 (a user's other file: custom); "proxy": seeded."""
    b = build_net("clip", _make_model, mode=mode, checkpoint=checkpoint, seed=seed, load=_load)
    return CLIPEmbedder(b.net, weights=b.weights, sha256=b.sha256, device=device, **opts)
