"""WaveNet with video context (Martel & Wagner, arXiv 2308.12408, Sec. III-D2, Fig. 6).

The audio context enters a causal convolution and a stack of gated residual blocks with
dilated causal convolutions (van den Oord et al. 2016), with residual and skip paths;
the skip sum goes through a small dense head that predicts the next sample (256 mu-law
classes, or one tanh value for MSE/MAE). The video-context embedding (3D residual
encoder projected to audio dimensions, ``video_context.VideoContext``) is added to the
audio context at the input.

Deviation that makes incremental generation exact: the paper adds one embedding to the
whole audio window, recomputed from the newest frames at every sample, so no activation
of the past can be reused. Here the embedding of frame f is a [R, spf] pattern over the
spf samples that frame's context is held for, and position s of the input carries the
column of its own frame (local conditioning, as in WaveNet's own conditional version).
Past activations then never change, and a queue per dilated layer (Paine et al.'s fast
WaveNet) gives the same outputs as recomputing the receptive field.

Interface shared by the per-sample families (see ``martel_wagner.generate_audio``):
``frame_embedding``, ``sequence_logits``, ``init_state``/``step`` (cached) and
``naive_step`` (recompute), ``receptive_field``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.video_context import VideoContext, context_windows


class WaveNetVideo(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        R, S, C = cfg.residual, cfg.skip, cfg.channels
        self.video = VideoContext(cfg.n_frames, cfg.frame_size, cfg.c_vid, cfg.vid_blocks,
                                  cfg.vid_down, R, cfg.spf)
        self.inp = nn.Conv1d(C, R, 1)
        self.causal = nn.Conv1d(R, R, 2)
        self.dilations = list(cfg.dilations)
        self.filt = nn.ModuleList(nn.Conv1d(R, 2 * R, 2, dilation=d) for d in self.dilations)
        self.res_skip = nn.ModuleList(nn.Conv1d(R, R + S, 1) for _ in self.dilations)
        self.out1 = nn.Conv1d(S, S, 1)
        self.out2 = nn.Conv1d(S, C * cfg.out_dim, 1)
        # positions of h the last output depends on: causal conv (2) plus every dilation
        self.receptive_field = 2 + sum(self.dilations)

    # ------------------------------------------------------------------ full sequences
    def frame_embedding(self, ctx: torch.Tensor) -> torch.Tensor:
        """Frame contexts [B, 3, n, S, S] -> conditioning [B, R, spf]."""
        return self.video(ctx)

    def _stack(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, R, N] (audio + video at the input) -> output [B, C, N, K]."""
        x = self.causal(F.pad(h, (1, 0)))
        R = x.shape[1]
        skip = 0.0
        for d, filt, rs in zip(self.dilations, self.filt, self.res_skip):
            a, b = filt(F.pad(x, (d, 0))).chunk(2, dim=1)
            o = rs(torch.tanh(a) * torch.sigmoid(b))
            x = x + o[:, :R]
            skip = skip + o[:, R:]
        y = self.out2(F.relu(self.out1(F.relu(skip))))
        B, _, N = y.shape
        return y.view(B, self.cfg.channels, self.cfg.out_dim, N).transpose(2, 3)

    def sequence_logits(self, audio: torch.Tensor, video_padded: torch.Tensor,
                        first_frame: int = 0) -> torch.Tensor:
        """Teacher-forced outputs for every sample.

        audio [B, C, N] (mu-law quantised amplitudes, N = F * spf); video_padded
        [B, F + n - 1, 3, S, S] (n - 1 context frames before the first). Returns
        [B, C, N - first_frame * spf, K]: output s predicts audio[s] from audio[< s]
        (silence before the crop) and the context of frame s // spf.
        """
        B, _, N = audio.shape
        n = self.cfg.n_frames
        ctx = context_windows(video_padded, n)  # [B, F, 3, n, S, S]
        Fr = ctx.shape[1]
        cond = self.frame_embedding(ctx.flatten(0, 1))  # [B*F, R, spf]
        cond = cond.view(B, Fr, -1, self.cfg.spf).permute(0, 2, 1, 3).flatten(2)[..., :N]
        x_prev = F.pad(audio, (1, 0))[..., :N]
        out = self._stack(self.inp(x_prev) + cond)
        return out[:, :, first_frame * self.cfg.spf:]

    # ------------------------------------------------------------------ generation
    def init_state(self, batch: int) -> "WaveNetState":
        """Zeroed queues: silence before the clip, as the zero padding of training."""
        R = self.cfg.residual
        p = next(self.parameters())
        w_filt = [torch.cat([f.weight[:, :, 0], f.weight[:, :, 1]], dim=1) for f in self.filt]
        return WaveNetState(
            h_prev=p.new_zeros(batch, R),
            queues=[p.new_zeros(d, batch, R) for d in self.dilations],
            w_filt=w_filt,
        )

    def step(self, st: "WaveNetState", x_prev: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One sample with cached activations: x_prev [B, C], cond [B, R] -> [B, C, K].

        Each dilated layer needs its input from d samples ago, which its queue (a ring of
        d entries) holds; the step costs O(layers) instead of O(receptive field).
        """
        h = F.linear(x_prev, self.inp.weight[:, :, 0], self.inp.bias) + cond
        w = self.causal.weight
        x = F.linear(st.h_prev, w[:, :, 0]) + F.linear(h, w[:, :, 1], self.causal.bias)
        st.h_prev = h
        R = x.shape[1]
        skip = 0.0
        for i, d in enumerate(self.dilations):
            slot = st.t % d
            q = st.queues[i]
            z = F.linear(torch.cat([q[slot], x], dim=1), st.w_filt[i], self.filt[i].bias)
            q[slot] = x  # after use: the slot held x from d samples ago
            a, b = z.chunk(2, dim=1)
            rs = self.res_skip[i]
            o = F.linear(torch.tanh(a) * torch.sigmoid(b), rs.weight[:, :, 0], rs.bias)
            x = x + o[:, :R]
            skip = skip + o[:, R:]
        st.t += 1
        y = F.linear(F.relu(F.linear(F.relu(skip), self.out1.weight[:, :, 0], self.out1.bias)),
                     self.out2.weight[:, :, 0], self.out2.bias)
        return y.view(y.shape[0], self.cfg.channels, self.cfg.out_dim)

    def naive_step(self, hx: torch.Tensor, hc: torch.Tensor) -> torch.Tensor:
        """Recompute from history: inputs hx [B, C, t], cond hc [B, R, t] -> [B, C, K].

        Only the last ``receptive_field`` positions can matter. Shorter histories are not
        padded to that length: every layer already zero-pads its own input, which is what
        the zeroed queues of the cached path hold; padding h would let biases into it.
        """
        rf = self.receptive_field
        h = self.inp(hx[..., -rf:]) + hc[..., -rf:]
        return self._stack(h)[:, :, -1]


@dataclass
class WaveNetState:
    h_prev: torch.Tensor                 # [B, R] input of the causal conv one sample ago
    queues: list[torch.Tensor]           # per layer [d, B, R] ring of past layer inputs
    w_filt: list[torch.Tensor]           # per layer [2R, 2R] kernel taps side by side
    t: int = field(default=0)
