"""Training and validation of the Martel & Wagner waveform models on a manifest dataset.

``train`` is seeded and resumable: batch t is drawn from ``default_rng([seed, t])``, so a
run resumed from a checkpoint draws the batches an uninterrupted run would have drawn.
A checkpoint records the recipe hash (config + steps + seed + code version) and the
data fingerprint (``Manifest.fingerprint`` of the training split, which covers decoded
content, not container bytes); ``stale_checkpoints`` compares both with what training
would use now. ``make bench`` only reports stale checkpoints (and marks their rows);
retraining is ``make train``. Clips are cut as the paper does (Sec. III-B): audio to a whole number of video
frames, video to the frames that audio covers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foleybench.baselines import martel_wagner as mw
from foleybench.baselines.mulaw import quantize
from foleybench.baselines.video_context import pad_context, prepare_frames
from foleybench.datasets.base import Manifest

SAVE_EVERY = 50  # steps between resumable checkpoints


@dataclass
class ClipData:
    """One clip at the model's rates: audio [C, F*spf] (mu-law quantised amplitudes),
    video_padded [F + n - 1, 3, S, S] (n - 1 zero frames first)."""

    clip_id: str
    label: str
    audio: torch.Tensor
    video_padded: torch.Tensor


def read_manifest(data_dir: str | Path) -> Manifest:
    """The dataset's manifest: ``data_dir`` itself when it is a CSV, else data_dir/manifest.csv."""
    p = Path(data_dir)
    return Manifest.read(p if p.suffix == ".csv" else p / "manifest.csv")


