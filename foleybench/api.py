"""Core interfaces: generators, metrics, embedders.

Everything that produces or scores media in foleybench goes through these types, so a
new model family or metric plugs into the runner, the CLI and the leaderboard at once.

Conventions (all arrays are numpy unless a docstring says Tensor):
- video frames: uint8 ``[T, H, W, 3]`` RGB, with ``fps`` in frames per second;
- audio samples: float32 ``[C, N]`` in [-1, 1], with ``sample_rate`` in Hz.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np


class FoleybenchError(Exception):
    """Base class of every error foleybench raises on purpose."""


class InputError(FoleybenchError, ValueError):
    """Bad input: the message names the file (or name) and the problem."""

    def __init__(self, where: str, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")

    def __reduce__(self) -> tuple:
        # Picklable with its two arguments: a DataLoader worker (--num-workers > 0) sends
        # a bad file's InputError back to the main process in the file's slot.
        return (type(self), (self.where, self.problem))


# --------------------------------------------------------------------------- generators
@dataclass(frozen=True)
class V2ARequest:
    """One video-to-audio request.

    frames: uint8 [T, H, W, 3]; fps: frames per second of ``frames``;
    duration_s: seconds of audio wanted; sample_rate: Hz of the audio wanted;
    seed: the generation seed for this clip (the runner derives it from the run seed
    and the clip id, so a clip's output does not depend on its batch neighbours).
    """

    clip_id: str
    frames: np.ndarray
    fps: float
    label: str
    duration_s: float
    sample_rate: int
    seed: int


@dataclass(frozen=True)
class A2VRequest:
    """One audio-to-video request.

    audio: float32 [C, N] at ``sample_rate`` Hz; fps and size (H, W) of the video wanted;
    duration_s: seconds of video wanted; seed as in :class:`V2ARequest`.
    """

    clip_id: str
    audio: np.ndarray
    sample_rate: int
    label: str
    duration_s: float
    fps: float
    size: tuple[int, int]
    seed: int


@dataclass
class AudioOutput:
    """Generated audio: samples float32 [C, N] at sample_rate Hz."""

    clip_id: str
    samples: np.ndarray
    sample_rate: int


@dataclass
class VideoOutput:
    """Generated video: frames uint8 [T, H, W, 3] at fps."""

    clip_id: str
    frames: np.ndarray
    fps: float


class Generator(ABC):
    """A model behind the common interface: batch in, same order out, seeded.

    Subclasses set ``task`` ("v2a" or "a2v") and implement :meth:`generate`. They hold
    no hidden state that changes outputs: everything that does is in :meth:`params`,
    which the runner writes into the results.
    """

    task: ClassVar[str]
    name: str = "unnamed"

    @abstractmethod
    def generate(self, requests: Sequence[Any]) -> list[Any]:
        """Return one output per request, in request order."""

    def params(self) -> dict[str, Any]:
        """Generation parameters (config, checkpoint sha256...) for provenance."""
        return {}


class VideoToAudio(Generator):
    task = "v2a"

    @abstractmethod
    def generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]: ...


class AudioToVideo(Generator):
    task = "a2v"

    @abstractmethod
    def generate(self, requests: Sequence[A2VRequest]) -> list[VideoOutput]: ...


def check_outputs(requests: Sequence[Any], outputs: Sequence[Any], model: str) -> None:
    """Enforce the batch contract: one output per request, same ids, same order."""
    got = [o.clip_id for o in outputs]
    want = [r.clip_id for r in requests]
    if got != want:
        raise FoleybenchError(
            f"model {model!r} broke the batch contract: asked for {want}, returned {got}"
        )


# --------------------------------------------------------------------------- metrics
@dataclass
class MetricValue:
    """A metric's result.

    value: the score (None when no clip could be scored; never a sentinel);
    n: the number of samples it rests on (clips, or embedding frames where frames are
    the samples, which ``extras['n_unit']`` then says); ci: (low, high) 95% interval
    where the metric offers one; extras: anything else worth keeping (per-clip values,
    excluded ids with reasons, protocol options).
    """

    value: float | None
    n: int
    ci: tuple[float, float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ci"] = list(self.ci) if self.ci is not None else None
        return d


@dataclass
class ClipPair:
    """What the scorer hands a metric for one clip id.

    pred_* are the generated files, ref_* the reference files; which of them exist
    depends on the task (V2A: pred_audio; A2V: pred_video). ``video``/``audio`` give the
    pair of files that make up the clip as scored: for V2A the reference video with the
    generated audio, for A2V the generated video with the reference audio.
    """

    clip_id: str
    task: str
    pred_audio: str | None = None
    pred_video: str | None = None
    ref_audio: str | None = None
    ref_video: str | None = None
    label: str = ""
    sample: str | None = None  # sample label when a clip has several predictions (--pred-pattern {k})

    @property
    def video(self) -> str | None:
        return self.pred_video if self.task == "a2v" else self.ref_video

    @property
    def audio(self) -> str | None:
        return self.pred_audio if self.task == "v2a" else self.ref_audio


class Metric(ABC):
    """Streaming metric: ``update`` on batches, ``merge`` shards, ``compute`` once.

    ``update`` returns the list of (clip_id, reason) it excluded so the runner can
    report them; it never substitutes another clip. Contract (checked for every
    registered metric by tests/test_metric_conformance.py): ``compute`` gives the same
    value, interval and exclusions whether the clips came in one batch or several, and
    whichever way shards were merged. The bases in ``foleybench.metrics.base`` keep state
    keyed by clip id and reduce it in sorted clip-id order to that end.

    ``tasks`` ("v2a", "a2v") is declared once, on the class a registry line names, and
    never set on an instance: the runner reads it from the class before any work.
    ``name`` is the registry name (a class attribute, or set in ``__init__`` by classes
    that serve several registry names, e.g. ``fd_<embedder>``).
    """

    name: str
    version: ClassVar[str] = "1"
    higher_is_better: ClassVar[bool]
    tasks: ClassVar[tuple[str, ...]]

    @abstractmethod
    def update(self, pairs: Sequence[ClipPair]) -> list[tuple[str, str]]: ...

    @abstractmethod
    def merge(self, other: "Metric") -> "Metric": ...

    @abstractmethod
    def compute(self) -> MetricValue: ...

    def provenance(self) -> dict[str, Any]:
        """Embedder, weights sha256, protocol options... written into results."""
        return {"metric": self.name, "version": self.version}


@dataclass
class ScoreContext:
    """Run-wide settings every metric and embedder is built with.

    device: "cpu", "cuda", "cuda:1"... ("auto" resolves to cuda when available);
    proxy: allow seeded random-init evaluators when pretrained weights are absent
    (scores are then labelled proxy); checkpoints: embedder name -> checkpoint file
    overriding the weights directory; cache_dir: embedding cache (None disables it);
    batch_size: clips per embedder call; amp: autocast on GPU (never on CPU, so CPU
    results stay deterministic); seed: for proxy weights and any resampling;
    clip_seconds: protocol clip length audio is truncated to (None: whole clip);
    num_workers: DataLoader workers for decoding; batch_invariant: run each embedder's
    network on one clip at a time (clips are still decoded ``batch_size`` at a time), so
    a clip's values never depend on which other clips share its batch: excluding a bad
    clip, sharding or another batch size leaves every other clip's values bit for bit.
    None (default): on for CPU, off for CUDA (there batching is the speed, and CUDA
    kernels are not bit-reproducible anyway); see :meth:`forward_per_clip`.
    """

    device: str = "cpu"
    proxy: bool = False
    checkpoints: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None
    batch_size: int = 8
    amp: bool = True
    seed: int = 0
    clip_seconds: float | None = None
    num_workers: int = 0
    progress: bool = False
    batch_invariant: bool | None = None

    def forward_per_clip(self) -> bool:
        """Whether embedders run one clip per forward pass (``batch_invariant`` resolved)."""
        if self.batch_invariant is not None:
            return bool(self.batch_invariant)
        from foleybench.device import resolve_device

        return resolve_device(self.device) == "cpu"


# --------------------------------------------------------------------------- embedders
class Embedder(ABC):
    """Maps media files to embeddings, with provenance.

    The runner and the embedding cache use three methods, so every embedder (audio,
    video, cross-modal) is driven the same way:

    - ``load_input(path, ctx)``: decode and preprocess one file into the network's input
      (numpy, CPU only; runs in DataLoader workers). Audio embedders: mono, DC removed,
      torchaudio-resampled to ``rate``, truncated to ``ctx.clip_seconds`` (METRICS.md).
      Raises :class:`InputError` naming the file on bad input.
    - ``embed_inputs(inputs)``: a batch of ``load_input`` results -> one float32 array
      ``[F, D]`` per input (F = 1 for clip-level embedders; F = frames for frame-level
      ones such as VGGish, whose frames are the samples of the FD statistics).
      Runs under ``torch.no_grad`` on ``self.device``, autocast only on GPU.
    - ``preprocess_id()``: a string that changes whenever preprocessing changes
      (rate, clip length, resampler, frame sampling); part of the cache key.

    Classifiers (PANNs, PaSST, C3D) also offer ``logits_inputs(inputs)`` -> one float32
    array ``[K]`` per input. Attributes: name, version, kind ("audio"/"video"/"cross"),
    rate (Hz or fps), dim, ``weights`` ("pretrained" or "proxy"), ``checkpoint_sha256``
    (of the file loaded; for proxy weights, of the seeded random state_dict).
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    kind: ClassVar[str] = "audio"
    rate: ClassVar[float]
    dim: ClassVar[int]
    frames_level: ClassVar[bool] = False
    # True when the embedder's own forward already makes each clip's rows independent of
    # the other clips in a call (a fixed padded batch shape, e.g. C3D): the cache then
    # hands it whole batches even where one clip per forward pass is asked for
    # (ScoreContext.batch_invariant), since its rows are batch-free either way.
    rows_batch_free: ClassVar[bool] = False
    weights: str = "proxy"
    checkpoint_sha256: str | None = None
    device: str = "cpu"

    @abstractmethod
    def load_input(self, path: str, ctx: "ScoreContext") -> Any: ...

    @abstractmethod
    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]: ...

    @abstractmethod
    def preprocess_id(self) -> str: ...

    @property
    def is_proxy(self) -> bool:
        return self.weights != "pretrained"

    def provenance(self) -> dict[str, Any]:
        return {
            "embedder": self.name,
            "embedder_version": self.version,
            "weights": self.weights,
            "checkpoint_sha256": self.checkpoint_sha256,
            "rate": self.rate,
            "preprocess": self.preprocess_id(),
        }
