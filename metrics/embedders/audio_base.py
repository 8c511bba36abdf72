"""Shared machinery of the audio embedders: decoding, batching, devices, checkpoints.

Every audio embedder is an :class:`AudioEmbedder` around one ``torch.nn.Module``:

- ``load_input`` decodes with :mod:`foleybench.media` (mono, DC removed, torchaudio's
  windowed-sinc resampler to ``rate``, truncated to the protocol clip length; the
  av-benchmark convention in METRICS.md) and returns float32 ``[N]`` samples at ``rate`` Hz;
- ``embed_inputs`` / ``logits_inputs`` group inputs of equal length into one batch each
  (no padding, so a clip's embedding never depends on its neighbours), run under
  ``torch.no_grad`` on ``device``, autocast only on CUDA;
- :func:`build_network` gives the same network either seeded random weights (proxy) or
  an upstream checkpoint loaded strictly and hashed (pretrained).
"""
from __future__ import annotations

import hashlib
import pickle
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch

from foleybench import media
from foleybench import weights as W
from foleybench.api import Embedder, FoleybenchError, InputError, ScoreContext

RESAMPLER_ID = "torchaudio-sinc"


def _load_audio(path: str, rate: int, clip_seconds: float | None) -> np.ndarray:
    """Decode ``path`` and preprocess it to mono float32 ``[N]`` at ``rate`` Hz."""
    clip = media.read_audio(path)
    return media.preprocess_audio(clip.samples, clip.sample_rate, rate, clip_seconds)


class AudioEmbedder(Embedder):
    """An audio network behind the :class:`~foleybench.api.Embedder` contract.

    Subclasses set ``name``, ``rate`` (Hz), ``dim``, ``frames_level`` and ``min_seconds``
    (shortest clip the network accepts), and implement ``_embed(x)`` (``x``: float32
    Tensor ``[B, N]`` at ``rate`` Hz -> ``[B, F, dim]``) and, for classifiers,
    ``_logits(x)`` (-> ``[B, K]`` pre-activation logits).
    """

    kind: ClassVar[str] = "audio"
    min_seconds: ClassVar[float] = 0.0
    n_classes: ClassVar[int | None] = None

    def __init__(self, net: torch.nn.Module, *, weights: str, checkpoint_sha256: str,
                 device: str = "cpu", amp: bool = True):
        self.net = net.eval().to(device)
        self.weights = weights
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device
        self.amp = amp  # autocast fp16, on CUDA only; recorded in preprocess_id

    # ------------------------------------------------------------------ contract
    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """float32 ``[N]`` samples at ``rate`` Hz; InputError naming ``path`` on bad input."""
        x = np.ascontiguousarray(_load_audio(path, int(self.rate), ctx.clip_seconds), dtype=np.float32)
        if x.ndim != 1:
            raise InputError(path, f"expected mono samples [N] after preprocessing, got shape {x.shape}")
        if x.shape[0] < self.min_samples:
            raise InputError(path, f"{x.shape[0] / self.rate:.3f} s of audio is shorter than the "
                                   f"{self.min_seconds} s {self.name} needs")
        if not np.isfinite(x).all():
            raise InputError(path, "audio contains NaN or Inf samples")
        return x

    def embed_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``[F, dim]`` array per input, in input order."""
        return self._run(inputs, self._embed)

    def logits_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One float32 ``[K]`` array of pre-activation class logits per input."""
        if self.n_classes is None:
            raise FoleybenchError(f"embedder {self.name!r} is not a classifier: it has no logits")
        return [a.reshape(-1) for a in self._run(inputs, self._logits)]

    def preprocess_id(self) -> str:
        """E.g. ``16000Hz|torchaudio-sinc|mono|dc``. The protocol clip length comes from
        ``ctx.clip_seconds`` at load time; foleybench.cache adds it to the key itself."""
        amp = "|amp-fp16" if self._autocast_on() else ""
        return f"{int(self.rate)}Hz|{RESAMPLER_ID}|mono|dc{self._extra_id()}{amp}"

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "dim": self.dim, "frames_level": self.frames_level}

    # ------------------------------------------------------------------ internals
    @property
    def min_samples(self) -> int:
        return max(1, int(np.ceil(self.min_seconds * self.rate)))

    def _extra_id(self) -> str:
        """Embedder-specific preprocessing beyond the shared steps (e.g. padding)."""
        return ""

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _autocast_on(self) -> bool:
        # Never on CPU: CPU scores must be bit-reproducible (ScoreContext.amp).
        return bool(self.amp) and str(self.device).startswith("cuda")

    def _run(self, inputs: Sequence[np.ndarray], fn: Callable[[torch.Tensor], torch.Tensor]) -> list[np.ndarray]:
        # Group equal lengths so no clip is padded by its neighbours' lengths.
        groups: dict[int, list[int]] = defaultdict(list)
        for i, x in enumerate(inputs):
            groups[int(np.asarray(x).shape[-1])].append(i)
        out: list[np.ndarray | None] = [None] * len(inputs)
        amp = torch.autocast("cuda", dtype=torch.float16) if self._autocast_on() else nullcontext()
        with torch.no_grad():
            for idx in groups.values():
                batch = torch.from_numpy(np.stack([np.asarray(inputs[i], dtype=np.float32) for i in idx]))
                with amp:
                    y = fn(batch.to(self.device))
                y = y.float().cpu().numpy()
                for j, i in enumerate(idx):
                    out[i] = np.ascontiguousarray(y[j], dtype=np.float32)
        return out  # type: ignore[return-value]


