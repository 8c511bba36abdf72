"""AV-Align speed on the real clips in ``../shared/data/realclips`` (skipped when absent).

Ours: all clips as one batch through ``av_align_many`` (what
:class:`foleybench.metrics.av_align.AVAlign` runs per batch: each video decoded once, the
frame pairs of every clip in small chunks over one forked worker per CPU core, onsets and
the next decode meanwhile).

Peer, on the same clips, one process, clip after clip:

- by default the "reference procedure (re-implemented from av_align.py)": what TempoTokens'
  ``av_align.py`` does per clip, written here as our own code (:func:`reference_procedure`):
  cv2.VideoCapture decode of every frame (BGR) at ``CAP_PROP_FPS``; for T frames T+1
  Farneback calls (the first pair twice), each converting both frames with
  cvtColor(BGR2GRAY), then cv2.magnitude and cv2.mean; audio through ``librosa.load(path)``
  (22050 Hz, soxr_hq), onset_strength + onset_detect; peaks >= 0.1 and one-to-one matching
  as in the 2025 revision. Where ``librosa.load`` cannot read the file (an .mp4 needs
  audioread's ffmpeg backend, and this machine has no ffmpeg binary), the audio is decoded
  by PyAV and then put through librosa.load's own steps (to_mono, soxr_hq resample); an
  in-process decode is cheaper than audioread's ffmpeg subprocess, so this favours the peer.
  Its per-clip counts (audio peaks, video peaks, matches) are compared with ours
  (``av_align.ref_counts_equal``: clips whose counts agree).
- with ``FOLEYBENCH_PEER_AV_ALIGN=/path/to/av_align.py:function`` (a function taking
  (video_path, audio_path)), that script's function instead
  (``av_align.peer_is_reference_script`` = 1; no counts compared).

Also timed: our serial route (``av_align(..., workers=1)``, clip after clip), whose
per-clip results ours must equal exactly (``av_align.identical``).

Figures: ``av_align.speedup_vs_reference`` = peer s / ours s, ``av_align.speedup_vs_serial``
= our serial s / ours s, the seconds (medians over ``FOLEYBENCH_PERF_AV_ALIGN_REPEATS``
interleaved repeats, default 1: each side takes minutes on 2 cores), ``av_align.clips``,
``av_align.identical``, ``av_align.ref_counts_equal``, ``av_align.load_avg_1min`` (the
machine's load while it ran), the CPU seconds of each side (``*_cpu_s``: this process plus
its fork workers) and ``av_align.sched_autogroup``. librosa (numba) is warmed before any
side is timed.

Reading the wall-clock ratio: with the kernel's autogroup scheduling on (as on the shared
development VM: /proc/sys/kernel/sched_autogroup_enabled = 1), CPU time is shared fairly between
*sessions*, not processes: while other sessions keep the cores busy, this benchmark's
session gets its share whatever its number of workers, so the wall ratio falls to about
the CPU-work ratio (peer cpu-s / ours cpu-s). The parallel speed-up shows only on cores
this run has to itself.
"""
from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT.parent / "shared" / "data" / "realclips"
PEER_LABEL = "reference procedure (re-implemented from av_align.py)"


