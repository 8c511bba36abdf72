"""ImageBind vision and audio towers (our implementation, official state_dict names).

Scope (decision): only the vision and audio modalities are built. The official
``imagebind_huge.pth`` holds six modalities under ``modality_{preprocessors,trunks,heads,
postprocessors}.<modality>.``; :func:`split_checkpoint` keeps the vision/audio entries
(loaded strictly: every key and shape must match) and drops the text, depth, thermal and
imu entries, reporting how many it dropped per modality. Anything else is kept and so
fails the strict load. Names and shapes follow facebookresearch/ImageBind
(imagebind/models/{imagebind_model,multimodal_preprocessors,transformer,helpers}.py).

Vision: 2-frame clips ``[B, 3, 2, 224, 224]`` -> Conv3d (2, 14, 14) patches (16x16x1 = 256)
+ CLS + learned positions -> LayerNorm(1e-6) -> pre-norm blocks -> LN -> CLS -> Linear
(no bias) -> L2-normalise. Audio: fbank ``[B, 1, 128, 204]`` -> Conv2d 16 stride 10
(12x19 = 228 patches) -> LayerNorm -> CLS + positions -> blocks whose attention has
``bias_k``/``bias_v`` -> LN -> CLS -> Linear -> L2-normalise x exp(log_logit_scale) (= 20).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

MODALITIES_KEPT = ("vision", "audio")
MODALITIES_DROPPED = ("text", "depth", "thermal", "imu")
_GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")


@dataclass(frozen=True)
class ImageBindConfig:
    vision_dim: int = 1280
    vision_blocks: int = 32
    vision_heads: int = 16
    audio_dim: int = 768
    audio_blocks: int = 12
    audio_heads: int = 12
    out_dim: int = 1024


CONFIGS = {
    "huge": ImageBindConfig(),
    # Reduced proxy for tests and CPU runs: same tokenisation and preprocessing, narrow and shallow.
    "small": ImageBindConfig(vision_dim=64, vision_blocks=2, vision_heads=4, audio_dim=64, audio_blocks=2,
                             audio_heads=4, out_dim=128),
}
N_VISION_PATCHES = 16 * 16  # 224 / 14 squared, one temporal patch of 2 frames
N_AUDIO_PATCHES = ((128 - 16) // 10 + 1) * ((204 - 16) // 10 + 1)  # 12 x 19 = 228


class PosEmbed(nn.Module):
    """``pos_embed`` [1, 1 + patches, dim] (``pos_embedding_helper`` upstream)."""

    def __init__(self, n_tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, dim))

    def reset_parameters(self) -> None:
        nn.init.normal_(self.pos_embed, std=self.pos_embed.shape[-1] ** -0.5)  # openclip-style init


class RepeatToTwoFrames(nn.Module):
    """Upstream PadIm2Video(repeat, 2): an image or 1-frame clip is repeated to 2 frames."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        return x.repeat(1, 1, 2, 1, 1) if x.shape[2] == 1 else x


class Stem(nn.Module):
    def __init__(self, proj: nn.Module, norm: nn.Module | None):
        super().__init__()
        self.proj = proj
        if norm is not None:
            self.norm_layer = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)  # [B, patches, dim]
        return self.norm_layer(x) if hasattr(self, "norm_layer") else x


