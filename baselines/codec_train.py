"""Train ``foleycodec_16khz`` on the synthfoley train split, and measure its reconstruction.

``python -m foleybench.baselines.codec_train [--data DIR] [--steps N]`` trains the small
codec (seeded: batch t is drawn from ``default_rng([seed, t])``; Adam with cosine decay to
10%, gradient clipping at 1), writes baselines/checkpoints/foleycodec_16khz.pt with its
loss plot, then scores reconstruction on the test split (multi-resolution STFT distance
and SI-SNR per clip, mean and 95% bootstrap interval) into foleycodec_16khz.quality.json
and prints the sha256 to paste into codec_small.CODEC_SHA256.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foleybench.baselines.codec import CHECKPOINT_DIR
from foleybench.baselines.codec_small import (
    CODEC_FILE,
    SmallCodecConfig,
    SmallCodecNet,
    codec_config_dict,
    load_small_codec,
    mrstft_distance,
    si_snr,
)


def load_audio(data_dir: str | Path, split: str, sample_rate: int) -> list[torch.Tensor]:
    """Mono audio [N] at ``sample_rate`` of every clip of ``split``."""
    from foleybench.media import read_audio
    from foleybench.train import read_manifest

    out = []
    for r in read_manifest(data_dir).split(split):
        a = read_audio(r.audio_source, sample_rate=sample_rate).samples.mean(0)
        out.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
    return out


def batch(clips: list[torch.Tensor], cfg: SmallCodecConfig, rng: np.random.Generator) -> torch.Tensor:
    """cfg.batch_size random segments of cfg.segment_s seconds: [B, 1, n] (n a multiple of the hop)."""
    hop = int(np.prod(cfg.strides))
    n = int(cfg.segment_s * cfg.sample_rate) // hop * hop
    segs = []
    for _ in range(cfg.batch_size):
        c = clips[int(rng.integers(len(clips)))]
        c = torch.nn.functional.pad(c, (0, max(0, n - c.shape[0])))
        s = int(rng.integers(c.shape[0] - n + 1))
        segs.append(c[s:s + n])
    return torch.stack(segs)[:, None]


def codec_loss(net: SmallCodecNet, wav: torch.Tensor) -> torch.Tensor:
    """MR-STFT distance + waveform L1 + commit_weight x commitment (all dimensionless)."""
    recon, _, commit = net(wav)
    return mrstft_distance(recon, wav) + (recon - wav).abs().mean() + net.cfg.commit_weight * commit


def train_codec(data_dir: str | Path, out: Path, cfg: SmallCodecConfig = SmallCodecConfig(), seed: int = 0,
                steps: int | None = None) -> dict[str, Any]:
    """Train and save; returns a summary (steps, seconds, final loss, steps/s)."""
    from foleybench.train import _save, plot_losses

    steps = int(steps or cfg.steps)
    clips = load_audio(data_dir, "train", cfg.sample_rate)
    torch.manual_seed(seed)
    net = SmallCodecNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    losses: list[float] = []
    net.train()
    t0 = time.perf_counter()
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / steps)))
        loss = codec_loss(net, batch(clips, cfg, np.random.default_rng([seed, t])))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (t + 1) % 250 == 0:
            print(f"step {t + 1}/{steps} loss {np.mean(losses[-250:]):.4f} "
                  f"{(t + 1) / (time.perf_counter() - t0):.2f} steps/s", flush=True)
    seconds = time.perf_counter() - t0
    from foleybench.train import read_manifest

    _save(out, {"model": "foleycodec_16khz", "config": codec_config_dict(cfg), "state_dict": net.state_dict(),
                "steps_done": steps, "seed": seed, "losses": losses, "train_seconds": seconds,
                "data_fingerprint": read_manifest(data_dir).split("train").fingerprint()})
    plot_losses(losses, out.with_suffix(".loss.png"), f"foleycodec_16khz, seed {seed}",
                "MR-STFT + L1 + commitment")
    return {"steps": steps, "train_seconds": round(seconds, 1), "steps_per_s": round(steps / seconds, 2),
            "final_loss": float(np.mean(losses[-50:])), "n_params": sum(p.numel() for p in net.parameters())}


def _ci(x: np.ndarray, seed: int = 0, n: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n, len(x)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


@torch.no_grad()
def reconstruction_quality(data_dir: str | Path, checkpoint: str | Path | None = None,
                           split: str = "test") -> dict[str, Any]:
    """Per-clip MR-STFT distance (lower is better) and SI-SNR in dB (higher) of
    decode(encode(x)) on ``split``: mean and 95% bootstrap interval over clips."""
    codec = load_small_codec("pretrained", checkpoint)
    d, s = [], []
    for a in load_audio(data_dir, split, codec.sample_rate):
        x = a[None, None]
        y = codec.decode(codec.encode(x))[..., :a.shape[0]]
        d.append(float(mrstft_distance(y, x)))
        s.append(float(si_snr(y, x)[0]))
    dd, ss = np.array(d), np.array(s)
    return {"split": split, "n": len(d), "mrstft": float(dd.mean()), "mrstft_ci95": _ci(dd),
            "si_snr_db": float(ss.mean()), "si_snr_ci95": _ci(ss), "codec": codec.describe()}


if __name__ == "__main__":
    import argparse

    from foleybench.train import default_data
    from foleybench.weights import sha256_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="synthfoley folder (default: the 48-clip seed-0 set)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--quality-only", action="store_true")
    args = ap.parse_args()
    data = Path(args.data) if args.data else default_data()
    out = CHECKPOINT_DIR / CODEC_FILE
    if not args.quality_only:
        print(json.dumps(train_codec(data, out, steps=args.steps)), flush=True)
    q = reconstruction_quality(data, out)
    out.with_suffix(".quality.json").write_text(json.dumps(q, indent=1) + "\n")
    print(json.dumps(q))
    print(f'CODEC_SHA256 = "{sha256_file(out)}"')
