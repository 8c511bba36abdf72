"""The shuffled-audio control of the audio-to-video families (tempotokens, antifoley).

``FAMILY.shuffledaudio_tiny`` is the family's ``tiny`` model, same checkpoint and same
generation parameters, fed *another test clip's audio*: clip c is generated from the
audio of ``derangement(ids, seed)[c]`` (:func:`foleybench.baselines.reference.derangement`,
the seeded single-cycle permutation the ``shuffled`` reference baseline uses, so with the
run's seed and clip set the control's clip c hears exactly the clip whose real video
``shuffled`` shows for c). Everything else of the request (clip id, label, duration, fps,
size, seed) is kept. The other clip's audio is read at the request's sample rate and cut
or zero-padded to the request's duration.

The question it answers: does the model's AV-Align with the true audio beat the same model
with the wrong audio? AV-Align rewards any motion near any audio onset, so a model that
moves at random can beat the ``shuffled`` reference row without following the audio; its
own shuffled-audio row has the same motion statistics and differs only in which audio
drove it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from foleybench.api import A2VRequest, AudioToVideo, FoleybenchError, VideoOutput, check_outputs

SHUFFLED_TAG = "shuffledaudio_tiny"


class ShuffledAudio(AudioToVideo):
    """Wrap an audio-to-video model: each request's audio is replaced by another clip's."""

    def __init__(self, inner: AudioToVideo, name: str, dataset: Any = None, seed: int = 0):
        self.inner, self.name, self.dataset, self.seed = inner, name, dataset, int(seed)
        self.seed_invariant = bool(getattr(inner, "seed_invariant", False))
        self._map: dict[str, str] | None = None

    def params(self) -> dict[str, Any]:
        return {**self.inner.params(), "model": self.name,
                "control": "shuffled audio: clip c gets the audio of derangement(test ids, run seed)[c]",
                "derangement_seed": self.seed}

    def other(self, clip_id: str) -> str:
        """The clip whose audio drives ``clip_id``'s video."""
        from foleybench.baselines.reference import derangement

        if self.dataset is None:
            raise FoleybenchError(f"{self.name}: the shuffled-audio control needs the dataset (another clip's "
                                  "audio); run it through `foleybench generate/bench`")
        if self._map is None:
            self._map = derangement(self.dataset.ids(), self.seed)
        if clip_id not in self._map:
            raise FoleybenchError(f"{self.name}: clip {clip_id!r} is not in the dataset the control was built with")
        return self._map[clip_id]

    def swapped(self, req: A2VRequest) -> A2VRequest:
        from foleybench import media
        from foleybench.baselines.reference import fit_audio

        rec = self.dataset[self.other(req.clip_id)]
        clip = media.read_audio(rec.audio_source, sample_rate=int(req.sample_rate))
        audio = fit_audio(clip.samples, max(1, int(round(req.duration_s * req.sample_rate))))
        return dataclasses.replace(req, audio=audio.astype("float32"))

    def generate(self, requests: Sequence[A2VRequest]) -> list[VideoOutput]:
        outs = [self.inner.generate([self.swapped(r)])[0] for r in requests]
        check_outputs(requests, outs, self.name)
        return outs


def paired_difference(a: dict[str, float], b: dict[str, float], n_boot: int = 10000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean per-clip difference a - b over the clips both score, with a 95% percentile
    bootstrap interval over clips (the clips resampled in pairs, ``bootstrap_ci``)."""
    from foleybench.metrics.functional.bootstrap import bootstrap_ci

    ids = sorted(set(a) & set(b))
    if not ids:
        raise FoleybenchError("paired difference: the two runs share no scored clip")
    d = [float(a[i]) - float(b[i]) for i in ids]
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return {"n": len(ids), "mean": sum(d) / len(d), "ci": [lo, hi], "n_boot": n_boot, "seed": seed}


def _per_clip(path: str, metric: str) -> dict[str, float]:
    import json
    from pathlib import Path

    doc = json.loads(Path(path).read_text())
    try:
        return doc["metrics"][metric]["extras"]["per_clip"]
    except (KeyError, TypeError) as exc:
        raise FoleybenchError(f"{path}: no per-clip values of {metric!r} (metrics.{metric}.extras.per_clip)") from exc


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Paired per-clip difference of one metric between two results "
                                 "JSONs (runs/BENCH/results/TASK__MODEL.json), with a bootstrap interval.")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--metric", default="av_align")
    ap.add_argument("--n-boot", type=int, default=10000)
    args = ap.parse_args()
    r = paired_difference(_per_clip(args.a, args.metric), _per_clip(args.b, args.metric), args.n_boot)
    print(f"{args.metric} a - b over {r['n']} clips: {r['mean']:.4f} [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] "
          f"(95% bootstrap, {r['n_boot']} resamples, seed {r['seed']})")
