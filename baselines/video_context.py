"""Video-context embedding of Martel & Wagner (arXiv 2308.12408, Sec. III-C), shared.

The last ``n`` frames go through a stack of 3D residual blocks (their Fig. 3, He et al.
extended to x, y, time); the result is projected to audio dimensions in two steps:
a linear layer over the flattened video positions ``(t, y, x) -> n_aud`` and a 1x1
convolution over channels ``c_vid -> c_aud``. The reverse projection (audio -> video) is
used by the deep-fusion model. Frames enter as float [-1, 1]; missing frames before the
clip starts are zeros, as in the paper ("zero padded if preceding video frames are
unavailable").
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ResBlock3d(nn.Module):
    """[B, c_in, T, H, W] -> [B, c_out, T, H/s, W/s]: two 3x3x3 convs plus a shortcut.

    Pre-activation (He et al. 2016b): no ReLU after the sum, so the shortcut always
    carries the input through; with a few channels a post-sum ReLU can switch a whole
    stream off for good. No normalisation layer: batches are small and generation runs
    one clip at a time, so batch statistics would change the function between the two.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride=(1, stride, stride), padding=1)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1)
        self.skip = (nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride))
                     if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(F.relu(self.conv1(F.relu(x))))


def video_out_shape(n_frames: int, frame_size: int, n_down: int) -> tuple[int, int, int]:
    """(T, H, W) of the encoder output: stride 2 in space at the stem and n_down blocks."""
    s = frame_size // 2 ** (1 + n_down)
    return n_frames, s, s


class VideoEncoder(nn.Module):
    """[B, 3, n, S, S] float frames -> [B, c_vid, n, S', S'] with S' = S / 2^(1 + n_down)."""

    def __init__(self, c_vid: int, n_blocks: int, n_down: int):
        super().__init__()
        self.stem = nn.Conv3d(3, c_vid, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.blocks = nn.ModuleList(
            ResBlock3d(c_vid, c_vid, stride=2 if i < n_down else 1) for i in range(n_blocks))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(v))
        for b in self.blocks:
            x = b(x)
        return x


class V2AProjection(nn.Module):
    """[B, c_vid, T, H, W] -> [B, c_aud, n_aud]: linear over (T*H*W), then 1x1 conv."""

    def __init__(self, c_vid: int, vid_shape: tuple[int, int, int], c_aud: int, n_aud: int):
        super().__init__()
        self.pos = nn.Linear(int(np.prod(vid_shape)), n_aud)
        self.chan = nn.Conv1d(c_vid, c_aud, 1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.chan(self.pos(v.flatten(2)))


class A2VProjection(nn.Module):
    """[B, c_aud, n_aud] -> [B, c_vid, T, H, W]: linear over n_aud, 1x1 conv, reshape."""

    def __init__(self, c_aud: int, n_aud: int, c_vid: int, vid_shape: tuple[int, int, int]):
        super().__init__()
        self.vid_shape = vid_shape
        self.pos = nn.Linear(n_aud, int(np.prod(vid_shape)))
        self.chan = nn.Conv1d(c_aud, c_vid, 1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = self.chan(self.pos(a))
        return x.view(x.shape[0], x.shape[1], *self.vid_shape)


class VideoContext(nn.Module):
    """Frame context [B, 3, n, S, S] -> embedding [B, c_aud, n_aud] in audio dimensions.

    For the per-sample models n_aud is the samples per video frame: the embedding is a
    learned pattern over the samples the frame's context is held for.
    """

    def __init__(self, n_frames: int, frame_size: int, c_vid: int, n_blocks: int, n_down: int,
                 c_aud: int, n_aud: int):
        super().__init__()
        self.encoder = VideoEncoder(c_vid, n_blocks, n_down)
        self.proj = V2AProjection(c_vid, video_out_shape(n_frames, frame_size, n_down), c_aud, n_aud)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.proj(self.encoder(v))


# --------------------------------------------------------------------------- frames
def prepare_frames(frames: np.ndarray, fps_in: float, fps_out: float, size: int,
                   n_out: int | None = None) -> torch.Tensor:
    """uint8 [T, H, W, 3] at fps_in -> float32 [T', 3, size, size] in [-1, 1] at fps_out.

    Time is resampled by taking, for output frame i (at i / fps_out seconds), the input
    frame shown at that moment; T' = n_out (default: the clip's length at fps_out). Frames
    past the end repeat the last one. Space is area-averaged, which is what a resize to
    64x64 -> 16x16 should do to keep small moving objects visible.
    """
    t_in = frames.shape[0]
    if n_out is None:
        n_out = max(1, int(round(t_in * fps_out / fps_in)))
    idx = np.minimum((np.arange(n_out) * fps_in / fps_out + 1e-6).astype(np.int64), t_in - 1)
    x = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area") if x.shape[-1] != size or x.shape[-2] != size else x
    return x / 127.5 - 1.0


def pad_context(video: torch.Tensor, n: int) -> torch.Tensor:
    """[B, F, 3, S, S] -> [B, F + n - 1, 3, S, S]: n - 1 zero frames before the clip."""
    return F.pad(video, (0, 0, 0, 0, 0, 0, n - 1, 0))


def context_windows(padded: torch.Tensor, n: int) -> torch.Tensor:
    """Padded video [B, F + n - 1, 3, S, S] -> frame contexts [B, F, 3, n, S, S].

    Context f holds frames f - n + 1 .. f of the clip (zeros before frame 0).
    """
    w = padded.unfold(1, n, 1)  # [B, F, 3, S, S, n]
    return w.permute(0, 1, 2, 5, 3, 4)
