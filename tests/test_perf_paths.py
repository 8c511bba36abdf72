"""Fast paths of the performance work: lazy proxy evaluators and the perf canary's rule."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from foleybench import media
from foleybench.api import FoleybenchError, ScoreContext
from foleybench.cache import embed_files
from foleybench.metrics.embedders import base, vggish

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def fb_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FOLEYBENCH_CACHE", str(tmp_path / "fbcache"))
    monkeypatch.delenv("FOLEYBENCH_EAGER_PROXY", raising=False)
    return tmp_path / "fbcache"


def test_cached_rescore_never_builds_the_proxy_network(fb_cache: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wavs = [str(media.write_wav(tmp_path / f"a{i}.wav", rng.normal(0, 0.1, (1, 16000)), 16000)) for i in range(3)]
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=str(tmp_path / "emb"))
    first = vggish.build(mode="proxy")
    assert first.built  # no memo yet: built to learn its digest, which is memoised
    assert (fb_cache / "proxy-sha256.json").is_file()
    want = embed_files(first, wavs, ctx)

    second = vggish.build(mode="proxy")  # a new process's view: digest known, nothing built
    assert not second.built and second.is_proxy
    assert second.checkpoint_sha256 == first.checkpoint_sha256
    got = embed_files(second, wavs, ctx)  # every embedding is a cache hit
    assert not second.built
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)

    third = vggish.build(mode="proxy")
    fresh = embed_files(third, wavs, ScoreContext(device="cpu", proxy=True, cache_dir=None))  # misses
    assert third.built
    for a, b in zip(fresh, want):
        np.testing.assert_array_equal(a, b)


def test_stale_memo_is_caught_at_build_and_corrected(fb_cache: Path) -> None:
    real = vggish.build(mode="proxy").checkpoint_sha256
    memo = fb_cache / "proxy-sha256.json"
    d = json.loads(memo.read_text())
    (key,) = [k for k in d if k.startswith("vggish|")]
    d[key] = "0" * 64
    memo.write_text(json.dumps(d))
    lazy = vggish.build(mode="proxy")
    assert not lazy.built and lazy.checkpoint_sha256 == "0" * 64
    with pytest.raises(FoleybenchError, match="memo"):
        lazy.embed_inputs([np.zeros(16000, np.float32)])
    assert json.loads(memo.read_text())[key] == real
    assert vggish.build(mode="proxy").checkpoint_sha256 == real


def test_eager_opt_out_and_closure_factories_build_at_once(fb_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vggish.build(mode="proxy")
    monkeypatch.setenv("FOLEYBENCH_EAGER_PROXY", "1")
    assert vggish.build(mode="proxy").built
    monkeypatch.delenv("FOLEYBENCH_EAGER_PROXY")
    b = base.build_net("tiny", lambda: __import__("torch").nn.Linear(2, 2), mode="proxy")
    assert not isinstance(b.net, base.LazyNet)  # a lambda may close over state: never memoised


def _canary():
    spec = importlib.util.spec_from_file_location("perf_canary", ROOT / "benchmarks" / "perf_canary.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_canary_warns_only_below_half_the_committed_ratio() -> None:
    c = _canary()
    committed = {"a.speedup": 10.0, "b.speedup": 10.0, "_machine": {"cpu": "x"}}
    w = c.compare({"a.speedup": 4.9, "b.speedup": 5.1, "c.speedup": 1.0}, committed)
    assert len(w) == 1 and "a.speedup" in w[0] and w[0].startswith("WARNING")


def test_canary_exits_zero_when_measuring_crashes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    c = _canary()
    monkeypatch.setattr(c, "measure", lambda: 1 / 0)
    monkeypatch.setenv("FOLEYBENCH_CANARY_OUT", str(tmp_path / "out.json"))
    assert c.main() == 0
    assert "WARNING: perf canary could not run" in capsys.readouterr().out
