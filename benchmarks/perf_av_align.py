"""AV-Align speed on the real clips in ``../shared/data/realclips`` (skipped when absent).

Ours: :class:`foleybench.metrics.av_align.AVAlign` scoring all clips as one batch
(clips in forked worker processes, one per CPU core). Against, on the same clips:

- the reference script, when ``FOLEYBENCH_PEER_AV_ALIGN=/path/to/av_align.py:function``
  names a copy of it and a function taking (video_path, audio_path): clips in turn, one
  process, as the script runs (``av_align.peer`` = "reference script");
- otherwise our own reference-order route, ``av_align(..., workers=1)``: the same
  algorithm as the reference, sequential (decode video, flow frame pair by frame pair,
  then decode audio and find onsets), one clip after another in one thread
  (``av_align.peer`` = "reference-order route (ours, serial)").

Figures: ``av_align.speedup_vs_reference`` = peer seconds / our seconds, the seconds,
``av_align.clips`` and ``av_align.identical`` (1 when every per-clip score equals the
serial route's exactly). Clips are 10 s each; one timed run per side (minutes each).
"""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT.parent / "shared" / "data" / "realclips"


def _peer():
    spec_s = os.environ.get("FOLEYBENCH_PEER_AV_ALIGN", "").strip()
    if not spec_s:
        return None
    path, _, fn = spec_s.rpartition(":")
    spec = importlib.util.spec_from_file_location("_peer_av_align", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return getattr(mod, fn)


def run() -> dict[str, float]:
    from foleybench.api import ClipPair
    from foleybench.metrics.av_align import AVAlign
    from foleybench.metrics.functional.av_align import av_align

    clips = sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []
    if not clips:
        print(f"  no real clips at {CLIPS}: skipped")
        return {}
    pairs = [ClipPair(clip_id=p.stem, task="v2a", pred_audio=str(p), ref_audio=str(p), pred_video=str(p),
                      ref_video=str(p)) for p in clips]
    peer = _peer()
    t0 = time.perf_counter()
    serial = []
    for p in clips:
        if peer is not None:
            peer(str(p), str(p))
        serial.append(av_align(p, p, workers=1).score if peer is None else None)
    t_peer = time.perf_counter() - t0
    metric = AVAlign(workers=os.cpu_count() or 1)
    t0 = time.perf_counter()
    ours = metric.score_batch(pairs)
    t_ours = time.perf_counter() - t0
    identical = float(peer is None and all(isinstance(o, float) and o == s for o, s in zip(ours, serial)))
    print(f"  av_align: {len(clips)} clips, peer {t_peer:.1f} s, ours {t_ours:.1f} s "
          f"({'reference script' if peer else 'reference-order route'})")
    return {"av_align.clips": len(clips), "av_align.peer_s": t_peer, "av_align.ours_s": t_ours,
            "av_align.speedup_vs_reference": t_peer / t_ours, "av_align.identical": identical,
            "av_align.peer_is_reference_script": float(peer is not None)}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