# ---------------------------------------------------------------------- checkpoints
def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_upstream(path: Path, sha256: str, *, sha256_prefix: str | None = None,
                   md5: str | None = None) -> None:
    """Check what upstream itself publishes when it publishes no full sha256.

    ``sha256_prefix``: the leading hex digits torch.hub file names carry
    (``name-<sha256 prefix>.ext``); ``md5``: Zenodo's published checksum.
    Raises :class:`~foleybench.weights.ChecksumError` naming the file.
    """
    if sha256_prefix and not sha256.startswith(sha256_prefix):
        raise W.ChecksumError(f"{path}: sha256 {sha256} does not start with {sha256_prefix}, "
                              "the prefix the upstream file name publishes")
    if md5:
        got = _file_digest(path, "md5")
        if got != md5:
            raise W.ChecksumError(f"{path}: md5 {got} does not match the upstream-published {md5}")


def read_checkpoint(path: Path, *, key: str | None = None, trusted: bool = False) -> Mapping[str, Any]:
    """The tensors of a checkpoint file (``.safetensors`` or torch pickle).

    Loads with ``weights_only=True``; only a file whose upstream checksum has been
    verified (``trusted``) may fall back to a full unpickle, which some published
    training checkpoints need (they carry sampler state).
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not trusted:
                raise FoleybenchError(f"{path}: not loadable with weights_only=True and no upstream "
                                      f"checksum vouches for it: {str(exc).splitlines()[0]}") from exc
            sd = torch.load(path, map_location="cpu", weights_only=False)
    if key is not None:
        if not isinstance(sd, Mapping) or key not in sd:
            raise W.StrictLoadError(f"{path}: checkpoint has no {key!r} entry "
                                    f"(top-level keys: {sorted(sd)[:8] if isinstance(sd, Mapping) else type(sd)})")
        sd = sd[key]
    if not isinstance(sd, Mapping):
        raise W.StrictLoadError(f"{path}: expected a state_dict, got {type(sd).__name__}")
    return sd


def build_network(name: str, factory: Callable[[], torch.nn.Module], *, mode: str,
                  checkpoint: str | None, seed: int, verify: bool = True,
                  load: Callable[[torch.nn.Module, Path, str, bool], None] | None = None,
                  after_init: Callable[[torch.nn.Module], None] | None = None,
                  ) -> tuple[torch.nn.Module, str, str]:
    """Build ``factory()`` with proxy or pretrained weights: ``(net, weights, sha256)``.

    proxy: constructed and re-initialised under ``seed`` (construction is seeded too,
    because some layers, e.g. weight-normed convs, ignore ``reset_parameters``), then
    ``after_init`` restores analytic buffers (STFT kernels, mel filters); the sha256
    is :func:`~foleybench.weights.state_dict_sha256` of that state.
    pretrained: ``weights.resolve`` (file present; sha256 checked when registered),
    then ``load(net, path, sha256, verify)`` loads it through ``weights.load_strict``.
    ``verify=False`` skips checksum checks (tests that load a peer's random weights).
    """
    if mode not in ("pretrained", "proxy"):
        raise FoleybenchError(f"{name}: mode must be 'pretrained' or 'proxy', not {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = factory()
    if mode == "proxy":
        W.seeded_init(net, seed)
        if after_init is not None:  # e.g. He-normal re-init: same seed discipline
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                after_init(net)
        return net.eval(), "proxy", W.state_dict_sha256(net.state_dict())
    path, digest = W.resolve(name, checkpoint, verify=verify)
    assert load is not None
    load(net, path, digest, verify)
    return net.eval(), "pretrained", digest
