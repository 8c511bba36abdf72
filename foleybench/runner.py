"""Generation and scoring runs: the harness's two jobs.

``generate`` turns a dataset into generated media files (one per clip, named by clip
id) with a ``generation.json`` index; reruns skip clips already written (files are
written atomically, so an existing file is a complete one). ``score`` pairs a folder of
predictions with a reference manifest by clip id, validates every file once (so all
metrics see the same clip set), runs the metrics and returns the results document.
One broken clip is reported and excluded; the run goes on.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from foleybench import media
from foleybench.api import (
    A2VRequest,
    ClipPair,
    FoleybenchError,
    InputError,
    Metric,
    ScoreContext,
    V2ARequest,
    check_outputs,
)
from foleybench.datasets.base import ClipRecord, Manifest
from foleybench.registry import METRICS, MODELS, load_plugins
from foleybench.results import provenance_block, write_json

log = logging.getLogger("foleybench")
PRED_EXT = {"v2a": (".wav", ".flac"), "a2v": (".mp4",)}


def clip_seed(run_seed: int, clip_id: str) -> int:
    """Per-clip seed: independent of batch composition and order."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{clip_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def _progress(it: Iterable, total: int, desc: str, on: bool, unit: str = "batch") -> Iterable:
    from foleybench.progress import track

    return track(it, total, desc, unit, enabled=on)


def build_model(name: str, task: str, dataset: Manifest, seed: int, device: str) -> Any:
    load_plugins()
    entry = MODELS.entry(name)
    tasks = entry.meta.get("tasks", ("v2a", "a2v"))
    if task not in tasks:
        raise FoleybenchError(f"model {name!r} does not do {task} (it does {', '.join(tasks)})")
    return entry.build(task=task, dataset=dataset, seed=seed, device=device)


def _request(rec: ClipRecord, task: str, model: Any, seed: int) -> Any:
    if task == "v2a":
        if not rec.video:
            raise InputError(rec.clip_id, "no video file in the manifest for a video-to-audio request")
        dur = rec.duration_s or media.probe(rec.video).duration_s
        clip = media.read_video(rec.video, duration_s=dur)
        sr = getattr(model, "sample_rate", None) or media.probe(rec.audio_source).sample_rate or 16000
        return V2ARequest(rec.clip_id, clip.frames, clip.fps, rec.label, dur, int(sr), clip_seed(seed, rec.clip_id))
    if not rec.audio_source:
        raise InputError(rec.clip_id, "no audio in the manifest for an audio-to-video request")
    audio = media.read_audio(rec.audio_source)
    dur = rec.duration_s or audio.samples.shape[1] / audio.sample_rate
    info = media.probe(rec.video) if rec.video else None
    fps = getattr(model, "fps", None) or (info.fps if info else 16.0)
    size = getattr(model, "size", None) or ((info.height, info.width) if info else (64, 64))
    return A2VRequest(rec.clip_id, audio.samples, audio.sample_rate, rec.label, dur, float(fps),
                      tuple(size), clip_seed(seed, rec.clip_id))


def generate(task: str, model_name: str, manifest: Manifest, out_dir: str | Path, *, limit: int | None = None,
             seed: int = 0, device: str = "cpu", batch_size: int = 4, progress: bool = False) -> dict[str, Any]:
    """Generate media for every clip of ``manifest``; returns the generation index."""
    from foleybench.device import resolve_device

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    model = build_model(model_name, task, manifest, seed, device)
    records = manifest.limit(limit).records
    ext = PRED_EXT[task][0]
    failures: dict[str, str] = {}
    done, skipped = [], []
    t0 = time.time()
    todo = [r for r in records if not (out / f"{r.clip_id}{ext}").is_file()]
    skipped = [r.clip_id for r in records if r not in todo]
    for start in _progress(range(0, len(todo), batch_size), (len(todo) + batch_size - 1) // batch_size,
                           f"generate {model_name}", progress):
        batch, reqs = todo[start:start + batch_size], []
        for rec in batch:
            try:
                reqs.append(_request(rec, task, model, seed))
            except InputError as exc:
                failures[rec.clip_id] = str(exc)
                log.warning("excluded %s: %s", rec.clip_id, exc)
        if not reqs:
            continue
        outputs = model.generate(reqs)
        check_outputs(reqs, outputs, model_name)
        for req, o in zip(reqs, outputs):
            try:
                if task == "v2a":
                    media.write_wav(out / f"{o.clip_id}.wav", o.samples, o.sample_rate)
                else:
                    media.write_mp4(out / f"{o.clip_id}.mp4", o.frames, o.fps, audio=req.audio,
                                    sample_rate=req.sample_rate)
                done.append(o.clip_id)
            except (InputError, ValueError) as exc:
                failures[o.clip_id] = f"output could not be written: {exc}"
    index = {
        "task": task, "model": model_name, "params": model.params(), "seed": seed, "device": device,
        "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                    "n_clips": len(records)},
        "generated": len(done), "resumed": len(skipped), "failures": failures,
        "seconds": round(time.time() - t0, 3), **provenance_block(),
    }
    write_json(out / "generation.json", index)
    return index


