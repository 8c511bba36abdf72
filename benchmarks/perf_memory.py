"""Peak memory (RSS) of embedding one long prediction: it must not grow with input length.

Writes a 10-minute 48 kHz stereo PCM16 wav (a model that ignored the requested length)
and a protocol-length 8 s one, then embeds each through an audio embedder (proxy
weights, cache off) in a fresh subprocess and reads that process's peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The embedding is asked for as a Frechet
distance asks for it (``embed_files(..., stats=True)``): a long input of an embedder that
streams statistics (EnCodec) comes back as its rows' statistics. Run from the repository root:

    .venv/bin/python benchmarks/perf_memory.py [EMBEDDER ...]   # default: encodec vggish melstat panns
    .venv/bin/python benchmarks/perf_memory.py --minutes 10,60 encodec panns   # other lengths

Goal (issue 15): under 2 GB for 10 minutes, close to the 8 s figure, and a 60-minute
input within noise of the 10-minute one. Not a test: it takes minutes on 2 CPU cores.

``--score TASK``: the whole ``foleybench score`` process instead (docs/PROTOCOL.md "Long
inputs" table), one metric per fresh process, its peak RSS from ``wait4``: a synthfoley
reference set of 3 clips, and per length a prediction folder whose first clip is long (V2A:
a 48 kHz stereo PCM16 wav; A2V: a 128x128 8 fps H.264 video, moving disc) and whose other
two are the references' own files. ``--cache`` runs each metric twice on a fresh cache
(writing it, then reading it) instead of ``--no-cache``; ``--repeat N`` repeats each run:

    .venv/bin/python benchmarks/perf_memory.py --score a2v --minutes 10,60 fvd clipsim is_c3d ib_score desync av_align
    .venv/bin/python benchmarks/perf_memory.py --score v2a --minutes 10,60 kl_panns av_align
    .venv/bin/python benchmarks/perf_memory.py --score v2a --minutes 10,60 --cache fd_encodec
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from foleybench.api import ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.embedders import get_embedder
name, path = sys.argv[1], sys.argv[2]
ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, batch_size=1)
emb = get_embedder(name, ctx)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.time()
out = embed_files(emb, [path], ctx, stats=True)[0]
shape = list(getattr(out, "shape", [])) or str(out)
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mb": base / 1024, "seconds": round(time.time() - t0, 1), "shape": shape}))
"""


def _wav(path: Path, seconds: float, rate: int = 48000) -> str:
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, 2, "PCM_16") as f:
        for _ in range(int(np.ceil(seconds / 10))):  # written in 10 s blocks: this script stays small too
            f.write((0.1 * rng.standard_normal((10 * rate, 2))).astype(np.float32))
    return str(path)


