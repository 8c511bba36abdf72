"""Sharded runs (issue 14): torchrun ranks and offline shards give the one-process
results, a killed rank resumes, concurrent cache writers stay valid.

The subprocess tests share one tiny synthfoley set (8 clips of 1 s at 32 px) and the
cheap metrics fd_melstat and av_align; torch.distributed runs on gloo, one CPU thread
per rank. Killing a rank uses the test hook FOLEYBENCH_TEST_SIGKILL=STAGE:RANK:K
(foleybench.distributed.fault_point): that rank SIGKILLs itself at its K-th clip.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import distributed
from foleybench.api import FoleybenchError, InputError

PY = sys.executable
MODEL = "deepfusion.tiny"
METRICS = "fd_melstat,av_align"
COMPARED = ("value", "ci", "n", "excluded", "extras", "provenance", "proxy", "options")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID",
                        "FOLEYBENCH_TEST_SIGKILL")}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra})
    return env


def _fb(args: list[str], cwd: Path, nproc: int = 1, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    launcher = ([PY, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [PY])
    r = subprocess.run(launcher + ["-m", "foleybench", *args], cwd=cwd, env=_env(**env), capture_output=True,
                       text=True, timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _gen(out: str, cwd: Path, nproc: int = 1, **kw) -> subprocess.CompletedProcess:
    return _fb(["generate", "--task", "v2a", "--model", MODEL, "--data", "data", "--out", out, "--device", "cpu"],
               cwd, nproc, **kw)


def _score(pred: str, out: str, cwd: Path, nproc: int = 1, extra: tuple[str, ...] = (),
           **kw) -> subprocess.CompletedProcess:
    return _fb(["score", "--task", "v2a", "--pred", pred, "--ref", "data", "--metrics", METRICS, "--out", out,
                "--device", "cpu", "--proxy", "--quiet", *extra], cwd, nproc, **kw)


def _media(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.wav"))}


def _same_results(a: dict, b: dict) -> None:
    assert list(a["metrics"]) == list(b["metrics"])
    for m in a["metrics"]:
        for k in COMPARED:
            assert a["metrics"][m].get(k) == b["metrics"][m].get(k), (m, k)
    assert a["pairing"] == b["pairing"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted one-process run: data, generated media, results."""
    d = tmp_path_factory.mktemp("dist")
    _fb(["synth", "--out", "data", "--clips", "8", "--duration", "1", "--size", "32"], d)
    _gen("gen1", d)
    _score("gen1", "one.json", d, extra=("--no-cache",))
    doc = json.loads((d / "one.json").read_text())
    assert doc["distributed"]["world_size"] == 1 and doc["pairing"]["n_scored_pairs"] == 8
    return {"dir": d, "media": _media(d / "gen1"), "doc": doc}


# ------------------------------------------------------------------------------ unit
def test_shard_rule_is_a_partition_by_clip_id() -> None:
    ids = [f"clip_{i:04d}" for i in range(500)] + ["café", "ü-ñ"]
    for n in (1, 2, 3, 8):
        shards = [distributed.mine(ids, distributed.DistEnv(r, n), str) for r in range(n)]
        flat = [c for s in shards for c in s]
        assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))  # disjoint, complete
        if n > 1:
            assert all(len(s) > 0.5 * len(ids) / n for s in shards)  # no shard starved
    # the documented rule, computed here independently; NFC and NFD spellings agree
    cid = "cafe\u0301"
    want = int(hashlib.sha256(unicodedata.normalize("NFC", cid).encode()).hexdigest()[:16], 16) % 7
    assert distributed.shard_of(cid, 7) == want == distributed.shard_of("caf\u00e9", 7)


