"""Generation and scoring runs: the harness's two jobs.

``generate`` turns a dataset into generated media files (one per clip, named by clip
id) with a ``generation.json`` index; reruns skip clips already written (files are
written atomically, so an existing file is a complete one). ``score`` pairs a folder of
predictions with a reference manifest by clip id, validates every file once (so all
metrics see the same clip set), runs the metrics and returns the results document.
One broken clip is reported and excluded; the run goes on.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from foleybench import distributed, media, samples
from foleybench.api import (
    A2VRequest,
    FoleybenchError,
    InputError,
    ScoreContext,
    V2ARequest,
    check_outputs,
)
from foleybench.datasets.base import ClipRecord, Manifest
from foleybench.pairing import (  # noqa: F401 (re-exported)
    PRED_EXT,
    Checked,
    check_pairs,
    pair_clips,
    sample_counts,
    validate,
    verify_hashes,
)
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
             seed: int = 0, device: str = "cpu", batch_size: int | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Generate media for every clip of ``manifest``; returns the generation index.

    ``batch_size`` None: the model's own ``generation_batch`` when it has one (models
    that generate sample by sample pay per step, not per clip: one batch of 27 clips
    costs about what one of 4 does), else 4."""
    from foleybench import distributed
    from foleybench.device import resolve_device
    from foleybench.outputs import check_out_dir

    env = distributed.current()
    out = check_out_dir(out_dir)  # before the model is built: a bad --out costs nothing
    device = resolve_device(device)
    manifest = verify_hashes(manifest.limit(limit))
    model = build_model(model_name, task, manifest, seed, device)
    if batch_size is None:
        batch_size = int(getattr(model, "generation_batch", None) or 4)
    records = manifest.records
    ext = PRED_EXT[task][0]
    failures: dict[str, str] = dict(manifest.problems)
    done, skipped = [], []
    t0 = time.time()
    own = distributed.mine(records, env, lambda r: r.clip_id)  # this rank's shard (all of it on one process)
    todo = [r for r in own if not (out / f"{r.clip_id}{ext}").is_file()]
    skipped = [r.clip_id for r in own if r not in todo]
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
        outputs, reqs = _generate_batch(model, reqs, model_name, failures, device)
        for req, o in zip(reqs, outputs):
            try:
                if task == "v2a":
                    media.write_wav(out / f"{o.clip_id}.wav", o.samples, o.sample_rate)
                else:
                    media.write_mp4(out / f"{o.clip_id}.mp4", o.frames, o.fps, audio=req.audio,
                                    sample_rate=req.sample_rate)
                done.append(o.clip_id)
                distributed.fault_point("generate", len(done))
            except (InputError, ValueError) as exc:
                failures[o.clip_id] = f"output could not be written: {exc}"
    done, skipped, failures = distributed.combine_generation(env, done, skipped, failures, records)
    index = {
        "task": task, "model": model_name, "params": model.params(), "seed": seed, "device": device,
        "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                    "n_clips": len(records)},
        "generated": len(done), "resumed": len(skipped), "failures": failures,
        "seconds": round(time.time() - t0, 3), "distributed": env.record(), **provenance_block(),
    }
    if env.is_root or env.offline:  # offline shards each keep their own index beside the media
        write_json(out / distributed.generation_index_name(env), index)
    return index


def _generate_batch(model: Any, reqs: list[Any], model_name: str,
                    failures: dict[str, str], device: str = "cpu") -> tuple[list[Any], list[Any]]:
    """(outputs, their requests) for a batch. When the batch fails, each clip is retried
    alone so that one bad clip (a reference without an audio track under the oracle...)
    is reported in ``failures`` and the others are still generated. A broken batch
    contract (ids or order) stays fatal: that is a model bug, not bad input. The model
    runs under the one precision policy (foleybench.device.autocast); a CUDA
    out-of-memory halves the batch and retries (foleybench.distributed.halving)."""
    from foleybench.device import autocast
    from foleybench.distributed import halving

    def run(rs: list[Any]) -> list[Any]:
        with autocast(device):
            return list(model.generate(rs))

    try:
        outputs = halving(run, list(reqs), "generation batch")
    except Exception as exc:  # noqa: BLE001 - any per-clip failure; isolated below
        if len(reqs) == 1:
            why = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            failures[reqs[0].clip_id] = f"generation failed: {why}"
            log.warning("excluded %s: %s", reqs[0].clip_id, failures[reqs[0].clip_id])
            return [], []
        outs, kept = [], []
        for r in reqs:
            o, k = _generate_batch(model, [r], model_name, failures, device)
            outs += o
            kept += k
        return outs, kept
    check_outputs(reqs, outputs, model_name)
    return list(outputs), list(reqs)


