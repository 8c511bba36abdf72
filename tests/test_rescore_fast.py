"""A fully cached re-score does only what the cache cannot (issue #16, item 1).

- end to end, in fresh processes as a user runs it: the second ``foleybench score`` of the
  same predictions imports no torch (nor torchaudio, librosa, cv2, scipy.special) and
  writes the first run's results value for value;
- the bootstrap draws, evaluated in threads, are bit-identical to the serial route
  (kept below as it was written before);
- kl's numpy log_softmax is scipy.special.log_softmax to the last bit;
- the value memo never trusts a damaged or foreign entry.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg  # noqa: F401  (loaded before any BLAS limit, so the limit reaches scipy's BLAS too)

from foleybench.cache import ValueMemo
from foleybench.metrics.functional import frechet as F
from foleybench.metrics.functional.kl import log_softmax

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchaudio", "librosa", "cv2", "open_clip", "scipy.special")

# Runs the CLI in this process and, at exit, writes which heavy modules were imported.
_HOOK = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
heavy = {heavy!r}
atexit.register(lambda: open(out, "w").write(json.dumps([m for m in heavy if m in sys.modules])))
sys.argv[0] = "foleybench"
runpy.run_module("foleybench.cli", run_name="__main__", alter_sys=True)
"""


def _score(tmp: Path, data: Path, pred: Path, tag: str) -> tuple[dict, list[str]]:
    env = {**os.environ, "FOLEYBENCH_CACHE": str(tmp / "fbcache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    out, mods = tmp / f"{tag}.json", tmp / f"{tag}.modules.json"
    cmd = [sys.executable, "-c", _HOOK.format(heavy=HEAVY), str(mods), "score", "--task", "v2a",
           "--pred", str(pred), "--ref", str(data), "--metrics", "fd_vggish,fd_panns,kl_panns,fd_melstat", "--proxy",
           "--device", "cpu", "--cache-dir", str(tmp / "cache"), "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text()), json.loads(mods.read_text())


def _values(doc: dict) -> dict:
    """Each metric's result without its timing."""
    return {name: {k: v for k, v in m.items() if k != "seconds"} for name, m in doc["metrics"].items()}


def test_cached_rescore_imports_no_torch_and_repeats_values(tmp_path):
    from foleybench.datasets.synthfoley import SynthConfig
    from foleybench.datasets.synthfoley import generate as synth
    from foleybench.runner import generate

    manifest = synth(tmp_path / "data", 4, seed=5, cfg=SynthConfig(duration_s=2.0))
    generate("v2a", "noise", manifest, tmp_path / "pred", seed=0, device="cpu")
    first, mods_first = _score(tmp_path, manifest.root, tmp_path / "pred", "first")
    assert "torch" in mods_first  # the networks ran: the check below can tell the difference
    again, mods_again = _score(tmp_path, manifest.root, tmp_path / "pred", "again")
    assert mods_again == [], f"a fully cached re-score imported {mods_again}"
    assert set(_values(first)) == {"fd_vggish", "fd_panns", "kl_panns", "fd_melstat"}
    assert all(m["value"] is not None for m in _values(first).values())
    assert json.dumps(_values(again)) == json.dumps(_values(first))  # same values, same bits, same order
    assert list((tmp_path / "cache" / "values").rglob("*.json"))  # the Frechet results were memoised


# ----------------------------------------------------------------------- bootstrap
def _serial_bootstrap(gen, ref, n_boot, rng, ddof):
    """The draws as evaluated before they went to threads (verbatim, the reference)."""
    def suff(blocks):
        rows = [np.asarray(b, dtype=np.float64).reshape(len(b), -1) for b in blocks]
        cnt = np.array([len(b) for b in rows], dtype=np.float64)
        sums = np.stack([b.sum(0) for b in rows])
        outer = np.stack([b.T @ b for b in rows]).reshape(len(rows), -1)
        return cnt, sums, outer

    sides = [suff(gen), suff(ref)]
    n = len(gen)
    vals = []
    with F._blas_limit(True):
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            w = np.bincount(idx, minlength=n).astype(np.float64)
            stats = []
            for cnt, sums, outer in sides:
                k = float(w @ cnt)
                if k < 2:
                    break
                mu = (w @ sums) / k
                d = mu.shape[0]
                scatter = (w @ outer).reshape(d, d) - k * np.outer(mu, mu)
                stats.append((mu, scatter / (k - ddof)))
            if len(stats) < 2:
                continue
            (mu_g, s_g), (mu_r, s_r) = stats
            vals.append(F.frechet_distance(mu_g, s_g, mu_r, s_r))
    return vals


def _clips(seed, n, frames, d, scale=1.0, shift=0.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((f, d)) * scale + shift).astype(np.float32) for f in frames(n, rng)]


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("case", ["frames", "clips", "uneven"])
def test_threaded_bootstrap_draws_are_bit_identical_to_serial(case, threads, monkeypatch):
    monkeypatch.setenv("FOLEYBENCH_BOOTSTRAP_THREADS", threads)
    if case == "frames":  # VGGish-like: 8 frames per clip, D = 128
        gen = _clips(1, 24, lambda n, r: [8] * n, 128, 3.0, 1.0)
        ref = _clips(2, 24, lambda n, r: [8] * n, 128)
        ddof, n_boot = 1, 60
    elif case == "clips":  # one row per clip, D = 32: singular draws (eigh route) too
        gen = _clips(3, 20, lambda n, r: [1] * n, 32, 2.0)
        ref = _clips(4, 20, lambda n, r: [1] * n, 32)
        ddof, n_boot = 0, 80
    else:  # 1 to 12 frames per clip, D = 64
        gen = _clips(5, 16, lambda n, r: r.integers(1, 13, n), 64, 1.5)
        ref = _clips(6, 16, lambda n, r: r.integers(1, 13, n), 64)
        ddof, n_boot = 1, 50
    want = _serial_bootstrap(gen, ref, n_boot, np.random.default_rng(7), ddof)
    got = F._bootstrap_sufficient(gen, ref, n_boot, np.random.default_rng(7), ddof)
    assert len(want) == n_boot
    assert np.array_equal(np.array(got), np.array(want))  # every draw, to the last bit
    assert F.bootstrap_fd(gen, ref, n_boot, 7, ddof) == tuple(np.percentile(want, [2.5, 97.5]))


# ----------------------------------------------------------------------- log_softmax
def test_numpy_log_softmax_is_scipys_to_the_last_bit():
    from scipy.special import log_softmax as scipy_log_softmax

    rng = np.random.default_rng(0)
    cases = [rng.standard_normal((16, 527)) * s for s in (1e-3, 1.0, 30.0, 1e4)]
    cases += [np.array([[1000.0, 1.0, -1000.0], [0.0, 0.0, 0.0]]), rng.standard_normal((1, 1)),
              (rng.standard_normal((5, 7)) * 50).astype(np.float32)]
    for x in cases:
        for axis in (1, 0, -1):
            ours, theirs = log_softmax(x, axis=axis), scipy_log_softmax(x, axis=axis)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
            assert np.array_equal(ours, theirs), (x.shape, axis)


# ----------------------------------------------------------------------- value memo
def test_value_memo_round_trips_bits_and_refuses_bad_entries(tmp_path):
    memo = ValueMemo(tmp_path)
    key = "ab" + "0" * 62
    value = {"value": 0.1 + 0.2, "ci": [1 / 3, 2 / 3], "extras": {"n_boot": 200, "seed": 0, "unit": "clips"}}
    assert memo.get(key) is None
    memo.put(key, value)
    got = memo.get(key)
    assert got == value and list(got["extras"]) == ["n_boot", "seed", "unit"]  # order kept
    path = tmp_path / "values" / "ab" / f"{key}.json"
    path.write_text(path.read_text()[:-5])  # truncated
    assert memo.get(key) is None
    other = "ab" + "1" * 62
    path.write_text(json.dumps({"key": other, "value": value}))  # another key's entry under this name
    assert memo.get(key) is None
    memo.put(key, {"value": float("nan")})  # NaN != NaN: not stored, recomputed next time
    assert memo.get(key) is None


# ----------------------------------------------------------------------- deferred networks
def test_deferred_network_keeps_the_proxy_memo_key_and_builds_the_same_class(monkeypatch):
    monkeypatch.delenv("FOLEYBENCH_EAGER_PROXY", raising=False)
    from foleybench.metrics.embedders import base, panns, vggish

    for name, cls, target in [("vggish", vggish.VGGishNet, "foleybench.metrics.embedders.vggish:VGGishNet"),
                              ("panns", panns.Cnn14, "foleybench.metrics.embedders.panns:Cnn14")]:
        lazy = base.Deferred(target)
        assert base._memo_key(name, lazy, 3) == base._memo_key(name, cls, 3)  # memo entries still match
        assert lazy.resolve() is cls
    import torch

    monkeypatch.delitem(sys.modules, "torch")  # as in a process that has not imported it: read from the file
    assert base._torch_version() == str(torch.__version__)
    with pytest.raises(Exception, match="package.module:QualName"):
        base.Deferred("no_colon_here")
