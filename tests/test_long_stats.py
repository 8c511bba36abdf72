"""A long input's frame-level rows reduced to statistics while they stream (issue 15, item
7): FD, its bootstrap interval, the value memo and the embedding cache take a clip's rows
or its statistics, and the two agree to float64 rounding. Short clips (every benchmark
clip) keep the rows path, bit for bit.

The memory figures are measured by ``benchmarks/perf_memory.py`` and the CLI runs in
docs/PROTOCOL.md ("Long inputs"); here thresholds and chunk sizes are shrunk so inputs of
a few seconds take every branch.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import soundfile as sf

from foleybench import cache as C
from foleybench import media_long
from foleybench.api import ScoreContext
from foleybench.metrics import frechet_state as fs
from foleybench.metrics.functional import frechet as F

D = 8


def _rows(rng, n: int, shift: float = 0.0) -> np.ndarray:
    # a large mean against the spread: the case centring exists for
    return (rng.standard_normal((n, D)) @ rng.standard_normal((D, D)) + 50.0 + shift).astype(np.float32)


def test_chan_merge_of_blocks_equals_one_shot_statistics():
    rng = np.random.default_rng(0)
    x = _rows(rng, 1001)
    mu, cov = fs.centred_stats(x.astype(np.float64))
    for block in (1, 7, 64, 1000, 5000):
        st = fs.RowStats(D).add_rows(x, block=block)
        assert st.count == 1001
        np.testing.assert_allclose(st.mean, mu, rtol=1e-13, atol=0)
        np.testing.assert_allclose(st.cov(), cov, rtol=1e-10, atol=1e-12)
    # merging separately reduced parts, in order, is the statistics of their concatenation
    parts = [x[:3], x[3:400], x[400:401], x[401:]]
    merged = fs.RowStats(D)
    for p in parts:
        merged.add_stats(fs.RowStats(D).add_rows(p))
    np.testing.assert_allclose(merged.cov(ddof=0), fs.centred_stats(x.astype(np.float64), 0)[1], rtol=1e-10,
                               atol=1e-12)
    # the packed form round-trips and is told apart from rows
    packed = merged.pack()
    assert fs.is_clip_stats(packed, D) and not fs.is_clip_stats(x, D) and not fs.is_clip_stats(packed, D + 1)
    back = fs.RowStats.unpack(packed)
    assert back.count == 1001 and np.array_equal(back.scatter, merged.scatter)
    assert fs.item_count(packed, D) == fs.item_count(x, D) == 1001
    assert not fs.is_clip_stats(x.astype(np.float64)[:D + 2], D)  # float64 rows are not statistics


def _fd_metric(ctx, n_boot=50):
    from foleybench.metrics.fd import FDMetric

    m = FDMetric(ctx, embedder="melstat", n_boot=n_boot)
    m.dim = D  # the rows below are D-dimensional; nothing is embedded here
    return m


def _clips(seed: int = 1, n: int = 6):
    rng = np.random.default_rng(seed)
    return {f"c{i:02d}": (_rows(rng, 20 + 37 * i, 0.3 * i), _rows(rng, 15 + 11 * i)) for i in range(n)}


@pytest.mark.parametrize("sufficient", [True, False])
def test_fd_and_interval_from_statistics_equal_the_rows_path(monkeypatch, sufficient):
    """Some clips' sides as statistics (a mix of rows and statistics on both sides): the FD,
    its bootstrap interval and the frame counts equal the all-rows result to float64
    rounding; with no statistics the result is the rows path's, bit for bit. Both bootstrap
    routes: per-clip sufficient sums, and the per-draw route beyond their memory cap."""
    if not sufficient:
        monkeypatch.setattr(F, "_SUFFICIENT_MAX", 0)
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None, seed=3)
    clips = _clips()
    rows_m = _fd_metric(ctx)
    rows_m.rows = dict(clips)
    want = rows_m.compute()
    mixed = _fd_metric(ctx)
    mixed.rows = {cid: (fs.RowStats(D).add_rows(g).pack() if i % 2 else g,
                        fs.RowStats(D).add_rows(r).pack() if i % 3 == 0 else r)
                  for i, (cid, (g, r)) in enumerate(clips.items())}
    got = mixed.compute()
    assert got.n == want.n == 6
    assert got.extras["n_frames_gen"] == want.extras["n_frames_gen"]
    assert got.extras["n_frames_ref"] == want.extras["n_frames_ref"]
    assert want.value > 1.0
    assert got.value == pytest.approx(want.value, rel=1e-9)
    assert got.ci is not None and want.ci is not None and want.ci[1] > want.ci[0]
    assert got.ci == pytest.approx(want.ci, rel=1e-9)
    again = _fd_metric(ctx)
    again.rows = dict(clips)
    assert again.compute().value == want.value  # rows only: deterministic, the rows path


def test_value_memo_serves_statistics_and_keeps_them_apart_from_rows(tmp_path):
    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=str(tmp_path), seed=0)
    clips = _clips(n=4)
    stats = {cid: (fs.RowStats(D).add_rows(g).pack(), r) for cid, (g, r) in clips.items()}
    a = _fd_metric(ctx)
    a.rows = dict(stats)
    first = a.compute()
    assert list((tmp_path / "values").rglob("*.json"))
    b = _fd_metric(ctx)
    b.rows = dict(stats)
    assert b.compute() == first  # served by the memo, same bits
    _, key_stats = a._memo([a._item(g) for g, _ in stats.values()], [a._item(r) for _, r in stats.values()],
                           list(stats.values()))
    _, key_rows = a._memo([g for g, _ in clips.values()], [r for _, r in clips.values()], list(clips.values()))
    assert key_stats != key_rows


def test_fd_infinity_says_why_it_is_missing_for_statistics():
    from foleybench.metrics.fd import FDMetric

    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=None)
    m = FDMetric(ctx, embedder="melstat", n_boot=0, fd_inf=True)
    m.dim = D
    m.rows = {cid: (fs.RowStats(D).add_rows(g).pack(), r) for cid, (g, r) in _clips(n=3).items()}
    got = m.compute()
    assert got.value is not None and got.extras["fd_inf"] is None and "statistics" in got.extras["fd_inf_reason"]


def test_several_samples_with_a_long_one_pool_their_statistics():
    from foleybench.samples import _pool_side

    rng = np.random.default_rng(4)
    a, b = _rows(rng, 30), _rows(rng, 300, 1.0)
    pooled = _pool_side([a, fs.RowStats(D).add_rows(b).pack()])
    mu, cov = fs.centred_stats(np.concatenate([a, b]).astype(np.float64))
    st = fs.RowStats.unpack(pooled)
    assert st.count == 330
    np.testing.assert_allclose(st.mean, mu, rtol=1e-13)
    np.testing.assert_allclose(st.cov(), cov, rtol=1e-10, atol=1e-12)
    assert np.array_equal(_pool_side([a, b]), np.concatenate([a, b]))


# ----------------------------------------------------------------------------- cache entries
def _stats_entry(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return C._MAGIC + hashlib.sha256(buf.getvalue()).digest() + buf.getvalue()


def test_statistics_entries_round_trip_and_every_damage_is_named(tmp_path):
    c = C.EmbeddingCache(tmp_path)
    packed = fs.RowStats(D).add_rows(_rows(np.random.default_rng(0), 50)).pack()
    c.put("cd" * 32, packed)
    got = c.get("cd" * 32, "stats")
    assert got.dtype == np.float64 and np.array_equal(got, packed)
    nan = packed.copy()
    nan[3, 2] = np.nan
    neg = packed.copy()
    neg[2, 0] = -1.0
    head = packed.copy()
    head[0, 0] = 0.5
    cases = [(nan, "non-finite"), (neg, "negative variance"), (head, "header"),
             (packed.astype(np.float32), "expected float64"), (packed[:, :-1].copy(), "not statistics")]
    for bad, why in cases:
        v, problem = C.EmbeddingCache._problem(_stats_entry(bad), "stats")
        assert v is None and why in problem, (why, problem)
    # a rows entry (float32) is never taken for statistics, nor statistics for rows
    assert "expected float64" in C.EmbeddingCache._problem(_stats_entry(np.ones((4, D), np.float32)), "stats")[1]
    assert "expected float32" in C.EmbeddingCache._problem(_stats_entry(packed), "rows")[1]


def _long_wav(path, seconds: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal((int(seconds * 22050), 2)) + 0.02).astype(np.float32),
             22050, subtype="FLOAT")
    return str(path)


@pytest.fixture()
def short_long(monkeypatch):
    """Files above 2 s count as long; EnCodec's conv chunks of 0.5 s and LSTM steps of 50
    latent frames, so a 4 s file takes the streamed, chunked, statistics route."""
    import torch

    from foleybench.metrics.embedders.encodec import EnCodec

    torch.set_num_threads(1)
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 2.0)
    monkeypatch.setattr(EnCodec, "chunk_samples", 24000 // 2)
    monkeypatch.setattr(EnCodec, "LATENT_CHUNK", 50)


def test_encodec_streams_statistics_equal_to_its_rows_and_caches_them(tmp_path, short_long, capsys):
    """EnCodec reduces a long input's latents to statistics step by step: those of its rows
    to float64 rounding. Cached as a statistics entry; a damaged one is reported, recomputed
    and replaced like a damaged rows entry. A short input stays rows."""
    from foleybench.cache import embed_files, take_repairs
    from foleybench.metrics.embedders import get_embedder

    ctx = ScoreContext(device="cpu", proxy=True, cache_dir=str(tmp_path / "cache"), batch_size=1)
    emb = get_embedder("encodec", ctx)
    long, short = _long_wav(tmp_path / "long.wav", 4.3, 1), _long_wav(tmp_path / "short.wav", 1.5, 2)
    x = emb.load_input(long, ctx)
    assert emb.wants_stats(x) and not emb.wants_stats(emb.load_input(short, ctx))
    # a streamed input no longer than LEAN_ABOVE_S (a file whose headers give no length) stays rows
    streamed_short = media_long.LongAudio(short, 24000, media_long.scan_audio(short), None)
    assert not emb.wants_stats(streamed_short)
    rows = emb.embed_inputs([x])[0]
    got, short_rows = embed_files(emb, [long, short], ctx, stats=True)
    assert fs.is_clip_stats(got, 128) and short_rows.dtype == np.float32 and short_rows.ndim == 2
    st = fs.RowStats.unpack(got)
    mu, cov = fs.centred_stats(rows.astype(np.float64))
    assert st.count == len(rows) > 300
    np.testing.assert_allclose(st.mean, mu, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st.cov(), cov, rtol=1e-9, atol=1e-13 * np.abs(cov).max())
    entries = sorted((tmp_path / "cache").rglob("*.fbe"))
    assert len(entries) == 2  # one statistics entry, one rows entry
    take_repairs()
    again = embed_files(emb, [long], ctx, stats=True)[0]
    assert np.array_equal(again, got) and take_repairs() == []
    # damage the statistics entry's payload behind an intact header
    stats_entry = next(p for p in entries if C.EmbeddingCache._problem(p.read_bytes(), "stats")[1] == "")
    raw = bytearray(stats_entry.read_bytes())
    raw[-9] ^= 0xFF
    stats_entry.write_bytes(bytes(raw))
    capsys.readouterr()
    fixed = embed_files(emb, [long], ctx, stats=True)[0]
    repairs = take_repairs()
    assert [p for p, _ in repairs] == [str(stats_entry)] and "checksum mismatch" in repairs[0][1]
    assert str(stats_entry) in capsys.readouterr().err
    assert np.array_equal(fixed, got)
    assert C.EmbeddingCache(tmp_path / "cache")._problem(stats_entry.read_bytes(), "stats")[1] == ""
    # a plain embed call (the `embed` command) never sees statistics
    assert embed_files(emb, [long], ctx)[0].shape == rows.shape


def test_cli_long_input_gives_the_rows_path_fd(tmp_path, short_long, monkeypatch):
    """A long prediction through `foleybench score`: fd_encodec (value, interval, frame
    counts) from streamed statistics equals the rows path's to float64 rounding, written and
    then read from the cache."""
    from foleybench.cli import main

    ref, pred = tmp_path / "ref", tmp_path / "pred"
    assert main(["synth", "--out", str(ref), "--clips", "3", "--seed", "2", "--duration", "1.5"]) == 0
    pred.mkdir()
    ids = sorted(p.stem for p in ref.glob("*.mp4"))
    for i, cid in enumerate(ids):
        _long_wav(pred / f"{cid}.wav", 4.3 if i == 0 else 1.5, 10 + i)

    def score(tag: str, *extra: str) -> dict:
        out = tmp_path / f"{tag}.json"
        assert main(["score", "--task", "v2a", "--pred", str(pred), "--ref", str(ref), "--metrics", "fd_encodec",
                     "--proxy", "--device", "cpu", "--quiet", "--out", str(out), *extra]) == 0
        return json.loads(out.read_text())["metrics"]["fd_encodec"]

    got = score("stats", "--cache-dir", str(tmp_path / "cache"))
    cached = score("cached", "--cache-dir", str(tmp_path / "cache"))
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 1000.0)  # nothing is long: every clip stays rows
    want = score("rows", "--no-cache")
    assert want["n"] == got["n"] == 3
    assert got["extras"]["n_frames_gen"] == want["extras"]["n_frames_gen"] > 3 * 110
    assert got["value"] == pytest.approx(want["value"], rel=1e-8)
    assert got["ci"] == pytest.approx(want["ci"], rel=1e-8)
    assert cached["value"] == got["value"] and cached["ci"] == got["ci"]


def test_window_reader_never_holds_the_gap_between_windows():
    """Windows far apart (ImageBind's three clips, DeSync's first and last windows of a long
    file): the blocks in between are skipped, never kept, and every window is the array's."""
    x = np.arange(100_000, dtype=np.float32)
    blocks = [x[i:i + 1000] for i in range(0, len(x), 1000)]
    seen = []

    def counted():
        for b in blocks:
            seen.append(len(b))
            yield b

    r = media_long.WindowReader(counted(), len(x))
    for lo, hi in [(0, 500), (40_250, 42_000), (41_000, 41_100), (98_500, 100_000), (99_999, 100_000)]:
        assert np.array_equal(r.get(lo, hi), x[lo:hi]), (lo, hi)
        held = r._buf if r._buf.base is None else r._buf.base  # the buffer a window view keeps alive
        assert held.size <= (hi - lo) + 2 * 1000, (lo, hi, held.size)  # one window plus a block, not the gap
    assert sum(seen) == len(x)
