"""Synchformer (Iashin et al. 2024) as av-benchmark uses it: our implementation, upstream names.

Written from a reading of hkchengrex/av-benchmark ``av_bench/synchformer`` (synchformer.py,
motionformer.py, video_model_builder.py, vit_helper.py, ast.py, hf_src/modeling_ast.py,
transformer.py) and v-iashin/Synchformer; no upstream code is copied. Every parameter
keeps its upstream name and shape so ``synchformer_state_dict.pth`` loads strictly
(tests/data/synchformer_keys.json is the manifest; tests/test_desync.py checks it, and
compares against the upstream module on the meta device when a checkout is available).

- ``vfeat_extractor`` (MotionFormer, divided space-time ViT-B/16): one 16-frame 224 px
  segment -> Conv3d (2, 16, 16) tubelets (8 x 14 x 14) + CLS, spatial ``pos_embed``
  tiled over time + ``temp_embed``, 12 blocks of [time attention (norm3), space attention
  (norm1), MLP (norm2)] where the CLS token attends to every token and is prepended to
  each frame's / each patch's sequence, final LayerNorm (eps 1e-6); then per frame a
  pre-norm ``nn.TransformerEncoderLayer`` over the 196 patches with its own CLS token
  (``spatial_attn_agg``): 8 tokens of ``dim`` per segment. ``patch_embed`` (Conv2d) is
  in the checkpoint but unused, as upstream.
- ``afeat_extractor`` (AST): log-mel ``[128, 66]`` -> Conv2d 16, stride 10 (12 x 6
  patches) + CLS + distillation token + positions (truncated to 74), 12 pre-norm layers
  (LayerNorm eps 1e-12), final LayerNorm; then per time step an encoder layer over the 12
  frequency patches with a CLS token (``freq_attn_agg``): 6 tokens per segment.
- ``vproj``/``aproj`` (Linear), then ``transformer``: [OFF, 14 x 8 video tokens, MOD,
  14 x 6 audio tokens] (198) with input LayerNorms, learned positions, 3 minGPT blocks
  (8 heads), ``ln_f`` and ``off_head`` on the OFF token: 21 logits, class k = offset
  ``-2.0 + 0.2 k`` s.

Dropouts are omitted (inference only). Attention uses ``scaled_dot_product_attention``
(same math as upstream's explicit softmax(QK^T/sqrt(d))V, float rounding aside).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# Fixed by the protocol and the checkpoint.
IMG = 224
PATCH = 16
SEG_FRAMES = 16
TUBELET = 2
VT = SEG_FRAMES // TUBELET          # 8 video tokens per segment (after spatial aggregation)
GRID = IMG // PATCH                  # 14
N_MELS = 128
SPEC_T = 66                          # mel frames per 0.64 s segment (65 computed, padded to 66)
A_PATCH, A_STRIDE = 16, 10
AF = (N_MELS - A_PATCH) // A_STRIDE + 1   # 12 frequency patches
AT = (SPEC_T - A_PATCH) // A_STRIDE + 1   # 6 time patches = audio tokens per segment
WINDOW_SEGMENTS = 14
N_GLOBAL_TOKENS = 1 + WINDOW_SEGMENTS * VT + 1 + WINDOW_SEGMENTS * AT  # 198
N_CLASSES = 21


@dataclass(frozen=True)
class SynchformerConfig:
    dim: int = 768
    video_depth: int = 12
    video_heads: int = 12
    audio_depth: int = 12
    audio_heads: int = 12
    mlp_ratio: int = 4
    global_layers: int = 3
    global_heads: int = 8


CONFIGS = {
    "full": SynchformerConfig(),
    # Reduced proxy for tests and CPU runs: same tokenisation, preprocessing and code path,
    # narrow and shallow. Its scores are proxy scores of a different (smaller) network.
    "small": SynchformerConfig(dim=64, video_depth=2, video_heads=4, audio_depth=2, audio_heads=4,
                               global_layers=1, global_heads=4),
}


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """[B, N, h*d] -> [B, h, N, d]."""
    b, n, _ = x.shape
    return x.view(b, n, h, -1).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """[B, h, N, d] -> [B, N, h*d]."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


# ----------------------------------------------------------------------------- video
class AggEncoderLayer(nn.TransformerEncoderLayer):
    """Pre-norm encoder layer with a learned CLS token prepended; returns the CLS output.
    (upstream ``BaseEncoderLayer``: names ``cls_token`` + torch's layer names)."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__(d_model=dim, nhead=heads, dim_feedforward=ffn, dropout=0.0, activation="gelu",
                         layer_norm_eps=1e-6, batch_first=True, norm_first=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, D] -> [B, D]: the CLS token's output."""
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return super().forward(x)[:, 0]


