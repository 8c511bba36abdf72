"""ImageBind-huge embedder for the ImageBind score (video side vs audio side).

Video side (av-benchmark, extract_video.py + data/video_dataset.py, 050a5cd): frames an
FFmpeg ``fps=0.5`` filter keeps over the clip length D (``int(0.5 D)`` frames, D =
``ctx.clip_seconds`` or the file's length), short side resized to 224 (bicubic,
antialiased, on uint8), ``ToDtype(scale) + Normalize(CLIP mean/std)``, 3 spatial crops
(start/centre/end of the long side), every consecutive frame pair as a 2-frame clip:
S = 3 (T - 1) clips, embeddings L2-normalised and averaged. A clip with one frame (D < 4 s)
uses that frame repeated (ImageBind's own image path); a clip shorter than D is an error.

Audio side (ImageBind data.py via av-benchmark): 16 kHz; three 2 s clips evenly spaced
over the audio (pytorchvideo ConstantClipsPerVideoSampler, Fraction arithmetic); each
clip mean-removed, kaldi fbank (128 bins, 25 ms hanning / 10 ms, htk_compat, no
energy, no dither), padded/cut to 204 frames, (x + 4.268) / 9.138. Difference, recorded:
we read audio through the harness default (channel mean, DC removed, torchaudio
resampler, truncated to ``ctx.clip_seconds``) where ImageBind keeps the file's first
channel (kaldi fbank reads channel 0).

``load_input``/``embed_inputs`` are the video side; ``load_audio``/``embed_audio`` the audio side.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from foleybench import media
from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import Factory, build_net
from foleybench.metrics.embedders.imagebind_net import CONFIGS, ImageBindAV, split_checkpoint
from foleybench.metrics.embedders.video_base import VideoEmbedder, read_frames
from foleybench.metrics.functional import video_preprocess as vp
from foleybench.weights import WeightRecord, register

register(WeightRecord(
    name="imagebind", filename="imagebind_huge.pth",
    url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth", sha256=None,
    license="CC-BY-NC-4.0", paper="Girdhar et al. 2023 (ImageBind)",
    note="no published sha256; our network keeps the vision and audio towers and drops the "
         "text/depth/thermal/imu entries of the file (counted in provenance)"))

AUDIO_RATE = 16000
VIDEO_FPS = 0.5
FBANK_MEAN, FBANK_STD, TARGET_FRAMES, MEL_BINS = -4.268, 9.138, 204, 128
CLIP_S, N_CLIPS = 2, 3


def audio_clip_bounds(n_samples: int, sr: int = AUDIO_RATE, clip_s: int = CLIP_S, n_clips: int = N_CLIPS) -> list[tuple[int, int]]:
    """Sample spans of ``n_clips`` clips of ``clip_s`` s spread evenly over ``n_samples``:
    start_k = k * max(D - clip_s, 0) / (n_clips - 1), exact fractions, ``int()`` to samples."""
    dur = Fraction(n_samples, sr)
    step = max(dur - clip_s, 0) / max(n_clips - 1, 1)
    return [(int(k * step * sr), int((k * step + clip_s) * sr)) for k in range(n_clips)]


def fbank_clip(wave: torch.Tensor, sr: int = AUDIO_RATE) -> torch.Tensor:
    """float ``[N]`` samples -> normalised log-mel ``[1, 128, 204]`` (ImageBind waveform2melspec)."""
    import torchaudio

    w = (wave - wave.mean()).unsqueeze(0)
    fb = torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=sr, use_energy=False,
                                           window_type="hanning", num_mel_bins=MEL_BINS, dither=0.0,
                                           frame_length=25, frame_shift=10).T  # [128, frames]
    p = TARGET_FRAMES - fb.shape[1]
    fb = torch.nn.functional.pad(fb, (0, p)) if p > 0 else fb[:, :TARGET_FRAMES]
    return ((fb - FBANK_MEAN) / FBANK_STD).unsqueeze(0)


GROUP_ROWS = 96    # 2-frame clips of several videos embedded in one pass (8 clips of 10 s)
SUBCLIP_CHUNK = 32  # 2-frame clips per pass when one video has more (long videos)
LONG_VIDEO_S = 60.0  # a video whose sampled span is longer than this is streamed (LongVideo)
STREAM_PAIRS = 10   # frame pairs per streamed pass (3 crops x 10 = 30 clips, about SUBCLIP_CHUNK)


def video_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (already sampled at 0.5 fps) -> uint8 ``[max(T, 2), 3, H', W']``,
    short side resized to 224 (a single frame is repeated: ImageBind's image path)."""
    x = vp.frames_to_tensor(frames)
    x = vp.resize(x, vp.short_side_size(*x.shape[-2:], 224), "bicubic_aa_uint8")
    return x.repeat(2, 1, 1, 1) if len(x) == 1 else x