class Tokenizer(nn.Module):
    """Upstream RGBDTPreprocessor/AudioPreprocessor: stem, CLS token, positions."""

    def __init__(self, stem: Stem, n_patches: int, dim: int):
        super().__init__()
        self.rgbt_stem = stem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding_helper = PosEmbed(1 + n_patches, dim)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.cls_token, std=self.cls_token.shape[-1] ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.rgbt_stem(x)
        if t.shape[1] + 1 != self.pos_embedding_helper.pos_embed.shape[1]:
            raise ValueError(f"input gives {t.shape[1]} patches, the network expects "
                             f"{self.pos_embedding_helper.pos_embed.shape[1] - 1}")
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.pos_embedding_helper.pos_embed


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block (upstream BlockWithMasking): x + attn(norm_1 x); x + mlp(norm_2 x).
    Sequence-first ``[L, B, D]`` like the nn.MultiheadAttention it wraps."""

    def __init__(self, dim: int, heads: int, bias_kv: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, bias=True, add_bias_kv=bias_kv)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class Trunk(nn.Module):
    """``pre_transformer_layer.0`` (LayerNorm for vision, Identity for audio) then blocks."""

    def __init__(self, dim: int, n_blocks: int, heads: int, pre_ln: bool, bias_kv: bool):
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_ln else nn.Identity())
        self.blocks = nn.Sequential(*[Block(dim, heads, bias_kv) for _ in range(n_blocks)])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [B, L, D] -> [B, L, D]
        x = self.pre_transformer_layer(tokens).transpose(0, 1)
        return self.blocks(x).transpose(0, 1)


class SelectCLS(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class LogitScale(nn.Module):
    """Fixed scale ``exp(log_logit_scale)`` (a persistent buffer upstream, so in the file)."""

    def __init__(self, init: float):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(init)))

    def reset_parameters(self) -> None:
        self.log_logit_scale.fill_(math.log(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.log_logit_scale.exp().clamp(max=100.0)


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class ImageBindAV(nn.Module):
    """Vision + audio towers. ``embed_vision([B, S, 3, 2, 224, 224])`` and
    ``embed_audio([B, S, 1, 128, 204])`` -> ``[B, out_dim]``: each of the S clips is
    embedded and L2-normalised (audio then x20), and the S results are averaged (not
    re-normalised), as ImageBindModel.forward does for 5-D+ inputs."""

    def __init__(self, cfg: ImageBindConfig = ImageBindConfig()):
        super().__init__()
        self.cfg = cfg
        v, a = cfg.vision_dim, cfg.audio_dim
        vision_stem = Stem(nn.Sequential(RepeatToTwoFrames(), nn.Conv3d(3, v, (2, 14, 14), (2, 14, 14), bias=False)),
                           None)
        audio_stem = Stem(nn.Conv2d(1, a, 16, 10, bias=False), nn.LayerNorm(a))
        self.modality_preprocessors = nn.ModuleDict({
            "vision": Tokenizer(vision_stem, N_VISION_PATCHES, v),
            "audio": Tokenizer(audio_stem, N_AUDIO_PATCHES, a)})
        self.modality_trunks = nn.ModuleDict({
            "vision": Trunk(v, cfg.vision_blocks, cfg.vision_heads, pre_ln=True, bias_kv=False),
            "audio": Trunk(a, cfg.audio_blocks, cfg.audio_heads, pre_ln=False, bias_kv=True)})
        self.modality_heads = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(d, eps=1e-6), SelectCLS(), nn.Linear(d, cfg.out_dim, bias=False))
            for m, d in (("vision", v), ("audio", a))})
        self.modality_postprocessors = nn.ModuleDict({
            "vision": Normalize(), "audio": nn.Sequential(Normalize(), LogitScale(20.0))})

    def _rows(self, m: str, x: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` inputs of modality ``m`` -> their ``[N, out_dim]`` postprocessed embeddings."""
        x = self.modality_preprocessors[m](x)
        x = self.modality_heads[m](self.modality_trunks[m](x))
        return self.modality_postprocessors[m](x)

    def _embed(self, m: str, x: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[:2]
        return self._rows(m, x.reshape(b * s, *x.shape[2:])).reshape(b, s, -1).mean(dim=1)

    def embed_vision(self, x: torch.Tensor) -> torch.Tensor:
        return self._embed("vision", x)

    def embed_vision_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 2, 224, 224]`` 2-frame clips -> ``[N, out_dim]`` unit vectors (not averaged)."""
        return self._rows("vision", x)

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return self._embed("audio", x)


def split_checkpoint(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """(entries to load strictly, {dropped modality: key count}) from a full ImageBind state_dict."""
    kept: dict[str, torch.Tensor] = {}
    dropped: dict[str, int] = {}
    for k, t in sd.items():
        parts = k.split(".")
        if len(parts) > 2 and parts[0] in _GROUPS and parts[1] in MODALITIES_DROPPED:
            dropped[parts[1]] = dropped.get(parts[1], 0) + 1
        else:
            kept[k] = t
    return kept, dropped
