"""A small audio-visual correspondence model: does this audio belong to this video?

The seed's "correlation tower" (visual-acoustic-relationships, step 2): two encoders and
a cross-modal transformer with a binary head, trained on positive pairs (a clip's own
audio and frames, same window) against negatives from other clips and from the same
clip's audio shifted in time (so it must learn synchrony, not only the kind of sound).

- audio: log-mel [W*16, 40] at 16 tokens per second (16 kHz, hop 1000 samples, 1024-point
  FFT) -> a linear layer per token;
- video: frames at 16 fps, 32x32, each with its difference to the previous frame (motion
  is what the sound of an event follows) -> a per-frame CNN;
- a transformer over [CLS, video tokens, audio tokens] (modality and time embeddings),
  CLS -> one logit; P(match) = sigmoid. Window: W = 2 s (32 tokens each).

Used by ``foleybench curate --scorer avc`` (:func:`score_manifest`): a clip's score is
the mean P(match) over its 2 s windows (at most ``MAX_WINDOWS``, 1 s apart). Trained by
``python -m foleybench.baselines.correspondence`` on the synthfoley train split; the
checkpoint ships in baselines/checkpoints (``avc.tiny.pt``, sha256 in ``CHECKPOINT_SHA``).
This module registers no model family: it scores, it does not generate.
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
CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "avc.tiny.pt"
CHECKPOINT_SHA = "562a8c6ba9a6c18da2c669e863e98b448b20b5fa19927ede0ea36a871071b5c7"  # the shipped file (800 steps, final weighted BCE 0.748)
TRAIN = dict(steps=800, batch=8, lr=2e-3, seed=0, d=48, layers=2, heads=4)


class AVCorrespondence(nn.Module):
    """mel [B, TOK, N_MELS], frames [B, TOK, 6, SIZE, SIZE] -> match logit [B]."""

    def __init__(self, d: int = 48, layers: int = 2, heads: int = 4):
        super().__init__()
        # log-mel spans ~-11.5 (silence) to ~+5: normalise per token before the projection
        self.aud = nn.Sequential(nn.LayerNorm(N_MELS), nn.Linear(N_MELS, d), nn.ReLU(), nn.Linear(d, d))
        self.vid = nn.Sequential(nn.Conv2d(6, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                 nn.Conv2d(32, d, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.mod = nn.Parameter(torch.zeros(2, d))
        self.pos = nn.Parameter(torch.randn(TOK, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=0.0, batch_first=True)
        self.xf = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d, 1)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        B, T = frames.shape[:2]
        v = self.vid(frames.flatten(0, 1)).view(B, T, -1) + self.mod[0] + self.pos[:T]
        a = self.aud(mel) + self.mod[1] + self.pos[:mel.shape[1]]
        x = self.xf(torch.cat([self.cls.expand(B, -1, -1), v, a], 1))
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


def load_clip(audio_path: str, video_path: str, max_s: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel [T, N_MELS], frames [T, 6, SIZE, SIZE]) of one clip, T tokens at 16 per second
    (decoded in WINDOW_S pieces so a long HD clip is never held whole)."""
    from foleybench.media import read_audio, read_video

    a = read_audio(audio_path, sample_rate=SR, mono=True, duration_s=max_s).samples[0]
    mel = log_mel(a)
    T, chunks, t0 = mel.shape[0], [], 0.0
    while len(chunks) * TOK < T:
        clip = read_video(video_path, start_s=t0, duration_s=WINDOW_S)
        if clip.frames.shape[0] == 0:
            break
        chunks.append(frames_with_motion(clip.frames, clip.fps, TOK))
        t0 += WINDOW_S
    v = torch.cat(chunks)
    T = min(T, v.shape[0])
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


def score_manifest(manifest: Any, ctx: Any = None) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Scorer for ``foleybench curate``: ({clip id: P(match)}, {clip id: why excluded}, provenance)."""
    from foleybench.api import InputError

    net, meta = load_net()
    scores, excluded = {}, {}
    for r in manifest:
        if not (r.video and r.audio_source):
            excluded[r.clip_id] = "needs a video and an audio track"
            continue
        try:
            mel, v = load_clip(r.audio_source, r.video, max_s=WINDOW_S + MAX_WINDOWS - 1)
        except InputError as exc:
            excluded[r.clip_id] = str(exc)
            continue
        scores[r.clip_id] = clip_score(net, mel, v)
    return scores, excluded, {"scorer": "avc", "unit": "P(match) in [0, 1]", **meta}


# ------------------------------------------------------------------ training
def make_batch(data: Sequence[tuple[torch.Tensor, torch.Tensor]], rng: np.random.Generator, b: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """b positives, b other-clip negatives, b time-shifted negatives: mel, frames, labels [3b]."""
    mels, vids, ys = [], [], []
    for kind in range(3):
        for _ in range(b):
            i = int(rng.integers(len(data)))
            mel, v = data[i]
            T = min(mel.shape[0], v.shape[0])
            t0 = int(rng.integers(max(1, T - TOK + 1)))
            if kind == 1:  # another clip's audio, any window
                j = (i + 1 + int(rng.integers(len(data) - 1))) % len(data)
                mo = data[j][0]
                m = _fit(mo, int(rng.integers(max(1, mo.shape[0] - TOK + 1))))
            elif kind == 2:  # own audio, rolled by 0.5-1.5 s within the window
                m = torch.roll(_fit(mel, t0), int(rng.integers(TOK // 4, 3 * TOK // 4 + 1)), 0)
            else:
                m = _fit(mel, t0)
            mels.append(m)
            vids.append(_fit(v, t0))
            ys.append(1.0 if kind == 0 else 0.0)
    return torch.stack(mels), torch.stack(vids), torch.tensor(ys)


def train(data_dir: str | Path, out: str | Path = CHECKPOINT) -> dict[str, Any]:
    """Train on the train split of data_dir (seeded); writes the checkpoint and its loss plot."""
    from foleybench.train import plot_losses, read_manifest

    cfg = TRAIN
    split = read_manifest(data_dir).split("train")
    data = [load_clip(r.audio_source, r.video) for r in split]
    torch.manual_seed(cfg["seed"])
    net = AVCorrespondence(cfg["d"], cfg["layers"], cfg["heads"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    losses = []
    for step in range(cfg["steps"]):
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * (0.1 + 0.45 * (1 + math.cos(math.pi * step / cfg["steps"])))
        mel, v, y = make_batch(data, np.random.default_rng([cfg["seed"], step]), cfg["batch"])
        # two negatives per positive: weight positives twice so the classes balance
        loss = F.binary_cross_entropy_with_logits(net(mel, v), y, weight=1.0 + y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.4f}", flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": net.state_dict(), "train": cfg, "losses": losses,
                "data_fingerprint": split.fingerprint()}, out)
    plot_losses(losses, out.with_suffix(".loss.png"), "avc.tiny (correspondence), seed 0", "BCE (weighted)")
    return {"checkpoint": str(out), "final_loss": float(np.mean(losses[-50:]))}


if __name__ == "__main__":
    import argparse

    from foleybench.train import default_data

    ap = argparse.ArgumentParser(description="Train the audio-visual correspondence scorer (avc.tiny).")
    ap.add_argument("--data", help="synthfoley folder (default: the 48-clip seed-0 set under runs/data)")
    ap.add_argument("--out", default=str(CHECKPOINT))
    args = ap.parse_args()
    print(train(args.data or default_data(), args.out))