def _peer():
    spec_s = os.environ.get("FOLEYBENCH_PEER_AV_ALIGN", "").strip()
    if not spec_s:
        return None
    path, _, fn = spec_s.rpartition(":")
    spec = importlib.util.spec_from_file_location("_peer_av_align", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return getattr(mod, fn)


# ----------------------------------------------------------------------------- the peer
def _ref_frames(video_path: str) -> tuple[list[np.ndarray], float]:
    import cv2

    cap = cv2.VideoCapture(video_path)
    if not cap.isOpened():
        raise ValueError(f"{video_path}: cv2.VideoCapture cannot open it")
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def _ref_flow_value(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    g1 = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    g2 = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    flow = cv2.calcOpticalFlowFarneback(g1, g2, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return cv2.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))[0]


def _ref_audio(audio_path: str) -> tuple[np.ndarray, str]:
    """librosa.load(path) -> (mono float32 at 22050 Hz, which decoder read it)."""
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, _ = librosa.load(audio_path)
        return y, "librosa.load"
    except Exception:  # no audioread backend for this container: decode with PyAV instead
        from foleybench.media import read_audio

        clip = read_audio(audio_path)
        y = librosa.to_mono(np.asarray(clip.samples, dtype=np.float32))
        return librosa.resample(y, orig_sr=int(clip.sample_rate), target_sr=22050, res_type="soxr_hq"), "pyav"


def reference_procedure(video_path: str, audio_path: str) -> dict:
    """One clip by the reference's procedure: counts, score, fps and the audio decoder."""
    import librosa

    frames, fps = _ref_frames(video_path)
    y, decoder = _ref_audio(audio_path)
    env = librosa.onset.onset_strength(y=y, sr=22050)
    a = librosa.frames_to_time(librosa.onset.onset_detect(onset_envelope=env, sr=22050), sr=22050)
    traj = [_ref_flow_value(frames[0], frames[1])] + [_ref_flow_value(frames[i - 1], frames[i])
                                                      for i in range(1, len(frames))]
    v = [i / fps for i in range(1, len(traj) - 1)
         if traj[i - 1] < traj[i] > traj[i + 1] and traj[i] >= 0.1]
    used = [False] * len(v)
    m = 0
    for t in a:
        for j, tv in enumerate(v):
            if not used[j] and tv - 1 / fps < t < tv + 1 / fps:
                used[j] = True
                m += 1
                break
    n = len(a) + len(v) - m
    return {"counts": (len(a), len(v), m), "score": m / n if n else None, "fps": fps, "audio": decoder,
            "frames": len(frames)}


# ----------------------------------------------------------------------------- timing
def _cpu_s() -> float:
    """CPU seconds used so far by this process and its reaped children (the fork workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _warm() -> None:
    from foleybench.metrics.functional.av_align import audio_onsets

    rng = np.random.default_rng(0)
    audio_onsets(rng.standard_normal(44100).astype(np.float32) * 0.1, 44100)


def run() -> dict[str, float]:
    from foleybench.metrics.functional.av_align import av_align, av_align_many

    clips = sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []
    if not clips:
        print(f"  no real clips at {CLIPS}: skipped")
        return {}
    repeats = max(1, int(os.environ.get("FOLEYBENCH_PERF_AV_ALIGN_REPEATS", "1")))
    workers = os.cpu_count() or 1
    script = _peer()
    _warm()
    t_peer, t_serial, t_ours, loads = [], [], [], []
    c_peer, c_serial, c_ours = [], [], []
    ref: list[dict] = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), _cpu_s()
        got = []
        for p in clips:
            if script is not None:
                script(str(p), str(p))
            else:
                got.append(reference_procedure(str(p), str(p)))
        t_peer.append(time.perf_counter() - t0)
        c_peer.append(_cpu_s() - c0)
        ref = got
        t0, c0 = time.perf_counter(), _cpu_s()
        ours = av_align_many([(p, p) for p in clips], workers)  # what AVAlign.score_batch runs
        t_ours.append(time.perf_counter() - t0)
        c_ours.append(_cpu_s() - c0)
        t0, c0 = time.perf_counter(), _cpu_s()
        serial = [av_align(p, p, workers=1) for p in clips]
        t_serial.append(time.perf_counter() - t0)
        c_serial.append(_cpu_s() - c0)
        loads.append(os.getloadavg()[0])
        print(f"    repeat: peer {t_peer[-1]:.1f} s ({c_peer[-1]:.1f} cpu-s), ours {t_ours[-1]:.1f} s "
              f"({c_ours[-1]:.1f} cpu-s), our serial {t_serial[-1]:.1f} s ({c_serial[-1]:.1f} cpu-s), "
              f"load {loads[-1]:.1f}", flush=True)
    # Per-clip identity of the batch route with the serial one: scores, counts, peak times.
    identical = all(
        not isinstance(d, Exception)
        and (d.score, d.n_audio_peaks, d.n_video_peaks, d.n_matches) == (s.score, s.n_audio_peaks, s.n_video_peaks,
                                                                          s.n_matches)
        and np.array_equal(d.audio_peaks, s.audio_peaks) and np.array_equal(d.video_peaks, s.video_peaks)
        for d, s in zip(ours, serial))
    tp, ts, to = (statistics.median(x) for x in (t_peer, t_serial, t_ours))
    label = "reference script" if script is not None else PEER_LABEL
    print(f"  av_align: {len(clips)} clips, {workers} workers, peer [{label}] {tp:.1f} s, "
          f"our serial {ts:.1f} s, ours {to:.1f} s -> {tp / to:.2f}x vs peer, {ts / to:.2f}x vs serial; "
          f"identical to serial: {identical}; load {', '.join(f'{x:.1f}' for x in loads)}")
    n_equal = 0
    for p, r, s in zip(clips, ref, serial):
        ours_c = (s.n_audio_peaks, s.n_video_peaks, s.n_matches)
        n_equal += r["counts"] == ours_c
        print(f"    {p.name}: peer counts (A, V, M) {r['counts']} fps {r['fps']:.4g} ({r['frames']} frames, audio "
              f"via {r['audio']}); ours {ours_c} fps {s.fps:.4g}{'' if r['counts'] == ours_c else '  DIFFER'}")
    out = {"av_align.clips": float(len(clips)), "av_align.peer_s": tp, "av_align.serial_s": ts, "av_align.ours_s": to,
           "av_align.speedup_vs_reference": tp / to, "av_align.speedup_vs_serial": ts / to,
           "av_align.identical": float(identical), "av_align.peer_is_reference_script": float(script is not None),
           "av_align.load_avg_1min": statistics.median(loads), "av_align.workers": float(workers),
           "av_align.peer_cpu_s": statistics.median(c_peer), "av_align.ours_cpu_s": statistics.median(c_ours),
           "av_align.serial_cpu_s": statistics.median(c_serial),
           "av_align.sched_autogroup": float(_autogroup())}
    if script is None:
        out["av_align.ref_counts_equal"] = float(n_equal)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