class Conv2dProj(nn.Module):
    """``patch_embed.proj`` (2D; kept for the checkpoint, unused as upstream)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)


class Conv3dProj(nn.Module):
    """``patch_embed_3d.proj``: (2, 16, 16) tubelets."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv3d(3, dim, (TUBELET, PATCH, PATCH), stride=(TUBELET, PATCH, PATCH))


class DividedAttention(nn.Module):
    """Attention within each frame ("space") or across frames at one position ("time");
    the CLS query attends to all tokens, and the CLS key/value join every group."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mode: str, frames: int) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = (_heads(t, h) for t in self.qkv(x).chunk(3, dim=-1))  # [B, h, N, dh]
        cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)      # [B, h, 1, dh]
        dh = q.shape[-1]
        patches = (n - 1) // frames

        def group(t: torch.Tensor) -> torch.Tensor:  # [B, h, F*P, dh] -> [B, h, G, L, dh]
            t = t[:, :, 1:].reshape(b, h, frames, patches, dh)
            return t if mode == "space" else t.transpose(2, 3)

        qg, kg, vg = group(q), group(k), group(v)
        g = kg.shape[2]
        kg = torch.cat([k[:, :, :1, None].expand(b, h, g, 1, dh), kg], dim=3)
        vg = torch.cat([v[:, :, :1, None].expand(b, h, g, 1, dh), vg], dim=3)
        out = F.scaled_dot_product_attention(qg, kg, vg)  # [B, h, G, L, dh]
        if mode == "time":
            out = out.transpose(2, 3)
        out = torch.cat([cls_out, out.reshape(b, h, n - 1, dh)], dim=2)
        return self.proj(_merge(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DividedSpaceTimeBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DividedAttention(dim, heads)
        self.timeattn = DividedAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.timeattn(self.norm3(x), "time", VT)
        x = x + self.attn(self.norm1(x), "space", VT)
        return x + self.mlp(self.norm2(x))


class MotionFormer(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        d = cfg.dim
        self.patch_embed = Conv2dProj(d)
        self.patch_embed_3d = Conv3dProj(d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID + 1, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, VT, d))
        self.blocks = nn.ModuleList([DividedSpaceTimeBlock(d, cfg.video_heads, cfg.mlp_ratio)
                                     for _ in range(cfg.video_depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.spatial_attn_agg = AggEncoderLayer(d, cfg.video_heads, cfg.mlp_ratio * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 16, 224, 224]`` segments -> ``[N, 8, D]``."""
        n = x.shape[0]
        x = self.patch_embed_3d.proj(x)  # [N, D, 8, 14, 14]
        d = x.shape[1]
        x = x.flatten(2).transpose(1, 2)  # [N, 8*196, D], frame-major
        p = GRID * GRID
        pos = self.pos_embed[:, 1:].repeat(1, VT, 1) + self.temp_embed.repeat_interleave(p, dim=1)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        x = x + torch.cat([self.pos_embed[:, :1], pos], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x[:, 1:])  # [N, 8*196, D]
        x = x.reshape(n * VT, p, d)  # each frame's patches
        return self.spatial_attn_agg.pool(x).view(n, VT, d)


