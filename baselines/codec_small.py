"""``foleycodec_16khz``: a small codec of EnCodec's kind, trained on synthfoley on a CPU.

Convolutional encoder (strided convs with a dilated residual unit per level, channels
doubling up to a cap) -> latent ``[B, D, T]`` -> residual vector quantisation (K
codebooks, EMA-updated as EnCodec/SoundStream) -> mirror decoder. Non-causal (padding on
both sides): it only has to tokenise whole clips. No adversarial loss: a multi-resolution
STFT loss plus a waveform L1 and the commitment loss, enough on synthfoley's impulsive
sounds and short of EnCodec's quality, which the reconstruction figures say.

Training: ``python -m foleybench.baselines.codec_train`` (codec_train.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.baselines.codec import CHECKPOINT_DIR, Codec
from foleybench.baselines.rvq import ResidualVQ

CODEC_FILE = "foleycodec_16khz.pt"
# sha256 of the shipped file (codec_train prints it); the LM recipes hash it, so a
# retrained codec stales every LM trained on its tokens.
CODEC_SHA256 = "bc08de60a0f246afe5cf28a9bfaf90a7fc11ba3271b1171bf2c258c5ae93dfb2"


@dataclass(frozen=True)
class SmallCodecConfig:
    """Rates in Hz; hop = prod(strides) samples per token step (16 kHz / 320 = 50 steps/s)."""

    sample_rate: int = 16000
    strides: tuple[int, ...] = (4, 4, 4, 5)
    channels: int = 8            # after the first conv; doubles per level up to max_channels
    max_channels: int = 64
    dim: int = 64                # latent dimension
    n_q: int = 4                 # codebooks K
    bins: int = 256              # tokens per codebook
    steps: int = 3000            # training recipe
    batch_size: int = 8
    segment_s: float = 0.5
    lr: float = 2e-3
    commit_weight: float = 0.25


def _ch(cfg: SmallCodecConfig, level: int) -> int:
    return min(cfg.channels * 2 ** level, cfg.max_channels)


class _ResUnit(nn.Module):
    """x + conv1(elu(conv_dil(elu(x)))): the SEANet residual unit (kernel 3, dilation d)."""

    def __init__(self, ch: int, dilation: int):
        super().__init__()
        self.c1 = nn.Conv1d(ch, ch, 3, dilation=dilation, padding=dilation)
        self.c2 = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.elu(self.c1(F.elu(x))))


class SmallCodecNet(nn.Module):
    """Encoder, RVQ and decoder of ``cfg``. Shapes: audio [B, 1, N] with N a multiple of
    the hop; latent [B, dim, N / hop]."""

    def __init__(self, cfg: SmallCodecConfig):
        super().__init__()
        self.cfg = cfg
        enc: list[nn.Module] = [nn.Conv1d(1, cfg.channels, 7, padding=3)]
        for i, s in enumerate(cfg.strides):
            c_in, c_out = _ch(cfg, i), _ch(cfg, i + 1)
            # kernel 2s, padding s/2 (rounded): exactly N/s outputs for N a multiple of s
            enc += [_ResUnit(c_in, 1 + 2 * (i % 2)), nn.ELU(), nn.Conv1d(c_in, c_out, 2 * s, s, padding=s // 2 + s % 2)]
        enc += [nn.ELU(), nn.Conv1d(_ch(cfg, len(cfg.strides)), cfg.dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv1d(cfg.dim, _ch(cfg, len(cfg.strides)), 7, padding=3)]
        for i, s in reversed(list(enumerate(cfg.strides))):
            c_in, c_out = _ch(cfg, i + 1), _ch(cfg, i)
            dec += [nn.ELU(), nn.ConvTranspose1d(c_in, c_out, 2 * s, s, padding=s // 2 + s % 2,
                                                 output_padding=s % 2), _ResUnit(c_out, 1 + 2 * (i % 2))]
        dec += [nn.ELU(), nn.Conv1d(cfg.channels, 1, 7, padding=3)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = ResidualVQ(cfg.n_q, cfg.bins, cfg.dim)

    def forward(self, wav: torch.Tensor, n_q: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction [B, 1, N], codes [B, n_q, T], commitment loss)."""
        z = self.encoder(wav)
        zq, codes, commit = self.quantizer(z, n_q)
        return self.decoder(zq), codes, commit


