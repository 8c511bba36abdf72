"""FoleyGen's network (visual encoder + LM) and its ``Trainer`` for ``foleybench train``.

Data: every train clip's audio is tokenised once by the config's codec (``[K, T]``) and
its frames sampled at ``visual_fps`` (the tiny CNN trains on them; frozen towers'
features are computed once). A batch is ``batch_size`` crops of ``crop_s`` seconds that
start on a frame that is also a codec step boundary, so crop frames and crop tokens cover
the same time. Loss: cross-entropy over the valid cells of the delayed sequence (nats per
token). Condition dropout replaces a clip's visual features by zeros (the null condition
of guidance) with probability ``cond_dropout``; the attention mechanism of a batch is
drawn from the three when ``train_attention="mixed"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.codebook_pattern import DelayPattern
from foleybench.baselines.foleygen_configs import FoleyGenConfig
from foleybench.baselines.foleygen_lm import MECHANISMS, FoleyGenLM, LMConfig
from foleybench.datasets.base import Manifest
from foleybench.family import Trainer

# codec facts by name, so a network can be built without loading a codec's weights
CODEC_SHAPES = {"foleycodec_16khz": dict(frame_rate=50.0, card=256, n_q=4),
                "encodec_24khz": dict(frame_rate=75.0, card=1024)}


def codec_shape(cfg: FoleyGenConfig) -> dict[str, Any]:
    """frame_rate (steps/s), card and n_q of cfg's codec."""
    from foleybench.baselines.codec import bandwidth_to_n_q

    s = dict(CODEC_SHAPES[cfg.codec])
    if cfg.codec == "encodec_24khz":
        s["n_q"] = bandwidth_to_n_q(cfg.bandwidth)
    return s


class FoleyGenNet(nn.Module):
    """The trainable part: ``visual`` (the tiny CNN; None for frozen towers, whose features
    come precomputed) and ``lm``."""

    def __init__(self, cfg: FoleyGenConfig):
        super().__init__()
        from foleybench.baselines.foleygen_visual import TinyCNN

        self.cfg = cfg
        cs = codec_shape(cfg)
        self.visual = TinyCNN(cfg.vis_width) if cfg.visual == "tiny_cnn" else None
        vis_dim = cfg.vis_width if self.visual is not None else {"clip": 512, "imagebind": 1024}[cfg.visual]
        self.lm = FoleyGenLM(LMConfig(cfg.variant, cs["n_q"], cs["card"], vis_dim, cs["frame_rate"],
                                      cfg.visual_fps, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.ff_mult))

    def features(self, frames_or_feats: torch.Tensor) -> torch.Tensor:
        """[B, F, 3, S, S] frames (tiny CNN) or [B, F, Dv] precomputed features -> [B, F, Dv]."""
        return self.visual(frames_or_feats) if self.visual is not None else frames_or_feats


def aligned_period(frame_rate: float, visual_fps: float) -> tuple[int, int]:
    """(frames, steps): the shortest whole number of visual frames that is also a whole
    number of codec steps (16 fps and 50 steps/s: 8 frames = 25 steps)."""
    for k in range(1, 1001):
        steps = k * frame_rate / visual_fps
        if abs(steps - round(steps)) < 1e-6:
            return k, int(round(steps))
    raise ValueError(f"codec {frame_rate} steps/s and video {visual_fps} fps share no period")


@dataclass
class ClipTokens:
    """One train clip: codes [K, T], visual input [F, ...] (frames or features)."""

    clip_id: str
    codes: torch.Tensor
    visual: torch.Tensor


@torch.no_grad()
def load_clips(manifest: Manifest, cfg: FoleyGenConfig) -> list[ClipTokens]:
    """Tokenise and frame every clip of ``manifest`` for ``cfg``."""
    from foleybench.baselines.codec import get_codec
    from foleybench.baselines.foleygen_visual import build_visual
    from foleybench.baselines.video_context import prepare_frames
    from foleybench.media import read_audio, read_video

    codec = get_codec(cfg.codec, mode=cfg.codec_mode, **({"bandwidth": cfg.bandwidth}
                                                         if cfg.codec == "encodec_24khz" else {}))
    frozen = None if cfg.visual == "tiny_cnn" else build_visual(cfg.visual)
    size = cfg.frame_size if frozen is None else 64
    out = []
    for r in manifest:
        a = read_audio(r.audio_source, sample_rate=codec.sample_rate).samples.mean(0)
        codes = codec.encode(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None])[0]
        v = read_video(r.video)
        n_fr = max(1, math.ceil(len(a) / codec.sample_rate * cfg.visual_fps))
        frames = prepare_frames(v.frames, v.fps, cfg.visual_fps, size, n_fr)
        vis = frames if frozen is None else frozen(frames[None])[0]
        out.append(ClipTokens(r.clip_id, codes, vis))
    return out