# ----------------------------------------------------------------------------- audio
class ASTPatchEmbeddings(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.projection = nn.Conv2d(1, dim, A_PATCH, stride=A_STRIDE)


class ASTEmbeddings(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.patch_embeddings = ASTPatchEmbeddings(dim)
        self.position_embeddings = nn.Parameter(torch.zeros(1, AF * AT + 2, dim))

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``[N, 128, 66]`` (mel, time) -> ``[N, 2 + 72, D]`` (patches frequency-major)."""
        x = self.patch_embeddings.projection(spec.unsqueeze(1)).flatten(2).transpose(1, 2)
        n = x.shape[0]
        x = torch.cat([self.cls_token.expand(n, -1, -1), self.distillation_token.expand(n, -1, -1), x], dim=1)
        return x + self.position_embeddings


class ASTSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class ASTAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attention = ASTSelfAttention(dim, heads)
        self.output = _Dense(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, h = self.attention, self.attention.heads
        y = F.scaled_dot_product_attention(_heads(a.query(x), h), _heads(a.key(x), h), _heads(a.value(x), h))
        return self.output.dense(_merge(y))


class ASTLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.attention = ASTAttention(dim, heads)
        self.intermediate = _Dense(dim, ffn)
        self.output = _Dense(ffn, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class ASTEncoder(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.layer = nn.ModuleList([ASTLayer(cfg.dim, cfg.audio_heads, cfg.mlp_ratio * cfg.dim)
                                    for _ in range(cfg.audio_depth)])


class ASTModel(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.embeddings = ASTEmbeddings(cfg.dim)
        self.encoder = ASTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg.dim, eps=1e-12)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(spec)
        for layer in self.encoder.layer:
            x = layer(x)
        return self.layernorm(x)


class AST(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        self.ast = ASTModel(cfg)
        self.freq_attn_agg = AggEncoderLayer(cfg.dim, cfg.audio_heads, cfg.mlp_ratio * cfg.dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """``[N, 128, 66]`` normalised log-mel segments -> ``[N, 6, D]``."""
        x = self.ast(spec)[:, 2:]  # [N, 12*6, D]
        n, _, d = x.shape
        x = x.view(n, AF, AT, d).transpose(1, 2).reshape(n * AT, AF, d)  # each time step's frequencies
        return self.freq_attn_agg.pool(x).view(n, AT, d)


# ----------------------------------------------------------------------------- fusion
class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.key = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.heads
        y = F.scaled_dot_product_attention(_heads(self.query(x), h), _heads(self.key(x), h), _heads(self.value(x), h))
        return self.proj(_merge(y))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class PosEmb(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.pos_emb = nn.Parameter(torch.zeros(1, N_GLOBAL_TOKENS, dim))


class GlobalTransformer(nn.Module):
    def __init__(self, cfg: SynchformerConfig):
        super().__init__()
        d = cfg.dim
        self.vis_in_lnorm = nn.LayerNorm(d)
        self.aud_in_lnorm = nn.LayerNorm(d)
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_emb_cfg = PosEmb(d)
        self.blocks = nn.Sequential(*[Block(d, cfg.global_heads) for _ in range(cfg.global_layers)])
        self.ln_f = nn.LayerNorm(d)
        self.off_head = nn.Linear(d, N_CLASSES)

    def forward(self, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b = v.shape[0]
        x = torch.cat([self.OFF_tok.expand(b, -1, -1), self.vis_in_lnorm(v),
                       self.MOD_tok.expand(b, -1, -1), self.aud_in_lnorm(a)], dim=1)
        if x.shape[1] != N_GLOBAL_TOKENS:
            raise ValueError(f"Synchformer compares {WINDOW_SEGMENTS}-segment windows ({N_GLOBAL_TOKENS} tokens), "
                             f"got {x.shape[1]} tokens")
        x = self.ln_f(self.blocks(x + self.pos_emb_cfg.pos_emb))
        return self.off_head(x[:, 0])


class Synchformer(nn.Module):
    def __init__(self, cfg: SynchformerConfig = CONFIGS["full"]):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.vfeat_extractor = MotionFormer(cfg)
        self.afeat_extractor = AST(cfg)
        self.vproj = nn.Linear(d, d)
        self.aproj = nn.Linear(d, d)
        self.transformer = GlobalTransformer(cfg)

    # Same call signatures as upstream's Synchformer (the peer test calls both).
    def extract_vfeats(self, vis: torch.Tensor) -> torch.Tensor:
        """``[B, S, 16, 3, 224, 224]`` -> ``[B, S, 8, D]``."""
        b, s = vis.shape[:2]
        x = vis.flatten(0, 1).transpose(1, 2)  # [B*S, 3, 16, H, W]
        return self.vfeat_extractor(x).view(b, s, VT, -1)

    def extract_afeats(self, aud: torch.Tensor) -> torch.Tensor:
        """``[B, S, 1, 128, 66]`` -> ``[B, S, 6, D]``."""
        b, s = aud.shape[:2]
        return self.afeat_extractor(aud.reshape(b * s, N_MELS, -1)).view(b, s, AT, -1)

    def compare_v_a(self, vis: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
        """``[B, 14, 8, D]`` and ``[B, 14, 6, D]`` features -> ``[B, 21]`` offset logits."""
        v = self.vproj(vis).flatten(1, 2)
        a = self.aproj(aud).flatten(1, 2)
        return self.transformer(v, a)

    def proxy_init(self) -> None:
        """Random weights for a proxy: He-normal (fan-in) Linear/conv weights and attention
        projections, zero biases, unit LayerNorms, learned tokens and positions N(0, 0.02^2),
        and the fusion transformer's OFF/MOD tokens and positions N(0, 1) as upstream
        initialises them. Why not upstream's std-0.02 Linear init: with it a random network
        predicts the same offset for every input (the OFF token's output barely depends on
        the other tokens), so a proxy DeSync could not tell any two clips apart; He-normal
        weights (the repo's proxy habit, weights.he_normal_init) make it input-dependent."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.MultiheadAttention):
                nn.init.kaiming_normal_(m.in_proj_weight, nonlinearity="relu")
                nn.init.zeros_(m.in_proj_bias)
        for name, p in self.named_parameters():
            if name.rsplit(".", 1)[-1] in ("cls_token", "distillation_token", "pos_embed", "temp_embed",
                                           "position_embeddings"):
                nn.init.trunc_normal_(p, std=0.02)
        t = self.transformer
        for p in (t.OFF_tok, t.MOD_tok, t.pos_emb_cfg.pos_emb):
            nn.init.normal_(p)