def measure(name: str, path: str) -> dict:
    """Peak RSS (MB) of a fresh process that builds ``name`` and embeds ``path``."""
    r = subprocess.run([sys.executable, "-c", CHILD, name, path], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


DEFAULT = ["encodec", "vggish", "melstat", "panns"]


def run(names: list[str] | None = None) -> dict[str, float]:
    """``make perf``'s figures: ``memory.<embedder>.{8s,600s}_peak_mb`` and their difference
    ``memory.<embedder>.growth_mb`` (what 10 minutes cost beyond 8 s)."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        short, long = _wav(Path(d) / "short.wav", 8), _wav(Path(d) / "long.wav", 600)
        for name in names or DEFAULT:
            a, b = measure(name, short), measure(name, long)
            if "peak_mb" not in a or "peak_mb" not in b:
                print(f"  memory {name}: failed ({a.get('error') or b.get('error')})")
                continue
            out[f"memory.{name}.8s_peak_mb"] = a["peak_mb"]
            out[f"memory.{name}.600s_peak_mb"] = b["peak_mb"]
            out[f"memory.{name}.growth_mb"] = b["peak_mb"] - a["peak_mb"]
            print(f"  memory {name}: 8 s {a['peak_mb']:.0f} MB, 10 min {b['peak_mb']:.0f} MB")
    return out


def _mp4(path: Path, seconds: float, fps: int = 8, size: int = 128) -> str:
    """A long generated video, cheaply: ``size`` x ``size`` at ``fps``, a disc moving on a
    changing background (H.264 ultrafast; 60 minutes take ~15 MB and seconds to write)."""
    import av

    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width = v.height = size
        v.pix_fmt, v.options = "yuv420p", {"preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            img = np.zeros((size, size, 3), np.uint8)
            cx = size / 2 + size / 3 * np.sin(i / 5)
            img[(xx - cx) ** 2 + (yy - size / 2) ** 2 < 200] = 255
            img[..., 1] = (i * 7) % 255
            for pk in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in v.encode():
            c.mux(pk)
    return str(path)


def _cli(args: list[str]) -> dict:
    """Peak RSS (MB, this child and its own children: ``wait4``) and seconds of one
    ``foleybench`` process."""
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "foleybench.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"rc {proc.returncode}"}
    return {"peak_mb": round(usage.ru_maxrss / 1024, 1), "seconds": round(time.time() - t0, 1)}


def score_memory(task: str, minutes: list[float], metrics: list[str], cache: bool = False,
                 repeat: int = 1) -> int:
    """``--score``: see the module docstring. One JSON line per metric, length and run."""
    with tempfile.TemporaryDirectory() as d:
        ref = Path(d) / "ref"
        subprocess.run([sys.executable, "-m", "foleybench.cli", "synth", "--out", str(ref), "--clips", "3"],
                       check=True, capture_output=True)
        ids = sorted(p.stem for p in ref.glob("*.wav"))
        ext = ".wav" if task == "v2a" else ".mp4"
        preds = {}
        for m in minutes:
            pred = Path(d) / f"pred{m:g}"
            pred.mkdir()
            if task == "v2a":
                _wav(pred / f"{ids[0]}.wav", 60 * m)
            else:
                _mp4(pred / f"{ids[0]}.mp4", 60 * m)
            for i in ids[1:]:
                shutil.copy(ref / f"{i}{ext}", pred / f"{i}{ext}")
            preds[m] = pred
        for metric in metrics:
            for m, pred in preds.items():
                for k in range(repeat):
                    base = ["score", "--task", task, "--pred", str(pred), "--ref", str(ref), "--metrics", metric,
                            "--proxy", "--out", str(Path(d) / "out.json"), "--quiet"]
                    if task == "a2v":
                        base += ["--pred-pattern", "{id}.mp4"]
                    row = {"task": task, "metric": metric, "minutes": m, "run": k + 1}
                    if cache:
                        cdir = Path(d) / "cache"
                        shutil.rmtree(cdir, ignore_errors=True)
                        row["put"] = _cli(base + ["--cache-dir", str(cdir)])
                        row["get"] = _cli(base + ["--cache-dir", str(cdir)])
                    else:
                        row.update(_cli(base + ["--no-cache"]))
                    print(json.dumps(row), flush=True)
    return 0


def main(args: list[str]) -> int:
    if args[:1] == ["--score"]:
        if len(args) < 3 or args[1] not in ("v2a", "a2v"):
            print("usage: perf_memory.py --score v2a|a2v [--minutes M[,M...]] [--cache] [--repeat N] METRIC ...",
                  file=sys.stderr)
            return 2
        task, rest, minutes, cache, repeat = args[1], args[2:], [10.0, 60.0], False, 1
        while rest and rest[0].startswith("--"):
            if rest[0] == "--minutes":
                minutes, rest = [float(m) for m in rest[1].split(",")], rest[2:]
            elif rest[0] == "--cache":
                cache, rest = True, rest[1:]
            elif rest[0] == "--repeat":
                repeat, rest = int(rest[1]), rest[2:]
            else:
                print(f"perf_memory.py: unknown option {rest[0]}", file=sys.stderr)
                return 2
        return score_memory(task, minutes, rest, cache, repeat)
    minutes = [10.0]
    if args[:1] == ["--minutes"]:
        if len(args) < 2:
            print("usage: perf_memory.py [--minutes M[,M...]] [EMBEDDER ...]", file=sys.stderr)
            return 2
        minutes, args = [float(m) for m in args[1].split(",")], args[2:]
    with tempfile.TemporaryDirectory() as d:
        short = _wav(Path(d) / "short.wav", 8)
        longs = {m: _wav(Path(d) / f"long{m:g}.wav", 60 * m) for m in minutes}
        for name in args or DEFAULT:
            row = {"embedder": name, "8s": measure(name, short)}
            row.update({f"{60 * m:g}s": measure(name, p) for m, p in longs.items()})
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
