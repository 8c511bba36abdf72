"""Synchformer embedder for DeSync: per-window segment features of a video and an audio,
and the offset the network predicts between them.

Protocol (hkchengrex/av-benchmark: extract_video.py, av_bench/extract.py,
av_bench/data/{video,audio}_dataset.py, av_bench/evaluate.py; read, not copied):

- Video: frames an FFmpeg ``fps=25`` filter keeps over the clip length D (``int(25 D)``
  frames; D = ``ctx.clip_seconds`` or the file's length), short side resized to 224
  (bicubic, antialiased, on uint8), centre crop 224, ``/255``, normalised with mean = std
  = 0.5. Segments of 16 frames (0.64 s) with a hop of 8 (50%).
- Audio: 16 kHz mono; segments of 10240 samples (0.64 s) with a hop of 5120; per segment
  ``MelSpectrogram(n_fft=1024, win_length=400, hop_length=160, n_mels=128)`` (power 2,
  centred, HTK mel, no norm) -> ``log(x + 1e-6)`` -> 65 frames zero-padded to 66 ->
  ``(x - (-4.2677393)) / (2 x 4.5689974)``.
- Windows: the first 14 segments and the last 14 segments of each stream (14 segments =
  16 + 13 x 8 frames = 4.8 s): the network compares exactly 14 video with 14 audio
  segments (198 tokens). A stream with fewer than 14 segments (shorter than 4.8 s) is
  :class:`TooShort`: the clip is excluded, never padded or replaced.
- Offset: argmax over 21 classes; class k means ``-2.0 + 0.2 k`` seconds.

Difference, recorded: audio is read through the harness default (channel mean, DC
removed, torchaudio resampler, truncated to ``ctx.clip_seconds``); av-benchmark takes the
channel mean and resamples with torchaudio, without removing DC.

Only the segments inside the two windows are decoded and embedded (features of a
segment do not depend on the others), so long clips cost two windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from foleybench import media
from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import build_net
from foleybench.metrics.embedders.synchformer_net import CONFIGS, N_MELS, SPEC_T, WINDOW_SEGMENTS, Synchformer
from foleybench.metrics.embedders.video_base import VideoEmbedder, read_frames
from foleybench.metrics.functional import video_preprocess as vp

UPSTREAM_MD5 = "5b2f5594b0730f70e41e549b7c94390c"  # published by hkchengrex/MMAudio (download_utils.py)

RECORD = W.register(W.WeightRecord(
    name="synchformer",
    filename="synchformer_state_dict.pth",
    url="https://github.com/hkchengrex/MMAudio/releases/download/v0.1/synchformer_state_dict.pth",
    sha256=None,
    license="MIT (v-iashin/Synchformer; hkchengrex/av-benchmark)",
    paper="Iashin et al., Synchformer: Efficient Synchronization from Sparse Cues, ICASSP 2024",
    note=(f"the AudioSet-trained 24-01-04T16-39-21 model as av-benchmark loads it (a plain state_dict, "
          f"513 tensors); MMAudio publishes md5 {UPSTREAM_MD5}, not sha256"),
    md5=UPSTREAM_MD5,
))

VIDEO_FPS = 25.0
SIZE = 224
SEG_FRAMES, HOP_FRAMES = 16, 8
AUDIO_RATE = 16000
SEG_SAMPLES, HOP_SAMPLES = 10240, 5120
N_FFT, WIN, HOP = 1024, 400, 160
LOGMEL_MEAN, LOGMEL_STD = -4.2677393, 4.5689974
WINDOW_S = (SEG_FRAMES + (WINDOW_SEGMENTS - 1) * HOP_FRAMES) / VIDEO_FPS  # 4.8
OFFSETS = tuple(round(-2.0 + 0.2 * k, 1) for k in range(21))  # seconds, class k
SEGMENT_BATCH = 8  # video segments per forward pass (bounds memory at full size)


class TooShort(InputError):
    """A stream with fewer than 14 segments (shorter than one 4.8 s window)."""

    def __reduce__(self) -> tuple:  # picklable across DataLoader workers
        return (type(self), (self.where, self.problem))


def n_segments(n: int, seg: int, hop: int) -> int:
    """Segments of ``seg`` items with hop ``hop`` that fit in ``n`` (av-benchmark's count)."""
    return (n - seg) // hop + 1 if n >= seg else 0


def window_segments(n_seg: int) -> tuple[list[int], np.ndarray]:
    """(unique segment indices used, ``[2, 14]`` positions into that list): the first and
    the last 14 segments."""
    first = list(range(WINDOW_SEGMENTS))
    last = list(range(n_seg - WINDOW_SEGMENTS, n_seg))
    used = sorted(set(first) | set(last))
    pos = {s: i for i, s in enumerate(used)}
    return used, np.array([[pos[s] for s in first], [pos[s] for s in last]], dtype=np.int64)


@dataclass
class Segments:
    """One stream's window segments, ready for the network.

    video: ``data`` uint8 ``[F, 3, 224, 224]`` frames and ``rows`` ``[U, 16]`` (frame rows of
    each used segment); audio: ``data`` float32 ``[U, 128, 66]`` and ``rows`` None.
    ``windows`` ``[2, 14]``: positions of each window's segments among the U used ones.
    """

    data: np.ndarray
    rows: np.ndarray | None
    windows: np.ndarray
    n_segments: int


def log_mel(segments: torch.Tensor) -> torch.Tensor:
    """float ``[U, 10240]`` waveform segments -> normalised log-mel ``[U, 128, 66]``."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=AUDIO_RATE, n_fft=N_FFT, win_length=WIN,
                                               hop_length=HOP, n_mels=N_MELS)
    x = torch.log(mel(segments) + 1e-6)
    pad = SPEC_T - x.shape[-1]
    x = torch.nn.functional.pad(x, (0, pad)) if pad > 0 else x[..., :SPEC_T]
    return (x - LOGMEL_MEAN) / (2 * LOGMEL_STD)


def video_segments(path: str, ctx: ScoreContext) -> Segments:
    """Decode only the frames of the two windows (see the module docstring)."""
    state: dict[str, Any] = {}

    def pick(n: int, fps: float) -> np.ndarray:
        dur = ctx.clip_seconds if ctx.clip_seconds is not None else n / fps
        if n / fps < dur - 1.0 / fps:
            raise InputError(path, f"video is {n / fps:.2f} s, shorter than the {dur} s clip length")
        idx = vp.sample_at_rate(n, fps, VIDEO_FPS, dur)  # int(25 D) frames
        n_seg = n_segments(len(idx), SEG_FRAMES, HOP_FRAMES)
        if n_seg < WINDOW_SEGMENTS:
            raise TooShort(path, f"video is {len(idx) / VIDEO_FPS:.2f} s at {VIDEO_FPS:g} fps: {n_seg} segments, "
                                 f"fewer than one DeSync window ({WINDOW_SEGMENTS} segments = {WINDOW_S:g} s)")
        used, windows = window_segments(n_seg)
        frames = sorted({s * HOP_FRAMES + j for s in used for j in range(SEG_FRAMES)})
        row = {f: i for i, f in enumerate(frames)}
        state.update(n_seg=n_seg, windows=windows,
                     rows=np.array([[row[s * HOP_FRAMES + j] for j in range(SEG_FRAMES)] for s in used]))
        return idx[frames]

    clip = read_frames(path, duration_s=ctx.clip_seconds, pick=pick)
    x = vp.frames_to_tensor(clip.frames)
    x = vp.resize(x, vp.short_side_size(*x.shape[-2:], SIZE), "bicubic_aa_uint8")
    try:
        x = vp.center_crop(x, SIZE)
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc
    return Segments(x.numpy(), state["rows"], state["windows"], state["n_seg"])


def audio_segments(path: str, ctx: ScoreContext) -> Segments:
    from foleybench.media_long import load_preprocessed

    # a long file is streamed, and only the used segments are read (in time order)
    wave = load_preprocessed(path, AUDIO_RATE, ctx.clip_seconds, lazy=True)
    n_seg = n_segments(wave.size, SEG_SAMPLES, HOP_SAMPLES)
    if n_seg < WINDOW_SEGMENTS:
        raise TooShort(path, f"audio is {wave.size / AUDIO_RATE:.2f} s: {n_seg} segments, fewer than one "
                             f"DeSync window ({WINDOW_SEGMENTS} segments = {WINDOW_S:g} s)")
    used, windows = window_segments(n_seg)
    get = wave.reader().get if hasattr(wave, "reader") else (lambda a, b: wave[a:b])  # used: ascending
    segs = torch.stack([torch.from_numpy(np.array(get(s * HOP_SAMPLES, s * HOP_SAMPLES + SEG_SAMPLES), np.float32))
                        for s in used])
    return Segments(log_mel(segs).numpy().astype(np.float32), None, windows, n_seg)


class SynchformerEmbedder(VideoEmbedder):
    """Window features of each stream (cached per file) and the predicted offsets."""

    name = "synchformer"
    version = "1"
    kind = "cross"
    rate = VIDEO_FPS
    dim = 768

    def __init__(self, net: Synchformer, *, weights: str, sha256: str, device: str = "cpu", amp: bool = True,
                 proxy_config: str | None = None):
        super().__init__(net, weights=weights, checkpoint_sha256=sha256, device=device, amp=amp)
        self.proxy_config = proxy_config
        self.dim = net.cfg.dim  # type: ignore[misc]

    def preprocess_id(self) -> str:
        return (f"synchformer|video:{VIDEO_FPS:g}fps ffmpeg-fps-filter over clip,short{SIZE}:"
                f"{vp.RESIZE_METHODS['bicubic_aa_uint8']},center{SIZE},(x-0.5)/0.5,seg{SEG_FRAMES}/hop{HOP_FRAMES}"
                f"|audio:{AUDIO_RATE}Hz {media.RESAMPLER} mono dc,seg{SEG_SAMPLES}/hop{HOP_SAMPLES},"
                f"mel{N_MELS} nfft{N_FFT} win{WIN} hop{HOP},log(x+1e-6),pad{SPEC_T},"
                f"(x-{LOGMEL_MEAN})/(2*{LOGMEL_STD})|windows:first+last {WINDOW_SEGMENTS} segments"
                f"{self.precision_id()}")

    def load_input(self, path: str, ctx: ScoreContext) -> Segments:
        return video_segments(path, ctx)

    def load_video(self, path: str, ctx: ScoreContext) -> Segments:
        return video_segments(path, ctx)

    def load_audio(self, path: str, ctx: ScoreContext) -> Segments:
        return audio_segments(path, ctx)

    def _windows(self, feats: torch.Tensor, s: Segments) -> np.ndarray:
        """``[U, t, D]`` features of the used segments -> ``[2, 14, t, D]`` float32."""
        return feats[torch.from_numpy(s.windows)].numpy().astype(np.float32)

    def embed_video(self, inputs: Sequence[Segments]) -> list[np.ndarray]:
        """``[2, 14, 8, D]`` per video: features of the first and last window's segments."""
        out = []
        for s in inputs:
            frames = torch.from_numpy(s.data)
            feats = []
            for i in range(0, len(s.rows), SEGMENT_BATCH):  # type: ignore[arg-type]
                rows = torch.from_numpy(s.rows[i:i + SEGMENT_BATCH])  # type: ignore[index]
                x = (frames[rows].float() / 255.0 - 0.5) / 0.5  # [b, 16, 3, 224, 224]
                feats.append(self._forward(lambda t: self.net.extract_vfeats(t[None])[0], x))
            out.append(self._windows(torch.cat(feats), s))
        return out

    embed_inputs = embed_video

    def embed_audio(self, inputs: Sequence[Segments]) -> list[np.ndarray]:
        """``[2, 14, 6, D]`` per audio."""
        out = []
        for s in inputs:
            x = torch.from_numpy(s.data)[None, :, None]  # [1, U, 1, 128, 66]
            out.append(self._windows(self._forward(lambda t: self.net.extract_afeats(t)[0], x), s))
        return out

    def offsets(self, video: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Signed predicted offsets (s) of each window: ``[2]`` from ``[2, 14, 8, D]`` and
        ``[2, 14, 6, D]`` features."""
        v, a = torch.from_numpy(np.asarray(video)), torch.from_numpy(np.asarray(audio))
        logits = self._forward(lambda t: self.net.compare_v_a(t, a.to(t.device)), v)
        return np.asarray(OFFSETS, dtype=np.float64)[logits.argmax(dim=-1).numpy()]


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          proxy_config: str = "small", verify: bool = True, **opts: Any) -> SynchformerEmbedder:
    """mode "pretrained": synchformer_state_dict.pth loaded strictly (a user's other file:
    custom); mode "proxy": seeded random init of ``CONFIGS[proxy_config]`` ("small" by
    default: the full-size network costs minutes per clip on CPU; "full" possible)."""
    if mode == "proxy" and proxy_config not in CONFIGS:
        raise ValueError(f"proxy_config must be one of {sorted(CONFIGS)}")
    cfg = CONFIGS[proxy_config] if mode == "proxy" else CONFIGS["full"]
    b = build_net("synchformer", lambda: Synchformer(cfg), mode=mode, checkpoint=checkpoint, seed=seed,
                  verify=verify, proxy_init=lambda m: m.proxy_init())
    extras = {"proxy_config": proxy_config} if mode == "proxy" else {}
    return SynchformerEmbedder(b.net, weights=b.weights, sha256=b.sha256, device=device, **extras, **opts)
