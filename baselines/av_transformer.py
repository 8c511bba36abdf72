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

``StridedAVTransformer`` is their first variant: the audio context enters through a
strided 1-D convolution (kernel = stride = s samples), one token per s samples, so the
same window of tokens covers s times more audio (``audio_frontend="strided"``).
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


class StridedAVTransformer(nn.Module):
    """Tokens are s-sample chunks of audio (s = cfg.audio_stride); outputs are per sample.

    Alignment (chunk j = samples [j*s, (j+1)*s)); it keeps every output causal:
    - token m = conv(chunk m - 1) (zeros for m = 0) + cond at sample m*s, so it exists as
      soon as sample m*s - 1 is known and holds complete past chunks only; cond is video
      of sample m*s's frame + positional embedding of its offset in that frame, as in
      ``AVTransformer`` (a window slide never changes a token, so the cache is exact);
    - sample t = m*s + r is decoded from the transformer output at token m (chunks < m,
      video up to frame(m*s) <= frame(t)), the r samples of its unfinished chunk
      (t - r .. t - 1, zero-padded to s - 1), cond at t and an embedding of r. Without
      that partial chunk the s samples of a chunk would be drawn independently.
    A chunk may straddle two frames (s need not divide spf): its samples still read
    their own frame through cond at t. The token ring holds ``window`` tokens per layer.
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.s = cfg, cfg.audio_stride
        D, C, s = cfg.d_model, cfg.channels, cfg.audio_stride
        self.video = VideoContext(cfg.n_frames, cfg.frame_size, cfg.c_vid, cfg.vid_blocks,
                                  cfg.vid_down, D, cfg.spf)
        self.pos = nn.Parameter(torch.randn(D, cfg.spf) * 0.02)  # learned, per offset in frame
        self.inp = nn.Conv1d(C, D, s, stride=s)
        self.blocks = nn.ModuleList(Block(D, cfg.n_heads) for _ in range(cfg.n_layers))
        self.part = nn.Linear(C * (s - 1), D, bias=False)
        self.rpos = nn.Parameter(torch.randn(D, s) * 0.02)       # learned, per offset in chunk
        self.ln_d, self.ff1, self.ff2 = nn.LayerNorm(D), nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.ln_f = nn.LayerNorm(D)
        self.head = nn.Linear(D, C * cfg.out_dim)
        self.window = cfg.window
        self.rf_tokens = cfg.n_layers * (cfg.window - 1) + 1
        self.receptive_field = self.rf_tokens * s + s - 1  # samples, at most

    def frame_embedding(self, ctx: torch.Tensor) -> torch.Tensor:
        """Frame contexts [B, 3, n, S, S] -> per-sample conditioning [B, D, spf]."""
        return self.video(ctx) + self.pos

    def _hidden(self, tok: torch.Tensor) -> torch.Tensor:
        """Tokens [B, M, D] -> transformer outputs [B, M, D] under the banded causal mask."""
        mask = band_mask(tok.shape[1], self.window, tok.device)
        for b in self.blocks:
            tok = b(tok, mask)
        return tok

    def _decode(self, h: torch.Tensor, part: torch.Tensor, cond: torch.Tensor,
                r: torch.Tensor | int) -> torch.Tensor:
        """Token output h, partial chunk part [..., C*(s-1)], cond [..., D] -> [..., C, K]."""
        z = h + self.part(part) + cond + self.rpos[:, r].transpose(0, -1)
        z = z + self.ff2(F.relu(self.ff1(self.ln_d(z))))  # mixes token, partial chunk and video
        return self.head(self.ln_f(z)).unflatten(-1, (self.cfg.channels, self.cfg.out_dim))

    def sequence_logits(self, audio: torch.Tensor, video_padded: torch.Tensor,
                        first_frame: int = 0, chunk: int = 512) -> torch.Tensor:
        """Teacher-forced outputs [B, C, N - first_frame * spf, K] for audio [B, C, N];
        tokens run in chunks of ``chunk`` carrying ``rf_tokens - 1`` earlier ones (exact)."""
        B, C, N = audio.shape
        s, spf = self.s, self.cfg.spf
        ctx = context_windows(video_padded, self.cfg.n_frames)
        Fr = ctx.shape[1]
        cond = self.frame_embedding(ctx.flatten(0, 1))
        cond = cond.view(B, Fr, -1, spf).permute(0, 2, 1, 3).flatten(2)[..., :N]  # [B, D, N]
        M = -(-N // s)
        # one chunk of leading zeros shifts chunk m - 1 under token m
        tok = self.inp(F.pad(audio, (s, M * s - N))[..., :M * s]) + cond[..., ::s]
        tok = tok.transpose(1, 2)  # [B, M, D]
        start = first_frame * spf
        m0, hs, carry = start // s, [], self.rf_tokens - 1
        for a in range(m0, M, chunk):
            lo = max(0, a - carry)
            hs.append(self._hidden(tok[:, lo:a + chunk])[:, a - lo:])
        h = torch.cat(hs, 1).repeat_interleave(s, 1)[:, start - m0 * s:N - m0 * s]  # [B, N', D]
        # partial chunk of sample m*s + r: the chunk's first r samples, the rest zero
        keep = torch.arange(s - 1, device=audio.device) < torch.arange(s, device=audio.device)[:, None]
        ch = F.pad(audio, (0, M * s - N)).unflatten(-1, (M, s))[..., None, :s - 1] * keep  # [B,C,M,s,s-1]
        part = ch.permute(0, 2, 3, 1, 4).flatten(3).flatten(1, 2)[:, start:N]  # [B, N', C*(s-1)]
        r = torch.arange(start, N, device=audio.device) % s
        return self._decode(h, part, cond[..., start:].transpose(1, 2), r).permute(0, 2, 1, 3)

    def init_state(self, batch: int) -> "StridedState":
        p = next(self.parameters())
        H, D = self.cfg.n_heads, self.cfg.d_model
        return StridedState(kv=[p.new_zeros(2, batch, H, self.window, D // H) for _ in self.blocks],
                            buf=p.new_zeros(batch, self.cfg.channels, self.s), h=p.new_zeros(batch, D))

    def step(self, st: "StridedState", x_prev: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Sample st.t with the cache: x_prev (sample t - 1) [B, C], cond [B, D] -> [B, C, K].

        One transformer step per s samples, when a chunk completes; the decoder every sample.
        """
        s, t = self.s, st.t
        r = t % s
        if t > 0:
            st.buf[:, :, (t - 1) % s] = x_prev
        if r == 0:  # buf now holds chunk m - 1 whole (zeros at t = 0): token m
            m = t // s
            x = self.inp(st.buf)[..., 0] + cond
            slot, filled = m % self.window, min(m + 1, self.window)
            for b, kv in zip(self.blocks, st.kv):
                x = b.step(x, kv, slot, filled)
            st.h = x
        st.t += 1
        # slots >= r still hold the previous chunk: cut them off, as naive_step pads
        part = F.pad(st.buf[:, :, :r], (0, s - 1 - r)).flatten(1)
        return self._decode(st.h, part, cond, r)

    def naive_step(self, hx: torch.Tensor, hc: torch.Tensor) -> torch.Tensor:
        """Recompute the last ``rf_tokens`` tokens for sample t: hx [B, C, t + 1] (hx[..., i]
        is sample i - 1), hc [B, D, t + 1] cond -> [B, C, K]."""
        s, t = self.s, hx.shape[-1] - 1
        m, r = divmod(t, s)
        m0 = max(0, m - self.rf_tokens + 1)
        audio = F.pad(hx[..., 1:], (s, 0))  # samples 0..t-1 behind one zero chunk
        tok = self.inp(audio[..., m0 * s:(m + 1) * s]) + hc[..., m0 * s:m * s + 1:s]
        h = self._hidden(tok.transpose(1, 2))[:, -1]
        part = F.pad(hx[..., 1 + m * s:], (0, s - 1 - r)).flatten(1)
        return self._decode(h, part, hc[..., t], r)


@dataclass
class StridedState:
    kv: list[torch.Tensor]  # per layer [2, B, H, window, D/H] ring of token keys and values
    buf: torch.Tensor       # [B, C, s] samples of the current chunk (older slots: previous chunk)
    h: torch.Tensor         # [B, D] transformer output of the latest token
    t: int = field(default=0)