def test_environment_and_shard_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.env_from_environ() == distributed.DistEnv(0, 1, 0)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # set in a batch script too: not a step of 4 ranks
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert distributed.env_from_environ() == distributed.DistEnv(0, 1, 0)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert distributed.env_from_environ() == distributed.DistEnv(3, 4, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.env_from_environ() == distributed.DistEnv(1, 2, 0)  # torchrun's win
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(FoleybenchError, match="rank 2 is not within world size 2"):
        distributed.env_from_environ()
    assert distributed.parse_shard("1/3") == distributed.DistEnv(1, 3, 0, offline=True)
    for bad in ("3/3", "1", "a/2", "-1/2"):
        with pytest.raises(FoleybenchError, match="--shard"):
            distributed.parse_shard(bad)


def test_device_auto_is_cuda_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    from foleybench.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(distributed, "_CURRENT", distributed.DistEnv(5, 8, 2))
    assert resolve_device("auto") == "cuda:2" and resolve_device("cuda") == "cuda:2"
    assert resolve_device("cuda:3") == "cuda:3"  # an explicit index is kept
    monkeypatch.setattr(distributed, "_CURRENT", distributed.DistEnv(0, 1, 0))
    assert resolve_device("auto") == "cuda"


def test_oom_halves_the_batch_and_says_so(capsys: pytest.CaptureFixture) -> None:
    calls = []

    def fake_gpu(items: list[int]) -> list[int]:
        calls.append(len(items))
        if len(items) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return [x * 10 for x in items]

    assert distributed.halving(fake_gpu, list(range(7)), "test batch") == [x * 10 for x in range(7)]
    assert calls[0] == 7 and max(calls[1:]) <= 4 and sum(c for c in calls if c <= 2) == 7
    assert "CUDA out of memory on a test batch of 7; retrying as 4 + 3" in capsys.readouterr().err

    def never_fits(items: list[int]) -> list[int]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        distributed.halving(never_fits, [1, 2], "test batch")


def test_embedding_batches_are_halved_on_oom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real cache loop: an injected OOM at batch 4 gives the same embeddings."""
    from foleybench import cache, media
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import get_embedder

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(str(media.write_wav(tmp_path / f"c{i}.wav", rng.uniform(-.5, .5, (1, 8000)), 16000)))
    ctx = ScoreContext(device="cpu", batch_size=4, cache_dir=None)
    emb = get_embedder("melstat", ctx)
    want = cache.embed_files(emb, paths, ctx)
    real = emb.embed_inputs

    def small_gpu(inputs):
        if len(inputs) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(inputs)

    monkeypatch.setattr(emb, "embed_inputs", small_gpu)
    got = cache.embed_files(emb, paths, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(want, got))


def test_decoding_in_worker_processes_gives_the_same_embeddings(tmp_path: Path) -> None:
    """--num-workers > 0: decoding runs in DataLoader workers (prefetching while the
    network runs); the embeddings, their order and a bad file's exclusion are unchanged."""
    from foleybench import cache, media
    from foleybench.api import ScoreContext
    from foleybench.metrics.embedders import get_embedder

    rng = np.random.default_rng(1)
    paths = [str(media.write_wav(tmp_path / f"c{i}.wav", rng.uniform(-.5, .5, (1, 4000 + 800 * i)), 16000))
             for i in range(5)]
    (tmp_path / "bad.wav").write_bytes(b"RIFF not audio")
    paths.insert(2, str(tmp_path / "bad.wav"))
    outs = []
    for workers in (0, 2):
        ctx = ScoreContext(device="cpu", batch_size=2, cache_dir=None, num_workers=workers)
        outs.append(cache.embed_files(get_embedder("melstat", ctx), paths, ctx))
    assert isinstance(outs[0][2], InputError) and isinstance(outs[1][2], InputError)
    assert all(np.array_equal(a, b) for i, (a, b) in enumerate(zip(*outs)) if i != 2)


def test_state_file_roundtrip_and_bad_files(tmp_path: Path) -> None:
    from foleybench.metrics.base import Excluded

    state = {"rank": 0, "rows": {"a": (np.arange(6, dtype=np.float32).reshape(2, 3), 1.5)},
             "excluded": {"b": Excluded("no peaks", "no_peaks")}, "n": np.float64(2.0)}
    p = distributed.write_state(tmp_path / "s.state", state)
    back = distributed.read_state(p)
    assert np.array_equal(back["rows"]["a"][0], state["rows"]["a"][0]) and back["excluded"] == state["excluded"]
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0xFF
    (tmp_path / "bad.state").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="bad.state.*checksum mismatch"):
        distributed.read_state(tmp_path / "bad.state")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="x.json.*not a foleybench shard state"):
        distributed.read_state(tmp_path / "x.json")
    # a payload naming anything but plain data is refused, checksum or not
    import pickle

    evil = pickle.dumps({"x": os.getcwd}, protocol=4)  # a callable: what an attack would name
    blob = (distributed.STATE_SCHEMA.encode() + b"\n" + hashlib.sha256(evil).hexdigest().encode() + b"\n" + evil)
    (tmp_path / "evil.state").write_bytes(blob)
    with pytest.raises(InputError, match="not allowed in a shard state"):
        distributed.read_state(tmp_path / "evil.state")


def _hammer(root: str, key: str, seed: int, n: int) -> None:
    from foleybench.cache import EmbeddingCache

    c = EmbeddingCache(root)
    value = np.arange(4096, dtype=np.float32).reshape(64, 64)
    for _ in range(n):
        c.put(key, value)
        got = c.get(key)
        assert got is None or np.array_equal(got, value)


def test_concurrent_writers_of_one_cache_key(tmp_path: Path) -> None:
    from foleybench import cache

    key = "ab" + "0" * 62
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), key, i, 60)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4  # every read in every writer saw a whole entry
    cache.take_repairs()
    got = cache.EmbeddingCache(tmp_path).get(key)
    assert got is not None and got.shape == (64, 64) and not cache.take_repairs()
    assert sorted(p.name for p in (tmp_path / "ab").iterdir()) == [f"{key}.fbe"]  # no temp left behind