def video_frames_many(frames: np.ndarray) -> torch.Tensor:
    """:func:`video_frames` without the lone-frame repeat (a streamed chunk of a longer video)."""
    x = vp.frames_to_tensor(frames)
    return vp.resize(x, vp.short_side_size(*x.shape[-2:], 224), "bicubic_aa_uint8")


@dataclass(frozen=True)
class LongVideo:
    """A long video's ImageBind input: which frames to sample (:class:`media.PickedFrames`),
    decoded only while embedded (:meth:`ImageBind._embed_long`)."""

    plan: media.PickedFrames


def _is_long_video(path: str, clip_seconds: float | None) -> bool:
    """True when the span ImageBind samples may be longer than :data:`LONG_VIDEO_S`: the
    container's declared length (capped by ``clip_seconds``) is, or it declares none."""
    if clip_seconds is not None and clip_seconds <= LONG_VIDEO_S:
        return False
    try:
        secs = media.container_seconds(path)
    except InputError:
        return False  # the plain reader reports it
    if secs is None:
        return True
    return min(secs, clip_seconds if clip_seconds is not None else secs) > LONG_VIDEO_S


def n_subclips(n_frames: int) -> int:
    """2-frame clips of a video of ``n_frames`` (>= 2) resized frames: 3 crops x pairs."""
    return 3 * (n_frames - 1)