def crops(clips: Sequence[ClipTokens], cfg: FoleyGenConfig, rng: np.random.Generator) -> dict[str, Any]:
    """A training batch: codes [B, K, T], visual [B, F, ...], drop [B] bool (null condition),
    mechanism (str), n_valid [B] (codec steps of real audio). Crops start on an aligned
    frame; a clip shorter than a crop is padded (last frame repeated, token 0), and the
    padding's cells are not scored."""
    cs = codec_shape(cfg)
    pf, ps = aligned_period(cs["frame_rate"], cfg.visual_fps)
    n_per = max(1, int(round(cfg.crop_s * cfg.visual_fps / pf)))
    nf, nt = n_per * pf, n_per * ps
    codes, vis, valid = [], [], []
    for _ in range(cfg.batch_size):
        c = clips[int(rng.integers(len(clips)))]
        n_start = max(1, (c.visual.shape[0] - nf) // pf + 1)
        f0 = int(rng.integers(n_start)) * pf
        t0 = f0 // pf * ps
        cc, vv = c.codes[:, t0:t0 + nt], c.visual[f0:f0 + nf]
        n_valid = cc.shape[1]
        cc = F.pad(cc, (0, nt - cc.shape[1]))
        if vv.shape[0] < nf:
            vv = torch.cat([vv, vv[-1:].expand(nf - vv.shape[0], *vv.shape[1:])])
        codes.append(cc)
        vis.append(vv)
        valid.append(n_valid)
    mech = cfg.train_attention if cfg.train_attention != "mixed" else MECHANISMS[int(rng.integers(3))]
    return {"codes": torch.stack(codes), "visual": torch.stack(vis), "n_valid": torch.tensor(valid),
            "drop": torch.from_numpy(rng.random(cfg.batch_size) < cfg.cond_dropout), "mechanism": mech}


def lm_loss(net: FoleyGenNet, batch: dict[str, Any]) -> torch.Tensor:
    """Mean cross-entropy (nats per token) over valid cells of the delayed sequence."""
    lm = net.lm
    pat = DelayPattern(lm.cfg.n_q, lm.cfg.card)
    codes = batch["codes"]
    seq = pat.build(codes)
    B, K, S = seq.shape
    vis = net.features(batch["visual"])
    vis = torch.where(batch["drop"][:, None, None], torch.zeros_like(vis), vis)
    n_frames = torch.full((B,), vis.shape[1], dtype=torch.long)
    logits = lm(pat.lm_input(seq), vis, n_frames, batch["mechanism"])  # [B, K, S, card]
    # valid cells of each clip's own length (padding past a short clip is not scored)
    s = torch.arange(S)[None, None]
    q = torch.arange(K)[None, :, None]
    valid = (s >= q) & (s - q < batch["n_valid"][:, None, None])
    return F.cross_entropy(logits[valid], seq[valid])


class FoleyGenTrainer(Trainer):
    """Teacher-forced next-column loss on aligned crops."""

    def build_net(self, cfg: FoleyGenConfig) -> nn.Module:
        return FoleyGenNet(cfg)

    def load_data(self, train_split: Manifest, cfg: FoleyGenConfig) -> list[ClipTokens]:
        return load_clips(train_split, cfg)

    def batch(self, data: Sequence[ClipTokens], cfg: FoleyGenConfig, rng: np.random.Generator) -> dict[str, Any]:
        return crops(data, cfg, rng)

    def loss(self, net: nn.Module, batch: dict[str, Any], cfg: FoleyGenConfig) -> torch.Tensor:
        return lm_loss(net, batch)  # type: ignore[arg-type]

    def loss_label(self, cfg: FoleyGenConfig) -> str:
        return "training loss (nats/token)"