# ------------------------------------------------------------------------------ runs
@pytest.mark.slow  # several torchrun/process launches (~5 s of imports each)
def test_torchrun_two_ranks_match_one_process(base: dict) -> None:
    d = base["dir"]
    _gen("gen2", d, nproc=2)
    assert _media(d / "gen2") == base["media"]  # byte-identical files
    idx = json.loads((d / "gen2" / "generation.json").read_text())
    assert idx["generated"] == 8 and idx["distributed"]["world_size"] == 2
    assert idx["distributed"]["shard_rule"] == distributed.SHARD_RULE
    _score("gen1", "two.json", d, nproc=2, extra=("--no-cache",))
    two = json.loads((d / "two.json").read_text())
    _same_results(base["doc"], two)
    assert two["distributed"] == {"world_size": 2, "shard_rule": distributed.SHARD_RULE,
                                  "mode": "torch.distributed"}
    assert not list(d.glob("two.json.*"))  # rank 1 wrote nothing of its own


@pytest.mark.slow  # several torchrun/process launches (~5 s of imports each)
def test_offline_shards_merge_to_the_one_process_results(base: dict) -> None:
    d = base["dir"]
    for i in (0, 1):
        _score("gen1", f"s{i}.state", d, extra=("--no-cache", "--shard", f"{i}/2"))
    _fb(["merge", "s1.state", "s0.state", "--out", "merged.json"], d)
    merged = json.loads((d / "merged.json").read_text())
    _same_results(base["doc"], merged)
    assert merged["distributed"]["mode"] == "offline shards + merge"
    r = _fb(["merge", "s0.state", "s0.state", "--out", "bad.json"], d, check=False)
    assert r.returncode == 2 and "merge needs shards 0..1 of 2, each once" in r.stderr
    assert not (d / "bad.json").exists()
    # generation shards: each job writes its clips and its own index; together, the one-process files
    for i in (0, 1):
        _fb(["generate", "--task", "v2a", "--model", MODEL, "--data", "data", "--out", "gens", "--device", "cpu",
             "--shard", f"{i}/2"], d)
    assert _media(d / "gens") == base["media"]
    counts = [json.loads((d / "gens" / f"generation.shard-{i}-of-2.json").read_text())["generated"] for i in (0, 1)]
    assert sum(counts) == 8 and min(counts) > 0


@pytest.mark.slow  # several torchrun/process launches (~5 s of imports each)
def test_killed_rank_resumes_to_identical_outputs(base: dict) -> None:
    d = base["dir"]
    # generate: rank 1 dies (SIGKILL) after writing its 2nd file; torchrun ends the run
    r = _gen("genk", d, nproc=2, check=False, FOLEYBENCH_TEST_SIGKILL="generate:1:2")
    assert r.returncode != 0
    partial = _media(d / "genk")
    assert 2 <= len(partial) < 8 and all(base["media"][k] == v for k, v in partial.items())
    assert not [p for p in (d / "genk").iterdir() if p.suffix == ".wav" and p.name.startswith(".")]
    _gen("genk", d, nproc=2)
    assert _media(d / "genk") == base["media"]
    idx = json.loads((d / "genk" / "generation.json").read_text())
    assert idx["resumed"] == len(partial) and idx["generated"] == 8 - len(partial)
    # score: rank 1 dies after its 2nd computed embedding; the rerun resumes from the cache
    r = _score("genk", "killed.json", d, nproc=2, check=False, extra=("--cache-dir", "cache"),
               FOLEYBENCH_TEST_SIGKILL="score:1:2")
    assert r.returncode != 0 and not (d / "killed.json").exists()
    cached = len(list((d / "cache").rglob("*.fbe")))
    assert cached >= 2  # work done before the kill is kept
    _score("genk", "killed.json", d, nproc=2, extra=("--cache-dir", "cache"))
    _same_results(base["doc"], json.loads((d / "killed.json").read_text()))


@pytest.mark.slow  # two bench runs
def test_bench_under_torchrun_writes_the_one_process_leaderboard(tmp_path: Path) -> None:
    spec = tmp_path / "tinydist.yaml"
    spec.write_text("name: tinydist\ntitle: tiny\ndescription: |\n  four clips\n"
                    "dataset: {name: synthfoley, clips: 4, seed: 0}\nproxy: true\nseed: 0\nclip_seconds: null\n"
                    "tasks:\n  v2a:\n    models: [noise]\n    metrics: [av_align, fd_melstat]\n")
    for n, d in ((1, "b1"), (2, "b2")):
        _fb(["bench", str(spec), "--runs", f"{d}/runs", "--leaderboard", f"{d}/lb", "--quiet", "--device", "cpu"],
            tmp_path, nproc=n)
    one, two = (json.loads((tmp_path / d / "lb" / "tinydist.json").read_text()) for d in ("b1", "b2"))
    assert one["values"] == two["values"] and one["values"]["v2a"]["noise"]["fd_melstat"] is not None
    assert (tmp_path / "b1/lb/tinydist.md").read_text() == (tmp_path / "b2/lb/tinydist.md").read_text()
    res = json.loads((tmp_path / "b2/runs/tinydist/results/v2a__noise.json").read_text())
    assert res["distributed"]["world_size"] == 2
