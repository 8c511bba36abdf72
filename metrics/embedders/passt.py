"""PaSST-S (Koutini et al. 2022) as av-benchmark runs it: 768-d embedding and 527 AudioSet logits.

The checkpoint is ``passt-s-f128-p16-s10-ap.476-swa.pt`` (hear21passt's
``passt_s_swa_p16_128_ap476``, what ``hear21passt.base.get_basic_model`` loads and what
hkchengrex/av-benchmark calls for FD-PaSST, KL-PaSST and IS-PaSST). Our own network, with
the upstream parameter names so that the published file loads strictly.

Front end (hear21passt ``AugmentMelSTFT`` in eval mode, no weights; recomputed here):

- pre-emphasis ``y[n] = x[n+1] - 0.97 x[n]`` (one sample shorter);
- ``torch.stft``: n_fft 1024, window 800 (Hann, *symmetric*: ``periodic=False``), hop 320,
  centred with reflect padding; power = re^2 + im^2;
- 128 kaldi mel banks (``1127 ln(1 + f / 700)``) from 0 Hz to **15000 Hz**: the module is
  built with ``fmax=None``, which upstream turns into ``sr // 2 - fmax_aug_range // 2`` =
  16000 - 1000 (``fmax_aug_range=2000`` in ``get_basic_model``), and eval mode uses that
  value unaugmented; a zero column for the Nyquist bin; the product in float32;
- ``log(mel + 1e-5)``, then ``(x + 4.5) / 5``.

Network: 16x16 patches with stride 10 on the ``[1, 128, T]`` log-mel (12 frequency x up
to 99 time patches), separate frequency and time positional embeddings (the time one cut
to the patches present), class and distillation tokens with their own positional
embedding, 12 pre-norm blocks (LayerNorm eps 1e-6, 12 heads, MLP 3072, exact GELU), a
final LayerNorm (eps 1e-6). Embedding = mean of the two token outputs (upstream's
``features``); logits = ``head`` (LayerNorm with torch's default eps 1e-5, then Linear)
of that embedding, before any sigmoid. ``head_dist`` is in the file and loaded, but
upstream's eval forward does not use it, nor do we.

Input protocol (``split``):

- ``"av-benchmark"`` (default): the clip is cut to the protocol length by the shared
  loader (``--clip-seconds``; VGGSound: 8 s), then cut to 10 s and zero-padded at the end to
  exactly 10 s (320000 samples), as av-benchmark's ``extract.py``. One vector per clip.
- ``"audiocraft"``: audiocraft's ``PasstKLDivergenceMetric``: the audio is split into
  consecutive 10 s segments with no padding; segments of 0.15 s (4800 samples) or less are
  dropped. One vector (and one logit row) per segment.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.device import full_precision
from foleybench.metrics.embedders.audio_base import AudioEmbedder, is_long
from foleybench.metrics.embedders.base import build_net

RECORD = W.register(W.WeightRecord(
    name="passt",
    filename="passt-s-f128-p16-s10-ap.476-swa.pt",
    url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    sha256=None,
    license="Apache-2.0 (kkoutini/PaSST, kkoutini/passt_hear21)",
    paper="Koutini et al., Efficient Training of Audio Transformers with Patchout, Interspeech 2022",
    note=("upstream publishes no checksum for the release file; it counts as pretrained only from the "
          "weights directory under its upstream name. Loaded as hear21passt loads it: the state dict (or "
          "its 'model' entry), every key strictly"),
))

SAMPLE_RATE = 32000
N_FFT = 1024
WIN = 800
HOP = 320
N_MELS = 128
F_MIN = 0.0
F_MAX = 15000.0          # 32000 // 2 - 2000 // 2: what upstream's fmax=None becomes
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
NORM_SHIFT, NORM_SCALE = 4.5, 5.0
N_CLASSES = 527
DIM = 768
DEPTH = 12
HEADS = 12
PATCH, STRIDE = 16, 10
TIME_PATCHES = 99        # (998 - 16) // 10 + 1: the 10 s input the model was trained on
FREQ_PATCHES = (N_MELS - PATCH) // STRIDE + 1
BLOCK_EPS = 1e-6         # blocks and final norm (timm ViT: partial(LayerNorm, eps=1e-6))
HEAD_EPS = 1e-5          # head.0 is a plain nn.LayerNorm
CLIP_SAMPLES = 10 * SAMPLE_RATE
AUDIOCRAFT_MIN_SAMPLES = int(0.15 * SAMPLE_RATE)   # segments must be longer than this
SPLITS = ("av-benchmark", "audiocraft")


def kaldi_mel_banks(n_mels: int = N_MELS, n_fft: int = N_FFT, sr: int = SAMPLE_RATE,
                    f_min: float = F_MIN, f_max: float = F_MAX) -> torch.Tensor:
    """float32 ``[n_mels, n_fft // 2 + 1]`` triangular filters, kaldi's definition (no VTLN
    warping): triangles equally spaced on ``1127 ln(1 + f / 700)`` between ``f_min`` and
    ``f_max``, evaluated at the mel value of each FFT bin's frequency ``k * sr / n_fft`` for
    k < n_fft / 2; the Nyquist bin's column is zero (upstream pads it)."""
    # Edges as Python floats (float64), FFT-bin mels as float32 tensors: kaldi's own split,
    # which makes these filters equal torchaudio.compliance.kaldi.get_mel_banks' bit for bit.
    lo, hi = 1127.0 * math.log(1.0 + f_min / 700.0), 1127.0 * math.log(1.0 + f_max / 700.0)
    step = (hi - lo) / (n_mels + 1)
    i = torch.arange(n_mels)[:, None]
    left, centre, right = lo + i * step, lo + (i + 1.0) * step, lo + (i + 2.0) * step
    freqs = (sr / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    bins = (1127.0 * (1.0 + freqs / 700.0).log())[None, :]
    up = (bins - left) / (centre - left)
    down = (right - bins) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1))