# ------------------------------------------------------------------------------ scoring
def score(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
          ctx: ScoreContext, extra: dict[str, Any] | None = None,
          metric_opts: dict[str, dict[str, Any]] | None = None, pred_pattern: str | None = None) -> dict[str, Any] | None:
    """Score predictions against ``manifest``; returns the results document.

    Under torchrun/srun (world size > 1) each rank scores its shard and rank 0 returns
    the merged document; the other ranks return None.

    metric_opts: per-metric constructor options (e.g. ``{"fd_panns": {"n_boot": 100}}``),
    recorded in the results under each metric's ``options``. pred_pattern: explicit file
    names (``--pred-pattern``: a template such as ``{id}_{k}.flac`` or a CSV mapping),
    possibly several samples per clip, combined per foleybench.samples (one process only).
    """
    from foleybench.suites import split_planned

    env = distributed.current()
    if env.offline:
        raise FoleybenchError("an offline shard (--shard I/N) writes a state file: use runner.score_shard")
    metric_opts = metric_opts or {}
    load_plugins()
    requested = list(metric_names)  # results keep this order; planned (unbuilt) suite metrics are reported
    metric_names, planned = split_planned(requested)
    classes, manifest, pairs, pairing = _prepare(task, pred_dir, manifest, metric_names, metric_opts, pred_pattern)
    if samples.is_multi(pairs):
        if env.world_size > 1:
            raise FoleybenchError("several samples per clip (--pred-pattern with {k}) are scored in one process: "
                                  "run without torchrun/srun")
        doc = _score_samples(task, pred_dir, manifest, classes, ctx, metric_opts, pairs, pairing, extra)
        return _with_planned(doc, requested, planned)
    state, metrics = score_local(task, pairs, classes, ctx, metric_opts, env, _ref_seconds(manifest))
    run = run_info(task, pred_dir, manifest, metric_names, ctx, metric_opts, pairing, pairs, extra)
    states = distributed.gather_to_root(state, env)
    if states is None:
        return None  # ranks other than 0 write nothing; rank 0 holds the merged document
    return _with_planned(score_finish(run, states, metrics, skip_rank=env.rank), requested, planned)


def _with_planned(doc: dict[str, Any], requested: list[str], planned: list[str]) -> dict[str, Any]:
    """A suite's unbuilt metrics as "not available" entries; metrics in the order asked."""
    from foleybench.suites import unavailable_result

    results = {**doc["metrics"], **{m: unavailable_result(m) for m in planned}}
    doc["metrics"] = {m: results[m] for m in requested if m in results}
    return doc


def _ref_seconds(manifest: Manifest) -> dict[str, float]:
    return {r.clip_id: r.duration_s for r in manifest if r.duration_s}


def _prepare(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
             metric_opts: dict[str, dict[str, Any]],
             pred_pattern: str | None = None) -> tuple[list[Any], Manifest, list[Any], dict[str, Any]]:
    """Checks and pairing, the same on every rank: (metric classes, manifest, pairs, pairing block)."""
    from foleybench import cache
    from foleybench.options import check_metric_options
    from foleybench.suites import split_planned

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
    pairs, pairing = pair_clips(task, pred_dir, manifest, pred_pattern)
    return classes, manifest, pairs, pairing


def score_shard(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
                ctx: ScoreContext, extra: dict[str, Any] | None = None,
                metric_opts: dict[str, dict[str, Any]] | None = None, pred_pattern: str | None = None) -> dict[str, Any]:
    """An offline shard's (``--shard I/N``) state: its clips' metric rows and the run's
    settings; ``foleybench merge`` turns the N states into the one-run document."""
    from foleybench.suites import split_planned

    metric_opts = metric_opts or {}
    load_plugins()
    metric_names, _planned = split_planned(list(metric_names))  # unbuilt suite metrics: nothing to shard
    classes, manifest, pairs, pairing = _prepare(task, pred_dir, manifest, metric_names, metric_opts, pred_pattern)
    if samples.is_multi(pairs):
        raise FoleybenchError("several samples per clip (--pred-pattern with {k}) are scored in one process: "
                              "run without --shard")
    state, _ = score_local(task, pairs, classes, ctx, metric_opts, distributed.current(), _ref_seconds(manifest))
    state["run"] = run_info(task, pred_dir, manifest, metric_names, ctx, metric_opts, pairing, pairs, extra)
    return state


