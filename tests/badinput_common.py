"""Shared pieces of the bad-input corpus (tests/test_bad_input*.py), generated at test time.

One small synthfoley set (4 clips of 1 s), the ``noise`` baseline's predictions for it
(per-clip values that are not all zero), one clean score, and a shared embedding cache,
all session-scoped so that each case costs one in-process ``foleybench score``. A case
breaks one clip (or one input) and :func:`assert_isolated` checks what every case must:
the run completes, the bad id is on stderr and in the results, no other clip's value
moved.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from foleybench.cli import main

METRICS = "av_align,fd_melstat,kl_panns"
PER_CLIP = ("av_align", "kl_panns")  # metrics with per-clip values


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Any]:
    """{"ref": synth dir, "pred": noise predictions, "cache": dir, "clean": results, "ids": [...]}"""
    root = tmp_path_factory.mktemp("badinput")
    ref, pred, cache = root / "ref", root / "pred", root / "cache"
    assert main(["synth", "--out", str(ref), "--clips", "4", "--seed", "5", "--duration", "1"]) == 0
    assert main(["generate", "--task", "v2a", "--model", "noise", "--data", str(ref), "--out", str(pred),
                 "--device", "cpu"]) == 0
    (pred / "generation.json").unlink()
    out = root / "clean.json"
    assert main(["score", "--task", "v2a", "--pred", str(pred), "--ref", str(ref), "--metrics", METRICS,
                 "--proxy", "--cache-dir", str(cache), "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    clean = json.loads(out.read_text())
    # The cache as the clean run left it (cases add entries to "cache"; the cache cases damage a copy of this)
    shutil.copytree(cache, root / "cache_clean")
    return {"root": root, "ref": ref, "pred": pred, "cache": cache, "cache_clean": root / "cache_clean", "clean": clean,
            "ids": sorted(p.stem for p in pred.glob("*.wav"))}


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def score(capsys, pred: Path, ref: Path, out: Path, cache: Path, *extra: str,
          metrics: str = METRICS, task: str = "v2a") -> tuple[int, dict | None, str]:
    """Run ``foleybench score``; (exit code, results document or None, stderr)."""
    rc = main(["score", "--task", task, "--pred", str(pred), "--ref", str(ref), "--metrics", metrics, "--proxy",
               "--cache-dir", str(cache), "--device", "cpu", "--quiet", "--out", str(out), *extra])
    err = capsys.readouterr().err
    doc = json.loads(out.read_text(), parse_constant=_no_constant) if rc == 0 and out.is_file() else None
    return rc, doc, err


def _no_constant(name: str) -> Any:
    raise AssertionError(f"results JSON holds a bare {name}: it must be strict JSON")


def listed(doc: dict, cid: str) -> list[str]:
    """Where in the results ``cid`` is listed (pairing blocks and per-metric exclusions)."""
    p = doc["pairing"]
    where = [k for k in ("invalid_pred", "excluded_ref", "warnings") if cid in p.get(k, {})]
    where += [k for k in ("unpaired_pred", "missing_pred") if cid in p.get(k, [])]
    where += [f"{m}.excluded" for m, r in doc["metrics"].items() if any(e[0] == cid for e in r["excluded"])]
    return where


def per_clip(doc: dict) -> dict[str, dict[str, float]]:
    return {m: dict(doc["metrics"][m]["extras"].get("per_clip") or {}) for m in PER_CLIP}


def assert_isolated(rc: int, doc: dict | None, err: str, clean: dict, cid: str, *words: str,
                    changed_ok: tuple[str, ...] = ()) -> None:
    """The case contract: completed, ``cid`` on stderr with ``words`` and in the results,
    every other clip's per-clip values identical to the clean run's."""
    assert rc == 0, err
    assert doc is not None
    lines = [ln for ln in err.splitlines() if cid in ln]
    assert lines, f"{cid} not on stderr:\n{err}"
    for w in words:
        assert any(w.lower() in ln.lower() for ln in lines), f"{w!r} not said about {cid}:\n{err}"
    assert listed(doc, cid), f"{cid} not listed in the results"
    before, after = per_clip(clean), per_clip(doc)
    for m in PER_CLIP:
        for other, v in before[m].items():
            if other != cid and other not in changed_ok and other in after[m]:
                assert after[m][other] == v, (m, other)
        others = {k for k in before[m] if k != cid and k not in changed_ok}
        assert others <= set(after[m]), f"{m}: lost clips {others - set(after[m])}"


def write_wav(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """[N, C] float samples as ``path`` (any subtype, no clipping: the test decides)."""
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def error_line(err: str) -> str:
    """The one error line; asserts there is exactly one and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("foleybench: error: ")]
    assert len(lines) == 1, err
    return lines[0]
