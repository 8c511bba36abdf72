"""Audio & video transformer (Martel & Wagner, arXiv 2308.12408, Sec. III-D3, Fig. 7).

Each token is one audio sample of context (their second variant: "smaller amounts of
the raw audio data as the audio context with reduced transformer parameters") plus the
video-context embedding plus a learned positional embedding; causal multi-head
self-attention layers with ReLU feed-forwards, and a linear decoder emits the next
sample (256 mu-law classes, or one tanh value for MSE/MAE).

Choices that make a key/value cache exact (the paper re-reads its whole window):
- attention is causal over a sliding window of ``window`` samples, so the cache is a
  ring of ``window`` keys/values per layer and one step costs O(window);
- the learned positional embedding is indexed by the sample's offset within its video
  frame (0 .. spf-1), not by its place in the window, so a token's embedding never
  changes as the window slides (and it tells the model where it is in the frame);
- the video embedding of a token is its own frame's column, as in ``wavenet_video``.
A stack of L layers then sees L * (window - 1) + 1 samples; ``naive_step`` recomputes
exactly that span with a banded mask.
The strided-convolution audio front end (their first variant) is not implemented.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.video_context import VideoContext, context_windows


class Block(nn.Module):
    """Pre-norm transformer layer: x [B, N, D] -> [B, N, D]."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff1, self.ff2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, H, N, D/H]
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).flatten(2))
        return x + self.ff2(F.relu(self.ff1(self.ln2(x))))

    def step(self, x: torch.Tensor, kv: torch.Tensor, slot: int, filled: int) -> torch.Tensor:
        """x [B, D], ring kv [2, B, H, W, D/H] (updated in place) -> [B, D].

        Attention is a weighted sum over a set, so the ring's slot order does not matter.
        """
        q, k, v = self.qkv(self.ln1(x)).unsqueeze(1).chunk(3, dim=-1)
        kv[0, :, :, slot] = self._split(k)[:, :, 0]
        kv[1, :, :, slot] = self._split(v)[:, :, 0]
        a = F.scaled_dot_product_attention(self._split(q), kv[0, :, :, :filled], kv[1, :, :, :filled])
        x = x + self.proj(a.transpose(1, 2).flatten(1))
        return x + self.ff2(F.relu(self.ff1(self.ln2(x))))


def band_mask(n: int, window: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [n, n]: query i may attend key j when 0 <= i - j < window."""
    i = torch.arange(n, device=device)
    d = i[:, None] - i[None, :]
    return (d >= 0) & (d < window)


class AVTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.video = VideoContext(cfg.n_frames, cfg.frame_size, cfg.c_vid, cfg.vid_blocks,
                                  cfg.vid_down, D, cfg.spf)
        self.inp = nn.Linear(cfg.channels, D)
        self.pos = nn.Parameter(torch.randn(D, cfg.spf) * 0.02)  # learned, per offset in frame
        self.blocks = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, cfg.channels * cfg.out_dim)
        self.window = cfg.window
        self.receptive_field = cfg.n_layers * (cfg.window - 1) + 1

    def frame_embedding(self, ctx: torch.Tensor) -> torch.Tensor:
        """Frame contexts [B, 3, n, S, S] -> token conditioning [B, D, spf] (video + position)."""
        return self.video(ctx) + self.pos

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., C, K]."""
        return self.head(self.ln_f(x)).unflatten(-1, (self.cfg.channels, self.cfg.out_dim))

    def _tokens_forward(self, tok: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N, D] -> outputs [B, N, C, K] under the banded causal mask."""
        mask = band_mask(tok.shape[1], self.window, tok.device)
        for b in self.blocks:
            tok = b(tok, mask)
        return self._decode(tok)

    def sequence_logits(self, audio: torch.Tensor, video_padded: torch.Tensor,
                        first_frame: int = 0, chunk: int = 2048) -> torch.Tensor:
        """Teacher-forced outputs [B, C, N - first_frame * spf, K]; arguments as in
        ``WaveNetVideo.sequence_logits``. Long sequences run in chunks that carry
        ``receptive_field - 1`` earlier tokens, which is exact for the banded mask."""
        B, _, N = audio.shape
        ctx = context_windows(video_padded, self.cfg.n_frames)
        Fr = ctx.shape[1]
        cond = self.frame_embedding(ctx.flatten(0, 1))
        cond = cond.view(B, Fr, -1, self.cfg.spf).permute(0, 2, 1, 3).flatten(2)[..., :N]
        x_prev = F.pad(audio, (1, 0))[..., :N]
        tok = self.inp(x_prev.transpose(1, 2)) + cond.transpose(1, 2)  # [B, N, D]
        start, outs, carry = first_frame * self.cfg.spf, [], self.receptive_field - 1
        for a in range(start, N, chunk):
            lo = max(0, a - carry)
            o = self._tokens_forward(tok[:, lo:a + chunk])
            outs.append(o[:, a - lo:])
        return torch.cat(outs, dim=1).permute(0, 2, 1, 3)

    def init_state(self, batch: int) -> "TransformerState":
        p = next(self.parameters())
        H, D = self.cfg.n_heads, self.cfg.d_model
        return TransformerState(kv=[p.new_zeros(2, batch, H, self.window, D // H) for _ in self.blocks])

    def step(self, st: "TransformerState", x_prev: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One sample with the key/value cache: x_prev [B, C], cond [B, D] -> [B, C, K]."""
        x = self.inp(x_prev) + cond
        slot, filled = st.t % self.window, min(st.t + 1, self.window)
        for b, kv in zip(self.blocks, st.kv):
            x = b.step(x, kv, slot, filled)
        st.t += 1
        return self._decode(x)

    def naive_step(self, hx: torch.Tensor, hc: torch.Tensor) -> torch.Tensor:
        """Recompute the last ``receptive_field`` tokens: hx [B, C, t], hc [B, D, t] -> [B, C, K]."""
        rf = self.receptive_field
        tok = self.inp(hx[..., -rf:].transpose(1, 2)) + hc[..., -rf:].transpose(1, 2)
        return self._tokens_forward(tok)[:, -1]


@dataclass
class TransformerState:
    kv: list[torch.Tensor]  # per layer [2, B, H, window, D/H] ring of keys and values
    t: int = field(default=0)
