"""A small audio-visual correspondence model: does this audio belong to this video?

The seed's "correlation tower" (visual-acoustic-relationships, step 2): two encoders and
a cross-modal transformer with a binary head, trained on positive pairs (a clip's own
audio and frames, same window) against negatives from other clips (of another class, and
of the same class: the right kind of sound at the wrong times) and from the same clip's
audio shifted in time (so it must learn synchrony, not only the kind of sound).

- audio: log-mel [W*16, 40] at 16 tokens per second (16 kHz, hop 1000 samples, 1024-point
  FFT) -> a small MLP per token;
- video: frames at 16 fps, 32x32, each with its difference to the previous frame (motion
  is what the sound of an event follows), average-pooled to 8x8 cells -> a per-frame MLP;
- per time step the two tokens are fused (concatenated, projected); a transformer over
  [CLS, fused tokens] (time embeddings), CLS -> one logit; P(match) = sigmoid.
  Window: W = 2 s (32 tokens).

Used by ``foleybench curate --scorer avc`` (:func:`score_manifest`): a clip's score is
the mean P(match) over its 2 s windows (at most ``MAX_WINDOWS``, 1 s apart). Trained by
``python -m foleybench.baselines.correspondence`` on its own train-only synthfoley set
(``TRAIN["train_data"]``, rendered on first use through foleybench.train's hook; the
benchmark's seed 0 is refused there); the checkpoint ships in baselines/checkpoints
(``avc.tiny.pt``, sha256 in ``CHECKPOINT_SHA``, the train split's fingerprint in
``TRAINED_ON_FINGERPRINT``). This module registers no model family: it scores, it does
not generate.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SR, HOP, N_FFT, N_MELS = 16000, 1000, 1024, 40
FPS, SIZE, WINDOW_S, MAX_WINDOWS = 16.0, 32, 2.0, 5
TOK = int(WINDOW_S * FPS)  # tokens per modality in a window
SHIFT_MIN = 3  # tokens (~0.19 s): the smallest shift of a shifted-audio negative taken from another offset
CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "avc.tiny.pt"
CHECKPOINT_SHA = "972554d9c442858c285468cbdf3ec7a9e7842f4e808d7c59af24a79ebbb5cb86"  # the shipped file (3000 steps, final BCE 0.091)
# the content fingerprint of the train split it was trained on (runs/data/synthfoley-640-s1-train)
TRAINED_ON_FINGERPRINT = "1095bd082a25c6d3572bfe0be15d3714205b3566185df495b0b97add3d6c4fcf"
TRAIN: dict[str, Any] = dict(steps=3000, batch=16, lr=2e-3, seed=0, d=48, layers=2, heads=4, shift_real=0.5,
                             train_data={"clips": 640, "seed": 1})


class AVCorrespondence(nn.Module):
    """mel [B, T, N_MELS], frames [B, T, 6, SIZE, SIZE] -> match logit [B].

    The two encoders make one token per modality per time step (1/16 s); the cross-modal
    transformer sees, per time step, the audio and video tokens fused (concatenated and
    projected), so whether a sound starts where motion does is a local feature it can
    compare along the window, rather than something attention must first learn to line up."""

    def __init__(self, d: int = 48, layers: int = 2, heads: int = 4):
        super().__init__()
        # log-mel spans ~-11.5 (silence) to ~+5: normalise per token before the projection
        self.aud = nn.Sequential(nn.LayerNorm(N_MELS), nn.Linear(N_MELS, d), nn.ReLU(), nn.Linear(d, d))
        # frame and motion pooled to 8x8 cells, then an MLP: where and how much things move is
        # what the timing of a sound follows, and it is 17x cheaper to train than a CNN on 32x32
        self.vid = nn.Sequential(nn.AvgPool2d(SIZE // 8), nn.Flatten(), nn.LayerNorm(6 * 64), nn.Linear(6 * 64, d),
                                 nn.ReLU(), nn.Linear(d, d))
        self.fuse = nn.Sequential(nn.LayerNorm(2 * d), nn.Linear(2 * d, d))
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(TOK, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
        self.xf = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, 1)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        B, T = frames.shape[:2]
        v = self.vid(frames.flatten(0, 1)).view(B, T, -1)
        a = self.aud(mel[:, :T])
        x = self.fuse(torch.cat([v, a], -1)) + self.pos[:T]
        x = self.xf(torch.cat([self.cls.expand(B, -1, -1), x], 1))
        return self.head(x[:, 0])[:, 0]


def log_mel(samples: np.ndarray) -> torch.Tensor:
    """Mono float32 [N] at 16 kHz -> log-mel [N // HOP, N_MELS] (one row per video frame)."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=False)
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    x = F.pad(x, (N_FFT - HOP, 0))  # token t covers the audio up to the end of frame t
    return torch.log(mel(x).T + 1e-5)[: len(samples) // HOP]


def frames_with_motion(frames: np.ndarray, fps: float, n: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] at fps -> [n, 6, SIZE, SIZE]: frames in [-1, 1] at 16 fps and their
    difference to the previous frame (zero for the first)."""
    from foleybench.baselines.video_context import prepare_frames

    v = prepare_frames(frames, fps, FPS, SIZE, n)
    return torch.cat([v, v - torch.cat([v[:1], v[:-1]])], 1)


def load_audio_tokens(audio_path: str, max_s: float | None = None) -> torch.Tensor:
    """log-mel [T, N_MELS] of an audio file, T tokens at 16 per second."""
    from foleybench.media import read_audio

    return log_mel(read_audio(audio_path, sample_rate=SR, mono=True, duration_s=max_s).samples[0])


def load_video_tokens(video_path: str, n: int) -> torch.Tensor:
    """frames [<= n, 6, SIZE, SIZE] of a video's first n tokens (decoded in WINDOW_S pieces
    so a long HD clip is never held whole)."""
    from foleybench.media import read_video

    chunks: list[torch.Tensor] = []
    t0 = 0.0
    while len(chunks) * TOK < n:
        clip = read_video(video_path, start_s=t0, duration_s=WINDOW_S)
        if clip.frames.shape[0] == 0:
            break
        chunks.append(frames_with_motion(clip.frames, clip.fps, TOK))
        t0 += WINDOW_S
    return torch.cat(chunks)[:n]


def load_clip(audio_path: str, video_path: str, max_s: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel [T, N_MELS], frames [T, 6, SIZE, SIZE]) of one clip, T tokens at 16 per second."""
    mel = load_audio_tokens(audio_path, max_s)
    v = load_video_tokens(video_path, mel.shape[0])
    T = min(mel.shape[0], v.shape[0])
    return mel[:T], v[:T]


def _windows(T: int) -> list[int]:
    """Start tokens of the scored windows: 1 s apart, at most MAX_WINDOWS."""
    return list(range(0, max(1, T - TOK + 1), int(FPS)))[:MAX_WINDOWS]


def _fit(x: torch.Tensor, t0: int) -> torch.Tensor:
    """x[t0:t0 + TOK], padded by repeating the last token when the clip is shorter."""
    w = x[t0:t0 + TOK]
    return torch.cat([w, w[-1:].expand(TOK - w.shape[0], *w.shape[1:])]) if w.shape[0] < TOK else w


@torch.no_grad()
def clip_score(net: AVCorrespondence, mel: torch.Tensor, frames: torch.Tensor) -> float:
    """Mean P(match) over the clip's windows."""
    starts = _windows(min(mel.shape[0], frames.shape[0]))
    m = torch.stack([_fit(mel, s) for s in starts])
    v = torch.stack([_fit(frames, s) for s in starts])
    return float(torch.sigmoid(net(m, v)).mean())


def load_net(path: str | Path = CHECKPOINT) -> tuple[AVCorrespondence, dict[str, Any]]:
    """The trained network and its provenance (a wrong sha256 is an error, not a warning)."""
    from foleybench.api import FoleybenchError
    from foleybench.weights import load_strict, read_checkpoint, sha256_file

    path = Path(path)
    if not path.is_file():
        raise FoleybenchError(f"{path} is missing (`python -m foleybench.baselines.correspondence` trains it)")
    digest = sha256_file(path)
    if CHECKPOINT_SHA and path == CHECKPOINT and digest != CHECKPOINT_SHA:
        raise FoleybenchError(f"{path}: sha256 {digest[:12]} is not the shipped {CHECKPOINT_SHA[:12]}")
    ck = read_checkpoint(path)
    net = AVCorrespondence(**{k: ck["train"][k] for k in ("d", "layers", "heads")})
    load_strict(net, ck["state_dict"], str(path))
    return net.eval(), {"checkpoint": str(path), "checkpoint_sha256": digest, "weights": "trained",
                        "data_fingerprint": ck.get("data_fingerprint")}


def score_pairs(pairs: Sequence[tuple[str, str]], path: str | Path = CHECKPOINT
                ) -> tuple[list[float | str], dict[str, Any]]:
    """P(match) of each (video path, audio path), or the reason it has none; each file is
    decoded once however many pairs use it (the curate benchmark scores many swaps)."""
    from foleybench.api import InputError

    net, meta = load_net(path)
    max_s = WINDOW_S + MAX_WINDOWS - 1
    mels: dict[str, torch.Tensor | str] = {}
    vids: dict[tuple[str, int], torch.Tensor | str] = {}
    out: list[float | str] = []
    for video, audio in pairs:
        if audio not in mels:
            try:
                mels[audio] = load_audio_tokens(audio, max_s)
            except InputError as exc:
                mels[audio] = str(exc)
        mel = mels[audio]
        if isinstance(mel, str):
            out.append(mel)
            continue
        key = (video, mel.shape[0])
        if key not in vids:
            try:
                vids[key] = load_video_tokens(video, mel.shape[0])
            except InputError as exc:
                vids[key] = str(exc)
        v = vids[key]
        if isinstance(v, str):
            out.append(v)
            continue
        T = min(mel.shape[0], v.shape[0])
        out.append(clip_score(net, mel[:T], v[:T]))
    return out, {"scorer": "avc", "unit": "P(match) in [0, 1]", **meta}


def score_manifest(manifest: Any, ctx: Any = None) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Scorer for ``foleybench curate``: ({clip id: P(match)}, {clip id: why excluded}, provenance)."""
    rows = [r for r in manifest if r.video and r.audio_source]
    values, meta = score_pairs([(r.video, r.audio_source) for r in rows])
    excluded = {r.clip_id: "needs a video and an audio track" for r in manifest if not (r.video and r.audio_source)}
    scores = {}
    for r, v in zip(rows, values):
        if isinstance(v, str):
            excluded[r.clip_id] = v
        else:
            scores[r.clip_id] = v
    return scores, excluded, meta


# ------------------------------------------------------------------ training
def _other(rng: np.random.Generator, pool: Sequence[int], i: int) -> int:
    """A random member of pool other than i (pool holds at least one other)."""
    j = int(pool[int(rng.integers(len(pool)))])
    while j == i:
        j = int(pool[int(rng.integers(len(pool)))])
    return j


def make_batch(data: Sequence[tuple[torch.Tensor, torch.Tensor]], classes: Sequence[str],
               rng: np.random.Generator, b: int, cfg_shift_real: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2b pairs, half positive: mel, frames, labels [2b].

    Positives: a clip's own audio and frames, same window. Negatives, b of them, in turn:
    another clip's audio of another class, another clip's audio of the same class (the
    hard case: the kind of sound is right, its timing is not), and the clip's own audio
    shifted in time (synchrony alone): with probability ``cfg_shift_real`` the window at
    another offset of the same clip (at least ``SHIFT_MIN`` tokens away, when the clip is
    long enough: a real shift, no seam), else the window rolled by 0.5-1.5 s. Balanced classes, so
    P(match) = 0.5 is the natural threshold (``above:0.5``)."""
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    mels, vids, ys = [], [], []
    for k in range(2 * b):
        i = int(rng.integers(len(data)))
        mel, v = data[i]
        T = min(mel.shape[0], v.shape[0])
        t0 = int(rng.integers(max(1, T - TOK + 1)))
        kind = 0 if k < b else 1 + (k - b) % 3
        same = by_class[classes[i]]
        if kind == 2 and len(same) < 2:
            kind = 1
        if kind in (1, 2):  # another clip's audio, any window
            pool = same if kind == 2 else [j for j in range(len(data)) if classes[j] != classes[i]] or range(len(data))
            mo = data[_other(rng, list(pool), i)][0]
            m = _fit(mo, int(rng.integers(max(1, mo.shape[0] - TOK + 1))))
        elif kind == 3:  # own audio, shifted in time
            others = [t for t in range(max(1, T - TOK + 1)) if abs(t - t0) >= SHIFT_MIN]
            if others and cfg_shift_real > 0 and rng.random() < cfg_shift_real:
                m = _fit(mel, int(others[int(rng.integers(len(others)))]))  # from another offset of the clip
            else:  # rolled by 0.5-1.5 s within the window
                m = torch.roll(_fit(mel, t0), int(rng.integers(TOK // 4, 3 * TOK // 4 + 1)), 0)
        else:
            m = _fit(mel, t0)
        mels.append(m)
        vids.append(_fit(v, t0))
        ys.append(1.0 if kind == 0 else 0.0)
    return torch.stack(mels), torch.stack(vids), torch.tensor(ys)


def train_dir(cfg: dict[str, Any] = TRAIN) -> Path:
    """The folder avc trains on: its own train-only synthfoley set (``train_data``),
    rendered on first use (foleybench.train.train_data_dir; seed 0 is refused there)."""
    from foleybench.train import train_data_dir, train_data_spec

    spec = train_data_spec(_Cfg(cfg))
    assert spec is not None
    return train_data_dir(spec)


class _Cfg:
    """Attribute view of the TRAIN dict (what foleybench.train.train_data_spec reads)."""

    def __init__(self, cfg: dict[str, Any]):
        self.__dict__.update(cfg)


def train(data_dir: str | Path | None = None, out: str | Path = CHECKPOINT, cfg: dict[str, Any] = TRAIN,
          progress: bool = True, preloaded: tuple[list[Any], list[str]] | None = None) -> dict[str, Any]:
    """Train on the train split of data_dir (default: avc's own train_data set; seeded);
    writes the checkpoint (with what it trained on) and its loss plot."""
    import time

    from foleybench.baselines.mw_table1 import synth_class
    from foleybench.train import plot_losses, read_manifest, train_data_spec

    t_start = time.perf_counter()
    data_dir = Path(data_dir) if data_dir is not None else train_dir(cfg)
    split = read_manifest(data_dir).split("train")
    # preloaded: the decoded clips of this split (experiments reuse them; decoding 320 clips takes ~1 CPU min)
    data = preloaded[0] if preloaded else [load_clip(r.audio_source, r.video) for r in split]
    classes = preloaded[1] if preloaded else [synth_class(r.clip_id) for r in split]
    t_data = time.perf_counter() - t_start
    # one thread: the model is small, and on a shared machine extra OpenMP threads spin
    # and wait (seen: several times slower at load 14 on 2 cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(cfg["seed"])
    net = AVCorrespondence(cfg["d"], cfg["layers"], cfg["heads"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    losses = []
    for step in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * (0.1 + 0.45 * (1 + math.cos(math.pi * step / cfg["steps"])))
        mel, v, y = make_batch(data, classes, np.random.default_rng([cfg["seed"], step]), cfg["batch"],
                               cfg.get("shift_real", 0.0))
        loss = F.binary_cross_entropy_with_logits(net(mel, v), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if progress and step % 100 == 0:
            print(f"step {step} loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    seconds = time.perf_counter() - t_start
    torch.set_num_threads(threads)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = train_data_spec(_Cfg(cfg))
    torch.save({"state_dict": net.state_dict(), "train": dict(cfg), "losses": losses,
                "data_fingerprint": split.fingerprint(), "n_train_clips": len(split),
                "train_data": spec if Path(data_dir) == train_dir_path(cfg) else None}, out)
    # no wall times in the file: the same recipe and data on the same CPU rewrite the same bytes
    plot_losses(losses, out.with_suffix(".loss.png"), f"avc.tiny (correspondence), seed {cfg['seed']}, "
                f"{len(split)} clips", "BCE")
    return {"checkpoint": str(out), "final_loss": float(np.mean(losses[-100:])), "train_seconds": round(seconds, 1),
            "data_seconds": round(t_data, 1), "n_train_clips": len(split), "data_fingerprint": split.fingerprint()}


def train_dir_path(cfg: dict[str, Any] = TRAIN) -> Path:
    """Where train_dir renders avc's training set (without rendering it)."""
    from foleybench.train import train_data_dir, train_data_spec

    spec = train_data_spec(_Cfg(cfg))
    assert spec is not None
    return train_data_dir(spec, generate=False)


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Train the audio-visual correspondence scorer (avc.tiny).")
    ap.add_argument("--data", help="synthfoley folder (default: avc's own train_data set, rendered under runs/data)")
    ap.add_argument("--out", default=str(CHECKPOINT))
    ap.add_argument("--set", action="append", default=[], help="override a TRAIN entry, KEY=VALUE (experiments)")
    args = ap.parse_args()
    cfg = dict(TRAIN)
    for kv in args.set:
        k, _, v = kv.partition("=")
        cfg[k] = json.loads(v)
    print(train(args.data, args.out, cfg))
