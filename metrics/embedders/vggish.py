"""VGGish (Hershey et al. 2017) in the torchvggish layout: 128-d per 0.96 s frame.

Front end as torchvggish's ``vggish_input.waveform_to_examples`` at 16 kHz: 25 ms
periodic-Hann windows every 10 ms, |rfft| with 512 points, 64 HTK-mel bands from 125 to
7500 Hz (upstream's own triangular filters, DC bin zeroed), ``log(mel + 0.01)``, then
non-overlapping 0.96 s examples of 96 x 64 (an incomplete tail is dropped). Computed
in float64 like upstream's numpy code, then cast to float32 for the network.

Output: the 128-d embedding layer without PCA/quantisation and without the final
ReLU (what av-benchmark and fadtk use for FD-VGGish). Each example is one FD sample
(``frames_level``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from foleybench import weights as W
from foleybench.device import full_precision
from foleybench.metrics.embedders.audio_base import AudioEmbedder
from foleybench.metrics.embedders.base import build_net

RECORD = W.register(W.WeightRecord(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    sha256=None,
    license="Apache-2.0 (tensorflow/models VGGish; torchvggish port)",
    paper="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
    note=("upstream publishes no full sha256; the file name carries the torch.hub sha256 prefix "
          "10086976, which decides pretrained vs custom. A third-party record gives sha256 "
          "10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b (288,567,937 bytes), "
          "not verified here"),
    sha256_prefix="10086976",
))

SAMPLE_RATE = 16000
WIN = 400           # 25 ms at 16 kHz
HOP = 160           # 10 ms
N_FFT = 512         # next power of two >= WIN, as upstream
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames, hop = window (no overlap)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """HTK mel scale (the formula VGGish was trained with)."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix() -> np.ndarray:
    """float64 ``[N_FFT//2+1, N_MELS]`` triangular mel weights, VGGish's definition."""
    n_bins = N_FFT // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_bins))
    edges = np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2)
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lo) / (mid - lo)
    falling = (hi - bin_mel[:, None]) / (hi - mid)
    m = np.maximum(0.0, np.minimum(rising, falling))
    m[0, :] = 0.0  # upstream drops the DC bin
    return m


def log_mel_examples(x: torch.Tensor) -> torch.Tensor:
    """``x``: ``[B, N]`` samples at 16 kHz -> float64 ``[B, E, 96, 64]`` log-mel examples."""
    x = x.to(torch.float64)
    frames = x.unfold(-1, WIN, HOP)                                   # [B, T, 400]
    n = torch.arange(WIN, dtype=torch.float64, device=x.device)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / WIN)             # periodic Hann
    mag = torch.fft.rfft(frames * window, n=N_FFT).abs()              # [B, T, 257]
    mel = mag @ torch.from_numpy(mel_matrix()).to(x.device)          # [B, T, 64]
    logmel = torch.log(mel + LOG_OFFSET)
    n_ex = logmel.shape[1] // EXAMPLE_FRAMES
    logmel = logmel[:, : n_ex * EXAMPLE_FRAMES]
    return logmel.reshape(x.shape[0], n_ex, EXAMPLE_FRAMES, N_MELS)


class VGGishNet(nn.Module):
    """VGG-like CNN; parameter names as torchvggish (``features.*``, ``embeddings.*``).

    forward: ``[B, 1, 96, 64]`` log-mel examples -> ``[B, 128]``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        # No ReLU after the last Linear: av-benchmark / fadtk take the pre-activation.
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                       # [B, 512, 6, 4]
        # Flatten channels-last, the order of the TF original the weights come from.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(x)


class VGGish(AudioEmbedder):
    name = "vggish"
    rate = SAMPLE_RATE
    dim = 128
    frames_level = True
    # one full example needs 400 + 95 * 160 samples
    min_seconds = (WIN + (EXAMPLE_FRAMES - 1) * HOP) / SAMPLE_RATE

    # Long inputs go through in runs of this many examples (memory bounded by the run, not
    # the input: 10 minutes took 2.8 GB whole). Examples do not overlap, so each run's
    # examples are exactly the full pass's; a run takes 240 samples past its last example.
    chunk_examples: int = 32

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, E, 128]`` (E = complete 0.96 s examples)."""
        span = EXAMPLE_FRAMES * HOP * self.chunk_examples
        if x.shape[-1] <= span + WIN:
            return self._embed_whole(x)
        rows = []
        for row in x:
            parts = [self._embed_whole(row[None, s:s + span + WIN - HOP])
                     for s in range(0, x.shape[-1] - WIN + 1, span)]
            rows.append(torch.cat([p for p in parts if p.shape[1]], dim=1)[0])
        return torch.stack(rows)

    def _embed_whole(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(str(self.device)):  # front end in float64, always
            ex = log_mel_examples(x)
        b, e = ex.shape[:2]
        y = self.net(ex.reshape(b * e, 1, EXAMPLE_FRAMES, N_MELS).to(torch.float32))
        return y.reshape(b, e, -1)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> VGGish:
    """VGGish embedder (torchvggish state_dict, loaded strictly). A ``checkpoint`` whose
    sha256 lacks the upstream prefix is labelled custom; ``verify=False`` skips the check
    of the weights directory's file (tests only)."""
    b = build_net("vggish", VGGishNet, mode=mode, checkpoint=checkpoint, seed=seed, verify=verify,
                  proxy_init=W.he_normal_init, lazy=True)
    return VGGish(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