def subclips(frames: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """2-frame clips ``lo..hi-1`` of uint8 ``[T, 3, H, W]`` frames (order: crop, then frame
    pair) -> float ``[hi - lo, 3, 2, 224, 224]``, normalised; only those clips are built."""
    pairs = len(frames) - 1
    out = []
    for j in range(lo, hi):
        c, i = divmod(j, pairs)
        crop = vp.three_crops(frames[i:i + 2], 224)[c]
        out.append(vp.normalize(crop, vp.CLIP_MEAN, vp.CLIP_STD).transpose(0, 1))
    return torch.stack(out)


def video_clips(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` (already sampled at 0.5 fps) -> float ``[3 max(T-1, 1), 3, 2, 224, 224]``."""
    x = video_frames(frames)
    return subclips(x, 0, n_subclips(len(x)))


class ImageBind(VideoEmbedder):
    name = "imagebind"
    version = "1"
    kind = "cross"
    rate = AUDIO_RATE
    dim = 1024

    def __init__(self, net: ImageBindAV, *, weights: str, sha256: str, device: str = "cpu", amp: bool = True,
                 proxy_config: str | None = None, dropped: dict[str, int] | None = None):
        super().__init__(net, weights=weights, checkpoint_sha256=sha256, device=device, amp=amp)
        self.proxy_config = proxy_config
        self.dropped = dict(dropped or {})
        self.dim = net.cfg.out_dim  # type: ignore[misc]

    def preprocess_id(self) -> str:
        return (f"imagebind|video:{VIDEO_FPS}fps ffmpeg-fps-filter over clip,short224:"
                f"{vp.RESIZE_METHODS['bicubic_aa_uint8']},clip-mean-std,3 crops,frame pairs"
                f"|audio:{AUDIO_RATE}Hz {media.RESAMPLER} mono dc,{N_CLIPS}x{CLIP_S}s,kaldi fbank{MEL_BINS}x"
                f"{TARGET_FRAMES},({FBANK_MEAN},{FBANK_STD}){self.precision_id()}")

    def provenance(self) -> dict[str, Any]:
        p = super().provenance()
        p["dropped_checkpoint_keys"] = self.dropped
        return p

    # ---------------------------------------------------------------- video side
    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """-> float32 ``[S, 3, 2, 224, 224]`` clips of one video (see module docstring)."""
        def pick(n: int, fps: float) -> np.ndarray:  # only the sampled frames are decoded and held
            dur = ctx.clip_seconds if ctx.clip_seconds is not None else n / fps
            if n / fps < dur - 1.0 / fps:
                raise InputError(path, f"video is {n / fps:.2f} s, shorter than the {dur} s clip length")
            idx = vp.sample_at_rate(n, fps, VIDEO_FPS, dur)
            if len(idx) == 0:
                raise InputError(path, f"video shorter than one frame at {VIDEO_FPS} fps ({dur:.2f} s)")
            return idx

        if _is_long_video(path, ctx.clip_seconds):
            # never held: its sampled frames (150 KB each at 224 p, one per 2 s) grow with length
            try:
                return LongVideo(media.plan_picked(path, duration_s=ctx.clip_seconds, pick=pick, backend="pyav"))
            except InputError:
                raise
            except Exception as exc:  # a decoder error must name the file
                raise InputError(path, f"could not decode video ({type(exc).__name__}: {exc})") from exc
        # uint8 resized frames (the 2-frame clips are built when embedded, a chunk at a time):
        # a long video's clips would be 3 x 2 float copies of every frame.
        return video_frames(read_frames(path, duration_s=ctx.clip_seconds, pick=pick).frames).numpy()

    def _apply(self, fn: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        res: list[np.ndarray | None] = [None] * len(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(tuple(np.shape(x)), []).append(i)
        for idx in groups.values():
            y = self._run(fn, [inputs[i] for i in idx])
            for j, i in enumerate(idx):
                res[i] = y[j:j + 1].numpy().astype(np.float32)
        return res  # type: ignore[return-value]

    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """Video embeddings, ``[1, dim]`` per clip (mean of unit vectors; not unit itself).

        ``inputs``: :meth:`load_input`'s uint8 frames. Videos of one shape whose 2-frame
        clips number at most :data:`GROUP_ROWS` in all share one pass; a video with more is
        embedded :data:`SUBCLIP_CHUNK` clips at a time and its unit vectors averaged (the
        same rows and the same mean; memory bounded by the chunk, not the video's length).
        A :class:`LongVideo` is decoded here, a pass at a time (:meth:`_embed_long`); a
        decoding error then takes its slot as the :class:`InputError` (the cache reports it
        as a load error, the rest of the batch proceeds)."""
        res: list[np.ndarray | None] = [None] * len(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            if isinstance(x, LongVideo):
                try:
                    res[i] = self._embed_long(x)
                except InputError as exc:  # decoded only now: reported in its slot (foleybench.cache)
                    res[i] = exc  # type: ignore[assignment]
            else:
                groups.setdefault(tuple(np.shape(x)), []).append(i)
        for shape, idx in groups.items():
            frames = [torch.from_numpy(np.asarray(inputs[i])) for i in idx]
            s = n_subclips(shape[0])
            if len(idx) * s <= GROUP_ROWS:
                y = self._forward(self.net.embed_vision, torch.stack([subclips(f, 0, s) for f in frames]))
                for j, i in enumerate(idx):
                    res[i] = y[j:j + 1].numpy().astype(np.float32)
                continue
            for f, i in zip(frames, idx):
                rows = torch.cat([self._forward(self.net.embed_vision_rows, subclips(f, lo, min(lo + SUBCLIP_CHUNK, s)))
                                  for lo in range(0, s, SUBCLIP_CHUNK)])
                res[i] = rows.mean(dim=0, keepdim=True).numpy().astype(np.float32)
        return res  # type: ignore[return-value]

    def _embed_long(self, v: "LongVideo") -> np.ndarray:
        """``[1, dim]``: the mean of a long video's 2-frame clip unit vectors, its sampled
        frames decoded :data:`STREAM_PAIRS` at a time (each pass: that run of frame pairs in
        the 3 crops, the last frame carried to the next pass), the rows summed in float64.
        The same rows as the in-memory route's; only the order and precision of the mean
        differ (float32 rounding, tests/test_long_video.py)."""
        total = torch.zeros(self.dim, dtype=torch.float64)
        count, prev = 0, None
        for raw in media.iter_picked(v.plan, batch=STREAM_PAIRS):
            f = video_frames_many(raw) if prev is None else torch.cat([prev, video_frames_many(raw)])
            pairs = len(f) - 1
            if pairs >= 1:
                rows = self._forward(self.net.embed_vision_rows, subclips(f, 0, 3 * pairs))
                total += rows.double().sum(dim=0)
                count += len(rows)
            prev = f[-1:]
            del f
        if count == 0:  # a single sampled frame: repeated, ImageBind's image path
            assert prev is not None
            rows = self._forward(self.net.embed_vision_rows, subclips(prev.repeat(2, 1, 1, 1), 0, 3))
            total, count = rows.double().sum(dim=0), len(rows)
        return (total / count).float().numpy()[None]

    embed_video = embed_inputs

    def load_video(self, path: str, ctx: ScoreContext) -> np.ndarray:
        return self.load_input(path, ctx)

    # ---------------------------------------------------------------- audio side
    def load_audio(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """-> float32 ``[3, 1, 128, 204]`` normalised fbanks of one audio file."""
        from foleybench.media_long import load_preprocessed

        # a long file is streamed, and only its clips' windows are read (in time order)
        wave = load_preprocessed(path, AUDIO_RATE, ctx.clip_seconds, lazy=True)
        if wave.size < 400:  # one 25 ms fbank frame
            raise InputError(path, f"audio too short for ImageBind ({wave.size} samples at {AUDIO_RATE} Hz)")
        get = wave.reader().get if hasattr(wave, "reader") else (lambda a, b: wave[a:b])
        bounds = sorted(audio_clip_bounds(len(wave)))
        return torch.stack([fbank_clip(torch.from_numpy(np.array(get(s, e), np.float32))) for s, e in bounds]).numpy()

    def embed_audio(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """Audio embeddings, ``[1, dim]`` per file (mean of 20 x unit vectors)."""
        return self._apply(self.net.embed_audio, inputs)


def _load(path: Path, make: Factory) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The vision and audio towers of a full ImageBind file, strictly; the other
    modalities' entries are dropped and counted (``dropped``)."""
    kept, dropped = split_checkpoint(W.read_state_dict(path))
    net = make()
    W.load_strict(net, kept, str(path))
    return net, {"dropped": dropped}


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          proxy_config: str = "small", **opts: Any) -> ImageBind:
    """mode "pretrained": imagebind_huge.pth, vision+audio loaded strictly (a user's other
    file: custom); mode "proxy": seeded random init of ``CONFIGS[proxy_config]`` ("small"
    by default; "huge" possible)."""
    if mode == "proxy" and proxy_config not in CONFIGS:
        raise ValueError(f"proxy_config must be one of {sorted(CONFIGS)}")
    cfg = CONFIGS[proxy_config] if mode == "proxy" else CONFIGS["huge"]
    b = build_net("imagebind", lambda: ImageBindAV(cfg), mode=mode, checkpoint=checkpoint, seed=seed, load=_load)
    extras = {"proxy_config": proxy_config} if mode == "proxy" else b.extras
    return ImageBind(b.net, weights=b.weights, sha256=b.sha256, device=device, **extras, **opts)
