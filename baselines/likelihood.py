"""The family-level likelihood hook that likelihood retrieval (``retrieval``) calls.

A family takes part in retrieval by defining, in the module that registers it, a
function

    likelihood_scorer(name: str, checkpoint: str | Path | None = None, device: str = "cpu")
        -> LikelihoodScorer

returning an object with:

- ``prepare(manifest, seconds) -> list[(audio, video)]``: each clip of the manifest
  decoded once into the model's own tensors, cut to the first ``seconds`` (every clip
  the same shape, so candidates and queries stack into batches; pad short clips);
- ``log_likelihood(audio [B, ...], video [B, ...]) -> Tensor [B]``: the teacher-forced
  log-likelihood of each audio given the paired video, in **nats per clip** (summed over
  the clip's samples or tokens; higher = more likely);
- ``zeroed(video) -> video``: the same video with every frame zero (the video-ablation
  row), and ``meta``: provenance (checkpoint sha256, data fingerprint, ...).

Nothing else is needed: the retrieval benchmark finds the hook through the family record
(``foleybench.family``), so a family (a FoleyGen-style codec LM scoring token likelihood,
say) plugs in by adding the function to its own module. :class:`NetLikelihood` is the
adapter for the waveform families here (Martel & Wagner, seq2seq), whose clips load with
``mw_train.load_clips`` (mu-law audio at the model's rate, frames at its fps and size).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F


class LikelihoodScorer(Protocol):
    meta: dict[str, Any]

    def prepare(self, manifest: Any, seconds: float) -> list[tuple[torch.Tensor, torch.Tensor]]: ...

    def log_likelihood(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor: ...

    def zeroed(self, video: torch.Tensor) -> torch.Tensor: ...


def scorer_hook(name: str) -> Callable[..., LikelihoodScorer] | None:
    """The ``likelihood_scorer`` function of model ``name``'s family, or None if it has none."""
    from foleybench import family

    fam, _ = family.split_name(name, configs_only=False)
    mod = importlib.import_module(fam.module)
    return getattr(mod, "likelihood_scorer", None)


def families_with_hook() -> list[str]:
    """Shipped tiny models (``family.tiny``) whose family provides the hook, by name: one
    per checkpoint file (tags that only change generation settings, as FoleyGen's
    ``causal_tiny`` or ``cfg0_tiny``, share their base tag's file and are left out)."""
    from foleybench import family

    out, seen = [], set()
    for f in family.families():
        if getattr(importlib.import_module(f.module), "likelihood_scorer", None) is None:
            continue
        for t in f.shipped():
            if (f.name, f.checkpoints[t].file) not in seen:
                seen.add((f.name, f.checkpoints[t].file))
                out.append(f"{f.name}.{t}")
    return out


class NetLikelihood:
    """Adapter for networks fed mu-law audio [B, C, N] and video with n - 1 context
    frames first [B, F + n - 1, 3, S, S] (``cfg.n_frames`` = n; the MW layout)."""

    def __init__(self, model: Any, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 context_frames: int | None = None):
        self.model, self.fn, self.cfg = model, fn, model.cfg
        self.n_ctx = int(context_frames if context_frames is not None else self.cfg.n_frames)
        self.meta = {"model": model.name, **model.meta}

    def prepare(self, manifest: Any, seconds: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from foleybench.baselines.mw_train import load_clips

        k = max(1, int(round(seconds * self.cfg.fps)))  # video frames in the window
        n_aud, n_vid = k * self.cfg.spf, k + self.n_ctx - 1
        out = []
        for c in load_clips(manifest, self.cfg):
            a, v = c.audio[:, :n_aud], c.video_padded[:n_vid]
            # a clip shorter than the window: silence after it, its last frame repeated
            a = F.pad(a, (0, n_aud - a.shape[-1]))
            v = torch.cat([v, v[-1:].expand(n_vid - v.shape[0], *v.shape[1:])]) if v.shape[0] < n_vid else v
            out.append((a, v))
        return out

    @torch.no_grad()
    def log_likelihood(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        p = next(self.model.net.parameters())
        return self.fn(audio.to(p.device), video.to(p.device)).double().cpu()

    def zeroed(self, video: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(video)


def mw_log_likelihood(net: torch.nn.Module, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Martel & Wagner networks: nats per clip [B] from teacher-forced logits [B, C, N, K]."""
    from foleybench.baselines.mulaw import mulaw_encode

    out = net.sequence_logits(audio, video)
    q = mulaw_encode(audio, net.cfg.n_classes)
    return torch.log_softmax(out.float(), -1).gather(-1, q[..., None])[..., 0].sum((1, 2))


def mw_likelihood_scorer(name: str, checkpoint: str | Path | None = None, device: str = "cpu") -> NetLikelihood:
    """The hook of the three Martel & Wagner families (re-exported by martel_wagner)."""
    from foleybench.family import build_model

    model = build_model(name, checkpoint=checkpoint, device=device)
    return NetLikelihood(model, lambda a, v: mw_log_likelihood(model.net, a, v))