def score_local(task: str, pairs: list[Any], classes: list[Any], ctx: ScoreContext,
                metric_opts: dict[str, dict[str, Any]], env: Any,
                ref_seconds: dict[str, float] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """This rank's part of a score: its shard of ``pairs`` validated and run through each
    metric. Returns (the picklable state sent to rank 0, {name: metric})."""
    from foleybench import cache

    pairs = distributed.mine(pairs, env, lambda p: p.clip_id)
    checked = check_pairs(pairs, ctx.clip_seconds, ref_seconds)
    pairs, invalid, warnings, invalid_ref = checked.good, checked.invalid, checked.warnings, checked.invalid_ref
    metrics: dict[str, Any] = {}
    states: dict[str, Any] = {}
    for entry, cls in classes:
        t0 = time.time()
        opts = metric_opts.get(entry.name, {})
        metric = cls(ctx=ctx, **{**entry.kwargs, **opts})
        for start in _progress(range(0, len(pairs), 64), (len(pairs) + 63) // 64, entry.name, ctx.progress):
            metric.update(pairs[start:start + 64])
        metrics[entry.name] = metric
        states[entry.name] = {**distributed.metric_state(metric), "seconds": time.time() - t0}
    state = {"rank": env.rank, "world_size": env.world_size, "offline": env.offline,
             "invalid": invalid, "warnings": warnings, "invalid_ref": invalid_ref, "n_scored": len(pairs),
             "good": [p.clip_id for p in pairs], "short": checked.short, "cut": checked.cut,
             "metrics": states, "repairs": cache.take_repairs()}
    return state, metrics


def run_info(task: str, pred_dir: str | Path, manifest: Manifest, metric_names: Sequence[str],
             ctx: ScoreContext, metric_opts: dict[str, dict[str, Any]], pairing: dict[str, Any],
             pairs: list[Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """What every rank agrees on about a score run (plain data: it travels in state files)."""
    import dataclasses

    return {"task": task, "pred_dir": str(Path(pred_dir).resolve()), "metric_names": list(metric_names),
            "options": metric_opts, "fingerprint": manifest.fingerprint(),
            "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                        "n_clips": len(manifest)},
            "protocol": {"clip_seconds": ctx.clip_seconds, "resampler": media.RESAMPLER, "seed": ctx.seed,
                         "device": ctx.device, "amp": ctx.amp,
                     "batch_invariant": ctx.forward_per_clip(), "pairing": _pairing_rule(pairing)},
            "ctx": dataclasses.asdict(ctx), "pairing": pairing, "order": [p.clip_id for p in pairs],
            "extra": extra or {}}


def score_finish(run: dict[str, Any], states: Sequence[dict[str, Any]], metrics: dict[str, Any],
                 skip_rank: int | None = None, check_provenance: bool = True) -> dict[str, Any]:
    """The results document from every rank's state: metric rows unioned into
    ``metrics`` (which already hold rank ``skip_rank``'s), then each computed once.
    Rows are reduced in sorted clip-id order (metrics/base.py), so the values and
    intervals are those of one process; lists follow the manifest's clip order.
    ``check_provenance=False`` (foleybench merge): the states agree with each other
    (checked by the caller) and their provenance is recorded, not the merging process's."""
    from foleybench.registry import METRICS

    order = run["order"]

    def in_order(d: dict[str, Any]) -> dict[str, Any]:
        return {c: d[c] for c in order if c in d}

    pairing = {**run["pairing"], "invalid_pred": dict(run["pairing"]["invalid_pred"]),
               "excluded_ref": dict(run["pairing"]["excluded_ref"])}
    pairing["invalid_pred"].update(in_order({k: v for s in states for k, v in s["invalid"].items()}))
    pairing["excluded_ref"].update(in_order({k: v for s in states for k, v in s["invalid_ref"].items()}))
    pairing.update({"warnings": in_order({k: v for s in states for k, v in s["warnings"].items()}),
                    "n_scored_pairs": sum(s["n_scored"] for s in states)})
    if all("good" in s for s in states):  # file and length counts (states from before they existed lack them)
        checked = Checked(short={k: v for s in states for k, v in s["short"].items()},
                          cut=[c for s in states for c in s["cut"]])
        scored = {g for s in states for g in s["good"]}
        good = [_Clip(c) for c in order if c in scored]
        pairing.update(sample_counts(good, checked, run["ctx"].get("clip_seconds")))
    results: dict[str, Any] = {}
    for name in run["metric_names"]:
        metric = metrics[name]
        for s in states:
            if s["rank"] != skip_rank:
                distributed.merge_state(metric, s["metrics"][name], where=f"rank {s['rank']}",
                                        check_provenance=check_provenance)
        t0 = time.time()
        value = metric.compute()
        if value.value is not None and not math.isfinite(value.value):
            # A metric bug must show as a missing value with its reason, never as NaN.
            value.extras["reason"] = f"non-finite result {value.value!r}"
            value.value, value.ci = None, None
        prov = metric.provenance() if check_provenance else states[0]["metrics"][name]["provenance"]
        cls = METRICS.entry(name).load()
        seconds = max(s["metrics"][name]["seconds"] for s in states) + time.time() - t0
        results[name] = {
            **value.to_dict(), "higher_is_better": cls.higher_is_better,
            "proxy": prov.get("weights") == "proxy", "custom": prov.get("weights") == "custom", "provenance": prov,
            "excluded": [[c, metric.excluded[c].reason] for c in order if c in metric.excluded],
            "options": run["options"].get(name, {}), "seconds": round(seconds, 3),
        }
    world = states[0]["world_size"]
    env = distributed.DistEnv(0, world, 0, offline=bool(states[0].get("offline")))
    doc = {
        "task": run["task"], "pred_dir": run["pred_dir"], "dataset": run["dataset"], "protocol": run["protocol"],
        "pairing": pairing, "metrics": results,
        # and those met while computing (a damaged value memo entry: recomputed, reported)
        "cache": _cache_block([tuple(r) for s in states for r in s["repairs"]] + _take_repairs()),
        "distributed": env.record(), **run["extra"], **provenance_block(),
    }
    return doc


class _Clip:
    """A scored clip id where :func:`sample_counts` expects a pair (one sample per clip)."""

    def __init__(self, clip_id: str):
        self.clip_id = clip_id


def _pairing_rule(pairing: dict[str, Any]) -> str:
    rule = pairing.get("pred_pattern")
    return "explicit clip id (file stem)" if rule is None else f"explicit --pred-pattern {rule}"


def _score_samples(task: str, pred_dir: str | Path, manifest: Manifest, classes: list[Any], ctx: ScoreContext,
                   metric_opts: dict[str, dict[str, Any]], pairs: list[Any], pairing: dict[str, Any],
                   extra: dict[str, Any] | None) -> dict[str, Any]:
    """Several samples per clip (one process): each metric runs once per sample label and
    the results combine by the metric's rule (foleybench.samples)."""
    from foleybench import cache

    checked = check_pairs(pairs, ctx.clip_seconds, _ref_seconds(manifest))
    pairs = checked.good
    pairing["invalid_pred"].update(checked.invalid)
    pairing["excluded_ref"].update(checked.invalid_ref)
    pairing.update({"warnings": checked.warnings, **sample_counts(pairs, checked, ctx.clip_seconds)})
    rules = {entry.name: samples.rule_of(cls, entry.name) for entry, cls in classes}
    results: dict[str, Any] = {}
    for entry, cls in classes:
        t0 = time.time()
        opts = metric_opts.get(entry.name, {})
        metric, value, excluded, sample_block = samples.score_samples(
            functools.partial(cls, ctx=ctx, **{**entry.kwargs, **opts}), pairs, entry.name, rules[entry.name],
            (lambda it, n, desc: _progress(it, n, desc, ctx.progress)), ctx.seed)
        if value.value is not None and not math.isfinite(value.value):
            value.extras["reason"] = f"non-finite result {value.value!r}"
            value.value, value.ci = None, None
        prov = metric.provenance()
        results[entry.name] = {
            **value.to_dict(), "higher_is_better": cls.higher_is_better,
            "proxy": prov.get("weights") == "proxy", "custom": prov.get("weights") == "custom", "provenance": prov,
            "excluded": [list(e) for e in excluded], "options": opts, "seconds": round(time.time() - t0, 3),
            "samples": sample_block,
        }
    return {
        "task": task, "pred_dir": str(Path(pred_dir).resolve()),
        "dataset": {"name": manifest.name, "root": str(manifest.root), "fingerprint": manifest.fingerprint(),
                    "n_clips": len(manifest)},
        "protocol": {"clip_seconds": ctx.clip_seconds, "resampler": media.RESAMPLER, "seed": ctx.seed,
                     "device": ctx.device, "amp": ctx.amp,
                     "batch_invariant": ctx.forward_per_clip(), "pairing": _pairing_rule(pairing)},
        "pairing": pairing, "metrics": results, "cache": _cache_block(cache.take_repairs()),
        "distributed": distributed.DistEnv(0, 1, 0).record(), **(extra or {}), **provenance_block(),
    }


def _take_repairs() -> list[tuple[str, str]]:
    from foleybench import cache

    return cache.take_repairs()


def _cache_block(repairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The results' ``cache`` block: damaged entries found this run (all were recomputed)."""
    return {"repaired": len(repairs), "repairs": [{"entry": e, "problem": why} for e, why in repairs]}


def open_reference(ref: str | Path, dataset: str | None = None, split: str | None = None) -> Manifest:
    """A reference set from a folder (manifest.csv or media files) or a named dataset.
    A ``split`` no clip is in is an error naming the splits there are."""
    m = _open_reference(ref, dataset, None)
    if split is None:
        return m
    kept = m.split(split)
    if not len(kept) and len(m):  # a misspelt --split must not read as "no reference clips"
        have = sorted({str(r.split) for r in m})
        raise InputError("--split", f"no clip of {ref} is in split {split!r} (splits there: {have})")
    return kept


def _open_reference(ref: str | Path, dataset: str | None = None, split: str | None = None) -> Manifest:
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
