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
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
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


def main(args: list[str]) -> int:
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