def load_clips(manifest: Manifest, cfg: mw.MWConfig) -> list[ClipData]:
    """Decode every clip of ``manifest`` at cfg's audio rate, fps and frame size."""
    from foleybench.media import read_audio, read_video

    spf, out = cfg.spf, []
    for r in manifest:
        a = read_audio(r.audio_source, sample_rate=cfg.sample_rate).samples
        a = a.mean(0, keepdims=True) if cfg.channels == 1 else np.repeat(a, 2, 0)[:2] if a.shape[0] == 1 else a[:2]
        v = read_video(r.video)
        n_fr = min(a.shape[-1] // spf, int(v.frames.shape[0] * cfg.fps / v.fps))
        if n_fr < 1:
            continue
        audio = quantize(torch.from_numpy(np.ascontiguousarray(a[:, :n_fr * spf])), cfg.n_classes) \
            if cfg.output == "mulaw" else torch.from_numpy(np.ascontiguousarray(a[:, :n_fr * spf]))
        video = prepare_frames(v.frames, v.fps, cfg.fps, cfg.frame_size, n_fr)
        out.append(ClipData(r.clip_id, r.label, audio, pad_context(video, cfg.n_frames)))
    return out


def recipe_hash(cfg: mw.MWConfig, steps: int, seed: int) -> str:
    blob = json.dumps({"config": dataclasses.asdict(cfg), "steps": steps, "seed": seed,
                       "code_version": mw.CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _batch(clips: list[ClipData], cfg: mw.MWConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of cfg.crop_frames frames: audio [B, C, k*spf], video [B, k+n-1, 3, S, S]."""
    k, spf, n = cfg.crop_frames, cfg.spf, cfg.n_frames
    aud, vid = [], []
    for _ in range(cfg.batch_size):
        c = clips[rng.integers(len(clips))]
        n_fr = c.audio.shape[-1] // spf
        if n_fr < k:  # clip shorter than a crop: pad with silence and repeated frames
            c = ClipData(c.clip_id, c.label, torch.nn.functional.pad(c.audio, (0, (k - n_fr) * spf)),
                         torch.cat([c.video_padded] + [c.video_padded[-1:]] * (k - n_fr)))
            n_fr = k
        f0 = int(rng.integers(n_fr - k + 1))
        aud.append(c.audio[:, f0 * spf:(f0 + k) * spf])
        vid.append(c.video_padded[f0:f0 + k + n - 1])
    return torch.stack(aud), torch.stack(vid)


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, str(tmp))
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def _plot(losses: list[float], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6, alpha=0.4, label="per step")
    w = max(1, len(losses) // 25)
    if len(losses) >= w:
        ax.plot(np.arange(w - 1, len(losses)), np.convolve(losses, np.ones(w) / w, "valid"), label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/sample)" if "mulaw" in title else "training loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(model_name: str, data_dir: str | Path, out_ckpt: str | Path, steps: int | None = None,
          seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train ``family.tag`` on the train split of ``data_dir``; returns a summary dict.

    Resumes from ``out_ckpt`` when it holds the same recipe and data; a finished run
    returns at once. Writes the loss curve next to the checkpoint (``*.loss.png``).
    """
    from foleybench.progress import Stage

    family, _, tag = model_name.partition(".")
    cfg = mw.get_config(family, tag)
    steps = int(steps if steps is not None else cfg.steps)
    out_ckpt = Path(out_ckpt)
    out_ckpt.parent.mkdir(parents=True, exist_ok=True)
    train_split = read_manifest(data_dir).split("train")
    fingerprint, rhash = train_split.fingerprint(), recipe_hash(cfg, steps, seed)

    torch.manual_seed(seed)
    net = mw.build_net(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    done, losses, seconds = 0, [], 0.0
    if out_ckpt.is_file():
        ck = mw.load_checkpoint(out_ckpt)
        if ck.get("recipe_hash") == rhash and ck.get("data_fingerprint") == fingerprint:
            net.load_state_dict(ck["state_dict"])
            if ck.get("optimizer") is not None:
                opt.load_state_dict(ck["optimizer"])
            done, losses, seconds = ck["steps_done"], list(ck["losses"]), ck.get("train_seconds", 0.0)
    clips = load_clips(train_split, cfg) if done < steps else []
    if done < steps and not clips:
        raise ValueError(f"{data_dir}: no training clips (split 'train') long enough for {model_name}")

    def payload(final: bool) -> dict[str, Any]:
        return {"model": model_name, "config": dataclasses.asdict(cfg), "state_dict": net.state_dict(),
                "optimizer": None if final else opt.state_dict(), "steps_done": done, "steps": steps,
                "seed": seed, "losses": losses, "recipe_hash": rhash, "data_fingerprint": fingerprint,
                "code_version": mw.CODE_VERSION, "train_seconds": seconds}

    net.train()
    warm = cfg.warm_frames * cfg.spf
    bar = Stage(f"train {model_name}", total=steps, unit="step", initial=done, enabled=progress)
    t0 = time.perf_counter()
    while done < steps:
        # cosine decay to 10% of lr: a function of the step, so resuming does not change it
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done / steps)))
        audio, video = _batch(clips, cfg, np.random.default_rng([seed, done]))
        out = net.sequence_logits(audio, video, first_frame=cfg.warm_frames)
        loss = mw.loss_fn(out, audio[..., warm:], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        done += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if done % SAVE_EVERY == 0 or done == steps:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save(out_ckpt, payload(final=done == steps))
    bar.close()
    png = out_ckpt.with_suffix(".loss.png")
    if losses:
        _plot(losses, png, f"{model_name} ({cfg.output}), seed {seed}")
    tail = losses[-20:]
    return {"model": model_name, "checkpoint": str(out_ckpt), "steps": done, "seed": seed,
            "final_loss": float(np.mean(tail)) if tail else None, "train_seconds": round(seconds, 1),
            "n_params": mw.n_params(net), "recipe_hash": rhash, "data_fingerprint": fingerprint,
            "loss_png": str(png)}


def stale_reason(name: str, data_dir: str | Path | None = None) -> str | None:
    """Why the shipped checkpoint of ``name`` (``family.tiny``) does not describe today's
    recipe, or None when it does.

    Stale means: the file is missing, unfinished, trained with another recipe (config,
    default steps, seed 0, code version: ``recipe_hash``), or, when ``data_dir`` is
    given, on data whose content fingerprint differs from that folder's train split.
    Container bytes do not count: the fingerprint covers decoded content.
    """
    family, _, tag = name.partition(".")
    path = mw.default_checkpoint(name)
    if not path.is_file():
        return f"{path} is missing"
    cfg = mw.get_config(family, tag)
    ck = mw.load_checkpoint(path)
    if ck.get("recipe_hash") != recipe_hash(cfg, cfg.steps, 0):
        return (f"recipe changed since it was trained (config, steps, seed or code version; "
                f"checkpoint {str(ck.get('code_version'))}, code now {mw.CODE_VERSION})")
    if ck.get("steps_done") != cfg.steps:
        return f"unfinished: {ck.get('steps_done')} of {cfg.steps} steps"
    if data_dir is not None:
        fp = read_manifest(data_dir).split("train").fingerprint()
        if ck.get("data_fingerprint") != fp:
            return (f"trained on other data (fingerprint {str(ck.get('data_fingerprint'))[:12]}, "
                    f"the train split here is {fp[:12]})")
    return None


def trained_families() -> tuple[str, ...]:
    """Families whose ``tiny`` config ships a trained checkpoint."""
    return tuple(mw.FAMILIES)


def stale_checkpoints(data_dir: str | Path | None = None, tags: tuple[str, ...] = ("tiny",)) -> dict[str, str]:
    """{name: reason} for every shipped checkpoint that is stale (see :func:`stale_reason`)."""
    out = {}
    for family in mw.FAMILIES:
        for tag in tags:
            why = stale_reason(f"{family}.{tag}", data_dir)
            if why:
                out[f"{family}.{tag}"] = why
    return out


DEFAULT_DATA = Path("runs/data/synthfoley-48-s0")


def default_data(root: str | Path = DEFAULT_DATA) -> Path:
    """The synthfoley set the shipped checkpoints are trained on (48 clips, seed 0)."""
    from foleybench.datasets.synthfoley import SynthFoley

    SynthFoley(root, n_clips=48, seed=0).manifest()
    return Path(root)


def retrain(data_dir: str | Path | None = None, force: bool = False, progress: bool = True) -> list[str]:
    """Retrain the shipped tiny checkpoints that are stale (all of them with ``force``).

    Only ``make train`` (``python -m foleybench.train``) calls this: ``make bench`` never
    retrains. Training is not bit-reproducible across CPUs, so after retraining the
    goldens must be updated and both committed together (docs/PROTOCOL.md)."""
    data = Path(data_dir) if data_dir else default_data()
    names = [f"{f}.tiny" for f in mw.FAMILIES] if force else list(stale_checkpoints(data))
    for name in names:
        path = mw.default_checkpoint(name)
        if force and path.exists():
            path.unlink()
        info = train(name, data, path, progress=progress)
        print(f"{name}: {info.get('steps')} steps, final loss {info.get('final_loss')}")
    return names


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Retrain the shipped tiny Martel & Wagner checkpoints.")
    ap.add_argument("--all", action="store_true", help="retrain every tiny checkpoint, stale or not")
    ap.add_argument("--data", help="synthfoley folder (default: the 48-clip seed-0 set under runs/data)")
    args = ap.parse_args()
    done = retrain(args.data, force=args.all)
    print("retrained: " + (", ".join(done) if done else "nothing (all current)"))
