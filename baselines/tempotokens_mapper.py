"""TempoTokens-style audio-to-context mapper (Yariv et al. 2023, arXiv 2309.16429).

The piece of the TempoTokens family that turns audio-encoder features into one
conditioning context per video frame; the video denoiser (issue 11) consumes it. Written
from the paper and a reading of guyyariv/TempoTokens (modules/temp_tokens/embedder.py,
modules/fga/atten.py); no code is taken from there.

Per clip, with audio features ``a`` ``[P, C]`` at patch times ``t_p`` (seconds) and a
video of ``F`` frames at ``fps``:

- every patch goes through an MLP (Linear, GELU, Linear, GELU, Linear) to ``D``;
- **frame tokens** ``s_f``: the mean of the MLP outputs of the patches whose time falls in
  frame f's interval ``[f / fps, (f + 1) / fps)``, then GELU and a last Linear (upstream's
  order). A frame with no patch in its interval (patches sparser than frames) takes the
  nearest patch in time. Upstream instead reshapes the patch axis into a fixed 24 groups,
  which only divides for some lengths; mapping by time works for any clip length and fps;
- **window tokens** ``w_k[i] = mean(s[max(i - k, 0) : min(i + k, F)])`` for k in
  :data:`WINDOWS` (1, 2, 4, 8): upstream's half-open window, which includes i - k but not
  i + k; computed from cumulative sums (:func:`window_tokens`);
- **global token** ``g``: attention pooling of the frame tokens. Scores per frame are the
  sum, through a learned 1x1 mix, of a unary potential (1x1 conv, ReLU, 1x1 conv to one
  value) and a self-interaction potential (mean cosine similarity of the frame's embedding
  with every frame's); softmax over frames; weighted sum. Upstream applies dropout to the
  unary branch even in eval mode, so its global token is random at inference; ours applies
  dropout only in training and is deterministic in eval;
- the context of frame f is ``[s_f, w1_f, w2_f, w4_f, w8_f, g]`` (``[B, F, 6, D]``);
  :meth:`AudioMapper.forward` can keep fewer window tokens (the Table 3 ablation) or only
  ``g`` (a single global vector).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

WINDOWS = (1, 2, 4, 8)


def frame_assignment(patch_times: torch.Tensor, n_frames: int, fps: float) -> torch.Tensor:
    """``[P]`` patch times (s) -> ``[P]`` frame index of each patch: ``floor(t * fps)``,
    clipped to the video (patches after the last frame belong to it). A time within 1e-6
    frames below a frame boundary counts as on it (float32 times such as 1.3 s at 10 fps)."""
    idx = torch.floor(patch_times.double() * float(fps) + 1e-6).long()
    return idx.clamp(0, n_frames - 1)


def pool_to_frames(x: torch.Tensor, patch_times: torch.Tensor, n_frames: int, fps: float) -> torch.Tensor:
    """``[B, P, D]`` patch values -> ``[B, n_frames, D]``: each frame the mean of its
    patches (by time); a frame without patches takes the nearest patch in time."""
    b, p, d = x.shape
    if p == 0:
        raise ValueError("no audio patches to map to frames")
    assign = frame_assignment(patch_times, n_frames, fps).to(x.device)
    sums = x.new_zeros(b, n_frames, d).index_add_(1, assign, x)
    counts = torch.bincount(assign, minlength=n_frames).to(x.dtype)
    out = sums / counts.clamp(min=1)[None, :, None]
    empty = (counts == 0).nonzero().flatten()
    if len(empty):
        centres = (empty.double() + 0.5) / float(fps)
        nearest = (patch_times.double()[None, :].to(centres.device) - centres[:, None]).abs().argmin(dim=1)
        out[:, empty] = x[:, nearest.to(x.device)]
    return out


def window_tokens(s: torch.Tensor, ks: Sequence[int] = WINDOWS) -> list[torch.Tensor]:
    """``[B, F, D]`` frame tokens -> one ``[B, F, D]`` per k: ``w_k[i] = mean(s[max(i-k,0):
    min(i+k,F)])`` (half-open, as upstream). Each window is summed on its own (zero padding
    outside the clip adds exact zeros), not from a running cumulative sum, so a token
    depends on its window's frames only, bit for bit."""
    b, n, d = s.shape
    i = torch.arange(n, device=s.device)
    out = []
    for k in ks:
        padded = F.pad(s.transpose(1, 2), (k, k))                     # [B, D, F + 2k]
        sums = padded.unfold(2, 2 * k, 1)[:, :, :n].sum(dim=-1)       # window [i-k, i+k)
        count = ((i + k).clamp(max=n) - (i - k).clamp(min=0)).to(s.dtype)
        out.append((sums / count).transpose(1, 2))
    return out


class AttentionPool(nn.Module):
    """The global token: frames weighted by a softmax over unary + self-interaction
    potentials (see the module docstring). Dropout only in training."""

    def __init__(self, dim: int, dropout: float = 0.5):
        super().__init__()
        self.unary_embed = nn.Linear(dim, dim)
        self.unary_reduce = nn.Linear(dim, 1)
        self.pair_embed = nn.Linear(dim, dim)
        self.mix = nn.Linear(2, 1, bias=False)
        self.dropout = dropout

    def weights(self, s: torch.Tensor) -> torch.Tensor:
        """``[B, F, D]`` -> ``[B, F]`` attention weights (softmax over frames)."""
        u = F.dropout(F.relu(self.unary_embed(s)), self.dropout, training=self.training)
        unary = self.unary_reduce(u).squeeze(-1)                           # [B, F]
        e = F.normalize(self.pair_embed(s), dim=-1)
        pair = (e @ e.transpose(1, 2)).mean(dim=2)                         # [B, F]
        return torch.softmax(self.mix(torch.stack([unary, pair], dim=-1)).squeeze(-1), dim=1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return (self.weights(s)[..., None] * s).sum(dim=1)                 # [B, D]


class AudioMapper(nn.Module):
    """Audio features ``[B, P, C]`` at patch times -> per-frame contexts ``[B, F, T, D]``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, windows: Sequence[int] = WINDOWS,
                 dropout: float = 0.5):
        super().__init__()
        self.windows = tuple(int(k) for k in windows)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out_dim)
        self.fc4 = nn.Linear(out_dim, out_dim)
        self.pool = AttentionPool(out_dim, dropout)

    def frame_tokens(self, feats: torch.Tensor, patch_times: torch.Tensor, n_frames: int,
                     fps: float) -> torch.Tensor:
        """``s``: ``[B, F, D]`` (MLP per patch, mean per frame by time, GELU, Linear)."""
        h = self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(feats)))))
        return self.fc4(F.gelu(pool_to_frames(h, patch_times, n_frames, fps)))

    def forward(self, feats: torch.Tensor, patch_times: torch.Tensor, n_frames: int, fps: float,
                n_windows: int | None = None, global_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (contexts ``[B, F, T, D]``, frame tokens ``s`` ``[B, F, D]``). T = 2 + number of
        window tokens kept (all by default); ``global_only``: T = 1, g for every frame."""
        if n_frames < 1 or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"need n_frames >= 1 and fps > 0, got {n_frames}, {fps}")
        s = self.frame_tokens(feats, patch_times, n_frames, fps)
        g = self.pool(s)[:, None, :].expand(-1, n_frames, -1)
        if global_only:
            return g[:, :, None, :], s
        ks = self.windows if n_windows is None else self.windows[:n_windows]
        parts = [s, *window_tokens(s, ks), g]
        return torch.stack(parts, dim=2), s