# ------------------------------------------------------------------------------ scoring
def pair_clips(task: str, pred_dir: str | Path, manifest: Manifest) -> tuple[list[ClipPair], dict[str, Any]]:
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(str(pred_dir), "prediction folder not found")
    preds: dict[str, Path] = {}
    for p in sorted(pred_dir.iterdir()):
        if p.suffix.lower() in PRED_EXT[task]:
            preds.setdefault(p.stem, p)
    ref_ids = set(manifest.ids())
    unpaired = sorted(set(preds) - ref_ids)
    missing = sorted(ref_ids - set(preds))
    pairs = []
    for rec in manifest:
        if rec.clip_id not in preds:
            continue
        p = str(preds[rec.clip_id])
        pairs.append(ClipPair(rec.clip_id, task, pred_audio=p if task == "v2a" else None,
                              pred_video=p if task == "a2v" else None, ref_audio=rec.audio_source,
                              ref_video=rec.video, label=rec.label))
    if not pairs:
        want = "/".join(PRED_EXT[task])
        raise InputError(str(pred_dir), f"no {want} file matches a reference clip id "
                         f"({len(preds)} predictions, {len(ref_ids)} reference clips; e.g. "
                         f"pred {sorted(preds)[:3]} vs ref {sorted(ref_ids)[:3]})")
    return pairs, {"n_pairs": len(pairs), "unpaired_pred": unpaired, "missing_pred": missing}


def validate(pairs: Sequence[ClipPair]) -> tuple[list[ClipPair], dict[str, str], dict[str, str]]:
    """Check each generated file once; returns (good pairs, excluded {id: reason}, warnings)."""
    good, bad, warn = [], {}, {}
    for p in pairs:
        try:
            if p.task == "v2a":
                clip = media.read_audio(p.pred_audio)
                if media.is_silent(clip.samples):
                    warn[p.clip_id] = f"{p.pred_audio}: audio is silent"
            else:
                media.read_video(p.pred_video, max_frames=2)
            good.append(p)
        except InputError as exc:
            bad[p.clip_id] = str(exc)
    return good, bad, warn


def check_metric(name: str, task: str, opts: dict[str, Any] | None = None) -> type[Metric]:
    """The class of registered metric ``name``, once it is known to serve ``task`` and to
    accept ``opts``; raises :class:`FoleybenchError` otherwise. Imports the metric's
    module but builds nothing (no embedder, no media)."""
    entry = METRICS.entry(name)
    cls = entry.load()
    tasks = getattr(cls, "tasks", None)
    if not tasks:
        raise FoleybenchError(f"metric {name!r}: its class {cls.__name__} declares no tasks")
    if task not in tasks:
        raise FoleybenchError(f"metric {name!r} does not apply to {task} (it applies to {', '.join(tasks)})")
    params = inspect.signature(cls.__init__).parameters
    unknown = [k for k in (opts or {}) if k not in params]
    if unknown:
        known = [k for k in params if k not in ("self", "ctx")]
        raise FoleybenchError(f"metric {name!r} has no option {unknown} (options: {known})")
    return cls


def score(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
          ctx: ScoreContext, extra: dict[str, Any] | None = None,
          metric_opts: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score predictions against ``manifest``; returns the results document.

    metric_opts: per-metric constructor options (e.g. ``{"fd_panns": {"n_boot": 100}}``),
    recorded in the results under each metric's ``options``.
    """
    metric_opts = metric_opts or {}
    load_plugins()
    # Every check that needs no media runs before any work: unknown names, a metric that
    # does not serve this task, unknown options. A v2a run asking for is_c3d must fail
    # here, not exclude every clip for want of a generated video.
    classes = [(METRICS.entry(n), check_metric(n, task, metric_opts.get(n, {}))) for n in metric_names]
    pairs, pairing = pair_clips(task, pred_dir, manifest)
    pairs, invalid, warnings = validate(pairs)
    pairing.update({"invalid_pred": invalid, "warnings": warnings, "n_scored_pairs": len(pairs)})
    results: dict[str, Any] = {}
    for entry, cls in classes:
        t0 = time.time()
        opts = metric_opts.get(entry.name, {})
        metric = cls(ctx=ctx, **{**entry.kwargs, **opts})
        excluded = []
        for start in _progress(range(0, len(pairs), 64), (len(pairs) + 63) // 64, entry.name, ctx.progress):
            excluded += metric.update(pairs[start:start + 64])
        value = metric.compute()
        if value.value is not None and not math.isfinite(value.value):
            # A metric bug must show as a missing value with its reason, never as NaN.
            value.extras["reason"] = f"non-finite result {value.value!r}"
            value.value, value.ci = None, None
        prov = metric.provenance()
        results[entry.name] = {
            **value.to_dict(), "higher_is_better": cls.higher_is_better,
            "proxy": prov.get("weights") == "proxy", "custom": prov.get("weights") == "custom", "provenance": prov,
            "excluded": [list(e) for e in excluded], "options": opts, "seconds": round(time.time() - t0, 3),
        }
    doc = {
        "task": task, "pred_dir": str(Path(pred_dir).resolve()),
        "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                    "n_clips": len(manifest)},
        "protocol": {"clip_seconds": ctx.clip_seconds, "resampler": media.RESAMPLER, "seed": ctx.seed,
                     "device": ctx.device, "amp": ctx.amp, "pairing": "explicit clip id (file stem)"},
        "pairing": pairing, "metrics": results, **(extra or {}), **provenance_block(),
    }
    return doc


def open_reference(ref: str | Path, dataset: str | None = None, split: str | None = None) -> Manifest:
    """A reference set from a folder (manifest.csv or media files) or a named dataset."""
    from foleybench.datasets.folder import folder_manifest

    if dataset == "vggsound":
        from foleybench.datasets.vggsound import VGGSound

        vgg = VGGSound(ref)
        m = vgg.manifest(split)
        log.warning(vgg.report())
        return m
    if os.path.isfile(ref):
        return Manifest.read(ref).split(split)
    return folder_manifest(ref, split)
