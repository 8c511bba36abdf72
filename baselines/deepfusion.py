"""Deep-fusion CNN (Martel & Wagner, arXiv 2308.12408, Sec. III-D1, Fig. 5).

Two parallel residual streams over the last n video frames: the audio of the previous
n frames (1D residual blocks, after a strided-conv entry that shortens the sequence)
and the frames themselves (3D residual blocks). After every block each stream receives
the other, transformed as in the paper and added with learned weights:
video -> audio: linear over the flattened video positions, 1x1 conv over channels;
audio -> video: linear over the audio sequence to the video positions, 1x1 conv,
reshape. A head maps the audio stream to the audio of the *next* video frame at once
(spf samples, each its own 256-class softmax or tanh value), so one forward pass covers
one frame; the samples within a frame are conditionally independent, which is the
source of the frame-boundary artefacts the paper reports.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.video_context import (
    A2VProjection,
    ResBlock3d,
    V2AProjection,
    context_windows,
    video_out_shape,
)


class ResBlock1d(nn.Module):
    """[B, c, L] -> [B, c, L]: two kernel-3 convs plus identity (pre-activation)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(c, c, 3, padding=1), nn.Conv1d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class DeepFusion(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        n, S, C = cfg.n_frames, cfg.frame_size, cfg.channels
        ca, cv = cfg.c_aud, cfg.c_vid
        if (n * cfg.spf) % cfg.audio_down:
            raise ValueError(f"audio_down {cfg.audio_down} must divide n_frames * spf = {n * cfg.spf}")
        la = n * cfg.spf // cfg.audio_down  # audio stream length after the strided entry
        self.a_in = nn.Conv1d(C, ca, cfg.audio_down, stride=cfg.audio_down)
        self.v_in = nn.Conv3d(3, cv, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.a_blocks, self.v_blocks = nn.ModuleList(), nn.ModuleList()
        self.v2a, self.a2v = nn.ModuleList(), nn.ModuleList()
        for i in range(cfg.fusion_blocks):
            down = i < cfg.vid_down
            self.a_blocks.append(ResBlock1d(ca))
            self.v_blocks.append(ResBlock3d(cv, cv, stride=2 if down else 1))
            shape = video_out_shape(n, S, min(i + 1, cfg.vid_down))
            self.v2a.append(V2AProjection(cv, shape, ca, la))
            if i < cfg.fusion_blocks - 1:  # after the last block only the audio stream is read
                self.a2v.append(A2VProjection(ca, la, cv, shape))
        # "adds audio and video embeddings together with learned weights"
        self.w_v2a = nn.Parameter(torch.full((cfg.fusion_blocks,), 0.5))
        self.w_a2v = nn.Parameter(torch.full((cfg.fusion_blocks - 1,), 0.5))
        self.head_t = nn.Linear(la, cfg.spf)
        self.head_c = nn.Conv1d(ca, C * cfg.out_dim, 1)

    def frame_logits(self, audio_ctx: torch.Tensor, video_ctx: torch.Tensor) -> torch.Tensor:
        """Audio of the n previous frames [B, C, n*spf] and frames [B, 3, n, S, S] (the
        newest is the frame to sound) -> outputs for that frame's samples [B, C, spf, K]."""
        a, v = F.relu(self.a_in(audio_ctx)), F.relu(self.v_in(video_ctx))
        for i in range(len(self.a_blocks)):
            a, v = self.a_blocks[i](a), self.v_blocks[i](v)
            if i < len(self.a2v):  # exchange at once: each stream gets the other's pre-fusion state
                a, v = a + self.w_v2a[i] * self.v2a[i](v), v + self.w_a2v[i] * self.a2v[i](a)
            else:
                a = a + self.w_v2a[i] * self.v2a[i](v)
        y = self.head_c(F.relu(self.head_t(F.relu(a))))  # [B, C*K, spf]
        B = y.shape[0]
        return y.view(B, self.cfg.channels, self.cfg.out_dim, self.cfg.spf).transpose(2, 3)

    def sequence_logits(self, audio: torch.Tensor, video_padded: torch.Tensor,
                        first_frame: int = 0) -> torch.Tensor:
        """Teacher-forced outputs [B, C, N - first_frame * spf, K] for audio [B, C, N]
        (N = F * spf) and video_padded [B, F + n - 1, 3, S, S]: frame f's output sees
        the true audio of frames f - n .. f - 1 (silence before the crop)."""
        B, C, N = audio.shape
        n, spf = self.cfg.n_frames, self.cfg.spf
        Fr = N // spf
        win = F.pad(audio, (n * spf, 0)).unfold(-1, n * spf, spf)[:, :, first_frame:Fr]  # [B,C,F',n*spf]
        ctx = context_windows(video_padded, n)[:, first_frame:Fr]  # [B, F', 3, n, S, S]
        Fk = Fr - first_frame
        out = self.frame_logits(win.permute(0, 2, 1, 3).flatten(0, 1), ctx.flatten(0, 1))
        return out.view(B, Fk, C, spf, -1).permute(0, 2, 1, 3, 4).flatten(2, 3)