class LogMel(nn.Module):
    """Waveform ``[B, N]`` at 32 kHz -> normalised log-mel ``[B, 128, 1 + (N - 1) // 320]``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN, periodic=False), persistent=False)
        self.register_buffer("mel_banks", kaldi_mel_banks(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        x = x[:, 1:] - PREEMPHASIS * x[:, :-1]
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=self.window, center=True,
                          pad_mode="reflect", normalized=False, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2                       # [B, 513, T]
        mel = torch.matmul(self.mel_banks, power)                     # [B, 128, T]
        return (torch.log(mel + LOG_OFFSET) + NORM_SHIFT) / NORM_SCALE


class _PatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, DIM, PATCH, stride=STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)                                           # [B, D, F', T']


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.scale = (DIM // HEADS) ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(DIM, 4 * DIM)
        self.fc2 = nn.Linear(4 * DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=BLOCK_EPS)
        self.attn = _Attention()
        self.norm2 = nn.LayerNorm(DIM, eps=BLOCK_EPS)
        self.mlp = _Mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaSSTNet(nn.Module):
    """PaSST-S, inference graph. forward: normalised log-mel ``[B, 1, 128, T]`` ->
    (embedding ``[B, 768]``, logits ``[B, 527]``); ``T`` at most 1000 frames (10 s)."""

    def __init__(self, depth: int = DEPTH) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, DIM))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, DIM, FREQ_PATCHES, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, DIM, 1, TIME_PATCHES))
        self.blocks = nn.Sequential(*[_Block() for _ in range(depth)])
        self.norm = nn.LayerNorm(DIM, eps=BLOCK_EPS)
        self.head = nn.Sequential(nn.LayerNorm(DIM, eps=HEAD_EPS), nn.Linear(DIM, N_CLASSES))
        self.head_dist = nn.Linear(DIM, N_CLASSES)  # in the file; unused at inference (as upstream)
        self.init_tokens()

    def init_tokens(self) -> None:
        """Token and positional parameters ~ N(0, 0.02) truncated at +-2 (what upstream
        initialises them to); used for proxy weights only."""
        with torch.no_grad():
            for p in (self.cls_token, self.dist_token, self.new_pos_embed, self.freq_new_pos_embed,
                      self.time_new_pos_embed):
                nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed(mel)                                      # [B, D, F', T']
        t = x.shape[-1]
        if t > TIME_PATCHES:
            raise ValueError(f"PaSST takes at most {TIME_PATCHES} time patches (10 s), got {t}")
        x = x + self.time_new_pos_embed[..., :t] + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)                               # [B, F' T', D], frequency-major
        b = x.shape[0]
        tokens = torch.cat([self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1],
                            self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:]], dim=1)
        x = self.norm(self.blocks(torch.cat([tokens, x], dim=1)))
        emb = (x[:, 0] + x[:, 1]) / 2
        return emb, self.head(emb)


class PaSST(AudioEmbedder):
    """The ``passt`` embedder; ``split`` picks the input protocol (module docstring)."""

    name = "passt"
    rate = SAMPLE_RATE
    dim = DIM
    n_classes = N_CLASSES
    frames_level = False
    min_seconds = 1 / SAMPLE_RATE
    sub_batch: int = 4  # clips per forward pass: 1190 tokens each; attention takes ~70 MB a clip (fp32)
    # One forward pass gives both outputs: the other is kept for the next call (FD, KL and IS
    # on the same files then run the network once per file), keyed by the input's sha256.
    memo_size: int = 4096

    def __init__(self, net: nn.Module, *, split: str = "av-benchmark", **kw: Any):
        if split not in SPLITS:
            raise ValueError(f"passt: split must be one of {list(SPLITS)}, not {split!r}")
        super().__init__(net, **kw)
        self.split = split
        # av-benchmark reads the first 10 s only: decoding stops there (audio_base)
        self.max_input_seconds = CLIP_SAMPLES / SAMPLE_RATE if split == "av-benchmark" else None
        self._memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.frontend = LogMel().to(self.device)
        if split == "audiocraft":
            self.frames_level = True  # each 10 s segment is one sample
            self.min_seconds = (AUDIOCRAFT_MIN_SAMPLES + 1) / SAMPLE_RATE
            # it reads the whole signal: a long file stays a LongAudio and its 10 s segments
            # are read from the stream LONG_SEGMENTS at a time (_long_segment_groups)
            self.streams_long = True

    # ------------------------------------------------------------------ contract
    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        x = super().load_input(path, ctx)
        if is_long(x):  # audiocraft split of a long file: segments read when embedded
            return x
        if self.split == "av-benchmark":  # cut to 10 s, zero-pad to 10 s (av-benchmark extract.py)
            x = np.pad(x[:CLIP_SAMPLES], (0, max(0, CLIP_SAMPLES - min(x.shape[0], CLIP_SAMPLES))))
        return np.ascontiguousarray(x, dtype=np.float32)

    def embed_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``[1, 768]`` per clip (av-benchmark) or ``[S, 768]``, one row per segment (audiocraft)."""
        return self._segments_run(inputs, 0)

    def logits_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``[527]`` per clip (av-benchmark) or ``[S, 527]`` per clip (audiocraft)."""
        out = self._segments_run(inputs, 1)
        return [o.reshape(-1) for o in out] if self.split == "av-benchmark" else out

    def segments(self, x: np.ndarray) -> list[np.ndarray]:
        """The network inputs of one loaded clip (see the module docstring)."""
        if self.split == "av-benchmark":
            return [x]
        segs = [x[s:s + CLIP_SAMPLES] for s in range(0, x.shape[0], CLIP_SAMPLES)]
        return [s for s in segs if s.shape[0] > AUDIOCRAFT_MIN_SAMPLES]

    def _extra_id(self) -> str:
        return "|pad10s" if self.split == "av-benchmark" else "|split10s-drop0.15s"

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "split": self.split, "n_classes": N_CLASSES}

    # ------------------------------------------------------------------ internals
    LONG_SEGMENTS = 8  # 10 s segments of a long input read and run together

    def _long_segment_groups(self, x: Any) -> Iterator[list[np.ndarray]]:
        """:meth:`segments` of a LongAudio, read from its stream LONG_SEGMENTS at a time."""
        r, n = x.reader(), len(x)
        group: list[np.ndarray] = []
        for lo in range(0, n, CLIP_SAMPLES):
            hi = min(n, lo + CLIP_SAMPLES)
            if hi - lo > AUDIOCRAFT_MIN_SAMPLES:
                group.append(np.array(r.get(lo, hi), np.float32))
            if len(group) == self.LONG_SEGMENTS:
                yield group
                group = []
        if group:
            yield group

    def _segments_run(self, inputs: Sequence[Any], which: int) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(inputs)
        short = [i for i, x in enumerate(inputs) if not is_long(x)]
        for i, x in enumerate(inputs):
            if is_long(x):  # alone, LONG_SEGMENTS segments in memory at a time
                rows = [r for g in self._long_segment_groups(x) for r in self._rows_of([g], which)[0]]
                if not rows:
                    raise InputError("<array>", f"{len(x) / SAMPLE_RATE:.3f} s gives no PaSST segment")
                out[i] = np.stack(rows)
        if short:
            segs = [self.segments(np.asarray(inputs[i], dtype=np.float32)) for i in short]
            for i, y in zip(short, self._rows_of(segs, which)):
                out[i] = np.stack(y)
        return out  # type: ignore[return-value]

    def _rows_of(self, segs: list[list[np.ndarray]], which: int) -> list[list[np.ndarray]]:
        """Output ``which`` (0: embedding, 1: logits) of every segment, grouped as ``segs``."""
        for s in segs:
            if not s:  # load_input's length check makes this unreachable for files
                raise InputError("<array>", f"a clip gives no PaSST segment "
                                            f"longer than {AUDIOCRAFT_MIN_SAMPLES / SAMPLE_RATE} s")
        flat = [seg for s in segs for seg in s]
        keys = [hashlib.sha256(f.tobytes()).digest() for f in flat]
        todo = list({k: f for k, f in zip(keys, flat) if k not in self._memo}.items())
        fresh: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        if todo:
            both = self._run([f for _, f in todo], lambda b: torch.cat(self._forward_both(b), dim=-1))
            fresh = {k: (y[:DIM], y[DIM:]) for (k, _), y in zip(todo, both)}
        rows = [(fresh.get(k) or self._memo[k])[which] for k in keys]
        for k, v in fresh.items():  # oldest entries leave first
            if len(self._memo) >= self.memo_size:
                self._memo.pop(next(iter(self._memo)))
            self._memo[k] = v
        grouped, i = [], 0
        for s in segs:
            grouped.append(rows[i:i + len(s)])
            i += len(s)
        return grouped

    def _forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embs, logits = [], []
        for s in range(0, x.shape[0], self.sub_batch):
            with full_precision(str(self.device)):  # STFT, mel and log in float32, always
                mel = self.frontend(x[s:s + self.sub_batch])
            e, lg = self.net(mel[:, None])
            embs.append(e)
            logits.append(lg)
        return torch.cat(embs), torch.cat(logits)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          verify: bool = True, split: str = "av-benchmark",
          factory: Callable[[], nn.Module] = PaSSTNet) -> PaSST:
    """PaSST embedder. pretrained: ``passt-s-f128-p16-s10-ap.476-swa.pt`` (its state dict, or
    its ``model`` entry), strictly; a ``checkpoint`` is labelled custom (upstream publishes no
    checksum). proxy: seeded random init. ``split``: "av-benchmark" or "audiocraft"."""
    if split not in SPLITS:
        raise ValueError(f"passt: split must be one of {list(SPLITS)}, not {split!r}")
    b = build_net("passt", factory, mode=mode, checkpoint=checkpoint, seed=seed, verify=verify,
                  proxy_init=lambda m: m.init_tokens(),  # type: ignore[operator]
                  lazy=True)
    return PaSST(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device, split=split)