class SmallCodec(Codec):
    """:class:`~foleybench.baselines.codec.Codec` around a :class:`SmallCodecNet`."""

    def __init__(self, net: SmallCodecNet, weights: str = "proxy", sha256: str = ""):
        super().__init__()
        self.net, self.weights, self.sha256 = net, weights, sha256
        cfg = net.cfg
        self.sample_rate, self.n_q, self.cardinality = cfg.sample_rate, cfg.n_q, cfg.bins
        self.hop = int(torch.tensor(cfg.strides).prod())

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.net.quantizer.encode(self.net.encoder(self.pad(wav)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net.decoder(self.net.quantizer.decode(codes))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": "foleycodec_16khz", "weights": self.weights,
                "weights_sha256": self.sha256}


def codec_config_dict(cfg: SmallCodecConfig) -> dict[str, Any]:
    """Plain data of ``cfg`` (stored in the checkpoint and compared at load)."""
    d = dataclasses.asdict(cfg)
    d["strides"] = list(cfg.strides)
    return d


def load_small_codec(mode: str = "pretrained", checkpoint: str | Path | None = None, seed: int = 0,
                     cfg: SmallCodecConfig | None = None) -> SmallCodec:
    """The shipped small codec (strict load through the one checkpoint reader), or a seeded
    random-init proxy of ``cfg`` (default config) with ``mode="proxy"``."""
    from foleybench.weights import load_strict, read_checkpoint, seeded_init, sha256_file, state_dict_sha256

    if mode == "proxy":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = SmallCodecNet(cfg or SmallCodecConfig())
        seeded_init(net, seed)
        return SmallCodec(net, "proxy", state_dict_sha256(net.state_dict())).eval()
    if mode != "pretrained":
        raise ValueError(f"foleycodec_16khz: mode must be 'pretrained' or 'proxy', not {mode!r}")
    path = Path(checkpoint) if checkpoint else CHECKPOINT_DIR / CODEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: small codec checkpoint missing "
                                "(make it with `python -m foleybench.baselines.codec_train`)")
    ck = read_checkpoint(path)
    ccfg = SmallCodecConfig(**{**ck["config"], "strides": tuple(ck["config"]["strides"])})
    net = SmallCodecNet(ccfg)
    load_strict(net, ck["state_dict"], str(path))
    return SmallCodec(net, "trained", sha256_file(path)).eval()


# ------------------------------------------------------------------ losses and quality
_FFTS = (256, 512, 1024, 2048)


def mrstft_distance(x: torch.Tensor, y: torch.Tensor, ffts: tuple[int, ...] = _FFTS) -> torch.Tensor:
    """Multi-resolution STFT distance of audio [B, N] (or [B, 1, N]) pairs, mean over batch:
    per FFT size (hop n/4, Hann), spectral convergence ||Y|-|X||_F / ||Y||_F plus mean
    |log(|X| + 1e-5) - log(|Y| + 1e-5)|, averaged over sizes (dimensionless; 0 = identical)."""
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    total = x.new_zeros(())
    for n in ffts:
        win = torch.hann_window(n, device=x.device)
        X = torch.stft(x, n, n // 4, window=win, return_complex=True).abs()
        Y = torch.stft(y, n, n // 4, window=win, return_complex=True).abs()
        sc = (Y - X).flatten(1).norm(dim=1) / Y.flatten(1).norm(dim=1).clamp_min(1e-7)
        lm = (torch.log(X + 1e-5) - torch.log(Y + 1e-5)).abs().flatten(1).mean(1)
        total = total + (sc + lm).mean()
    return total / len(ffts)


def si_snr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SNR in dB per row of [B, N] (zero-mean signals): 10 log10(|s|^2/|e|^2)
    with s the projection of est on ref."""
    est, ref = est.reshape(est.shape[0], -1), ref.reshape(ref.shape[0], -1)
    est, ref = est - est.mean(1, keepdim=True), ref - ref.mean(1, keepdim=True)
    s = (est * ref).sum(1, keepdim=True) / ref.pow(2).sum(1, keepdim=True).clamp_min(1e-8) * ref
    return 10 * torch.log10(s.pow(2).sum(1).clamp_min(1e-8) / (est - s).pow(2).sum(1).clamp_min(1e-8))
