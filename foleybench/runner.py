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
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from foleybench import media
from foleybench.api import (
    A2VRequest,
    FoleybenchError,
    InputError,
    ScoreContext,
    V2ARequest,
    check_outputs,
)
from foleybench.datasets.base import ClipRecord, Manifest
from foleybench.pairing import PRED_EXT, pair_clips, validate, verify_hashes  # noqa: F401 (re-exported)
from foleybench.registry import METRICS, MODELS, load_plugins
from foleybench.results import provenance_block, write_json

log = logging.getLogger("foleybench")
_MEDIA_SUFFIXES = {".wav", ".flac", ".mp4", ".mkv", ".mov", ".webm", ".avi", ".ogg", ".m4a", ".mp3"}


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
    from foleybench.outputs import check_out_dir

    out = check_out_dir(out_dir)  # before the model is built: a bad --out costs nothing
    device = resolve_device(device)
    manifest = verify_hashes(manifest.limit(limit))
    model = build_model(model_name, task, manifest, seed, device)
    records = manifest.records
    ext = PRED_EXT[task][0]
    failures: dict[str, str] = dict(manifest.problems)
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
            except Exception as exc:  # noqa: BLE001 - one clip's bad input never ends the run
                failures[rec.clip_id] = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
                log.warning("excluded %s: %s", rec.clip_id, failures[rec.clip_id])
        if not reqs:
            continue
        outputs, reqs = _generate_batch(model, reqs, model_name, failures)
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


def _generate_batch(model: Any, reqs: list[Any], model_name: str,
                    failures: dict[str, str]) -> tuple[list[Any], list[Any]]:
    """(outputs, their requests) for a batch. When the batch fails, each clip is retried
    alone so that one bad clip (a reference without an audio track under the oracle...)
    is reported in ``failures`` and the others are still generated. A broken batch
    contract (ids or order) stays fatal: that is a model bug, not bad input."""
    try:
        outputs = model.generate(reqs)
    except Exception as exc:  # noqa: BLE001 - any per-clip failure; isolated below
        if len(reqs) == 1:
            why = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            failures[reqs[0].clip_id] = f"generation failed: {why}"
            log.warning("excluded %s: %s", reqs[0].clip_id, failures[reqs[0].clip_id])
            return [], []
        outs, kept = [], []
        for r in reqs:
            o, k = _generate_batch(model, [r], model_name, failures)
            outs += o
            kept += k
        return outs, kept
    check_outputs(reqs, outputs, model_name)
    return list(outputs), list(reqs)


# ------------------------------------------------------------------------------ scoring
def score(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
          ctx: ScoreContext, extra: dict[str, Any] | None = None,
          metric_opts: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score predictions against ``manifest``; returns the results document.

    metric_opts: per-metric constructor options (e.g. ``{"fd_panns": {"n_boot": 100}}``),
    recorded in the results under each metric's ``options``.
    """
    from foleybench import cache
    from foleybench.options import check_metric_options
    from foleybench.suites import split_planned, unavailable_result

    metric_opts = metric_opts or {}
    load_plugins()
    requested = list(metric_names)  # results keep this order; planned (unbuilt) metrics are reported
    metric_names, planned = split_planned(requested)
    # Every check that needs no media runs before any work: unknown names, a metric that
    # does not serve this task, unknown options and bad option values. A v2a run asking
    # for is_c3d must fail here, not exclude every clip for want of a generated video.
    classes = list(zip([METRICS.entry(n) for n in metric_names],
                       check_metric_options(metric_names, metric_opts, task)))
    cache.take_repairs()                                 # count this run's repairs only
    manifest = verify_hashes(manifest)
    pairs, pairing = pair_clips(task, pred_dir, manifest)
    pairs, invalid, warnings, invalid_ref = validate(pairs)
    pairing["invalid_pred"].update(invalid)
    pairing["excluded_ref"].update(invalid_ref)
    pairing.update({"warnings": warnings, "n_scored_pairs": len(pairs)})
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
    results.update({m: unavailable_result(m) for m in planned})
    results = {m: results[m] for m in requested if m in results}
    doc = {
        "task": task, "pred_dir": str(Path(pred_dir).resolve()),
        "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                    "n_clips": len(manifest)},
        "protocol": {"clip_seconds": ctx.clip_seconds, "resampler": media.RESAMPLER, "seed": ctx.seed,
                     "device": ctx.device, "amp": ctx.amp, "pairing": "explicit clip id (file stem)"},
        "pairing": pairing, "metrics": results, "cache": _cache_block(cache.take_repairs()),
        **(extra or {}), **provenance_block(),
    }
    return doc


def _cache_block(repairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The results' ``cache`` block: damaged entries found this run (all were recomputed)."""
    return {"repaired": len(repairs), "repairs": [{"entry": e, "problem": why} for e, why in repairs]}


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
        if Path(ref).suffix.lower() in _MEDIA_SUFFIXES:
            raise InputError(str(ref), "is a media file; --ref/--data take a folder (with manifest.csv or media "
                             "files) or a manifest .csv")
        return Manifest.read(ref).split(split)
    return folder_manifest(ref, split)
