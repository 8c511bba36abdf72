"""Scoring other systems' released samples (issue 13, item 4): explicit ``--pred-pattern``,
mp4 with muxed audio and flac/ogg/mp3 predictions, several samples per clip combined per
METRICS.md, every unmatched file reported, the protocol-length rule counted.

Fixtures are written with the harness's own writers (synthfoley references; predictions
as mp4 with a muxed AAC track, flac, ogg, mp3). Metrics: ``av_align`` (per-clip mean: a
clip's samples are averaged) and ``fd_melstat`` (a set metric: samples pooled), both
without weights, so the expected values are computed here from the metric's own
single-sample runs and the embeddings.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from foleybench import media
from foleybench.api import InputError, ScoreContext
from foleybench.cli import main
from foleybench.datasets.base import Manifest
from foleybench.media_check import protocol_length
from foleybench.media_write import write_mp4, write_wav
from foleybench.pred_pattern import Template, match
from foleybench.runner import open_reference, score

os.environ.setdefault("OMP_NUM_THREADS", "1")
SR = 16000
CLIP_S = 2.0


def _variant(audio: np.ndarray, k: int, seconds: float | None = None) -> np.ndarray:
    """Sample k of a clip: the reference audio shifted by k * 0.23 s plus a little seeded noise,
    optionally cut or extended (with noise) to ``seconds``."""
    x = np.roll(audio, int(0.23 * SR * k), axis=1)
    x = x + np.random.default_rng(k).normal(0, 0.01, x.shape).astype(np.float32)
    if seconds is not None:
        n = int(round(seconds * SR))
        x = x[:, :n] if n <= x.shape[1] else np.concatenate(
            [x, np.random.default_rng(9).normal(0, 0.05, (x.shape[0], n - x.shape[1])).astype(np.float32)], axis=1)
    return np.clip(x, -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict:
    """References (4 synthfoley clips of 2 s) and a release folder of mp4s with muxed AAC
    audio, two samples per clip, named ``{id}_{k}.mp4``, plus: one too-short sample, one
    too-long sample, two stray media files and a text file."""
    root = tmp_path_factory.mktemp("released")
    ref, pred = root / "ref", root / "pred"
    assert main(["synth", "--out", str(ref), "--clips", "4", "--seed", "3", "--duration", str(CLIP_S)]) == 0
    recs = list(Manifest.read(ref / "manifest.csv"))
    pred.mkdir()
    for i, rec in enumerate(recs):
        audio = media.read_audio(rec.audio_source, sample_rate=SR).samples
        frames = media.read_video(rec.video).frames
        for k in (0, 1):
            seconds = 0.5 if (i, k) == (3, 1) else 3.0 if (i, k) == (2, 1) else None
            write_mp4(pred / f"{rec.clip_id}_{k}.mp4", frames, 16, audio=_variant(audio, k, seconds), sample_rate=SR)
    audio0 = media.read_audio(recs[0].audio_source, sample_rate=SR).samples
    write_mp4(pred / "stray.mp4", media.read_video(recs[0].video).frames, 16, audio=audio0, sample_rate=SR)
    write_mp4(pred / "nobody_0.mp4", media.read_video(recs[0].video).frames, 16, audio=audio0, sample_rate=SR)
    (pred / "README.txt").write_text("released samples\n")
    return {"root": root, "ref": ref, "pred": pred, "ids": [r.clip_id for r in recs]}


def _ctx(root: Path) -> ScoreContext:
    return ScoreContext(device="cpu", proxy=True, cache_dir=str(root / "cache"), clip_seconds=CLIP_S)


def _score(released: dict, pattern: str, metrics=("av_align", "fd_melstat"), pred: Path | None = None) -> dict:
    return score("v2a", pred or released["pred"], open_reference(released["ref"]), list(metrics),
                 _ctx(released["root"]), pred_pattern=pattern)


@pytest.fixture(scope="module")
def doc(released) -> dict:
    return _score(released, "{id}_{k}.mp4")


def test_counts_of_matched_unmatched_averaged_cut_and_short(doc, released):
    p = doc["pairing"]
    ids = released["ids"]
    assert p["pred_pattern"] == "{id}_{k}.mp4"
    assert p["n_files_matched"] == 8 and p["n_files_unmatched"] == 2
    assert set(p["unmatched_files"]) == {"stray.mp4", "nobody_0.mp4"}
    assert "does not fit" in p["unmatched_files"]["stray.mp4"]
    assert "no reference clip with id 'nobody'" in p["unmatched_files"]["nobody_0.mp4"]
    assert p["unpaired_pred"] == ["nobody"] and p["ignored_files"] == ["README.txt"]
    # the 0.5 s sample is excluded by the length rule, the 3 s one is cut to 2 s
    assert p["n_excluded_length"] == 1 and list(p["excluded_length"]) == [f"{ids[3]}#1"]
    assert "too short: 0.500 s" in p["excluded_length"][f"{ids[3]}#1"]
    assert p["n_cut"] == 1 and p["cut"] == [f"{ids[2]}#1"]
    assert p["n_clips"] == p["n_scored_pairs"] == 4 and p["n_files_scored"] == 7
    assert p["samples_per_clip"] == {"1": 1, "2": 3}
    assert p["n_averaged"] == 6 and p["n_clips_averaged"] == 3
    assert doc["protocol"]["pairing"] == "explicit --pred-pattern {id}_{k}.mp4"
    for name, rule in (("av_align", "mean"), ("fd_melstat", "pooled_fd")):
        s = doc["metrics"][name]["samples"]
        assert s["rule"] == rule and s["n_samples"] == 7 and s["n_clips"] == 4 and s["labels"] == ["0", "1"]


def test_per_clip_metric_is_the_mean_of_each_sample_scored_alone(doc, released):
    """av_align per METRICS.md: each sample against its reference, then averaged. The
    expected values come from one-sample runs (``{id}_0.mp4``, ``{id}_1.mp4``: no {k})."""
    alone = {k: _score(released, f"{{id}}_{k}.mp4", metrics=("av_align",))["metrics"]["av_align"]["extras"]["per_clip"]
             for k in ("0", "1")}
    ids = released["ids"]
    assert ids[3] not in alone["1"]  # its sample 1 is too short in the one-sample run too
    r = doc["metrics"]["av_align"]
    per_sample = r["extras"]["per_sample"]
    expected = {}
    for cid in ids:
        vals = [alone[k][cid] for k in ("0", "1") if cid in alone[k]]
        assert per_sample[cid] == {k: alone[k][cid] for k in ("0", "1") if cid in alone[k]}
        expected[cid] = sum(vals) / len(vals)
    assert r["extras"]["per_clip"] == pytest.approx(expected, abs=1e-12)
    assert r["value"] == pytest.approx(sum(expected.values()) / 4, abs=1e-12)
    assert r["n"] == 4 and r["ci"] is not None and r["ci"][0] <= r["value"] <= r["ci"][1]
    # the two samples differ (sample 1 is shifted): the average is not just one of them
    assert any(alone["0"][c] != alone["1"][c] for c in ids[:3])


def test_set_metric_pools_every_sample_against_each_reference_once(doc, released):
    from foleybench.cache import embed_files
    from foleybench.metrics.embedders import get_embedder
    from foleybench.metrics.functional.frechet import frechet_distance

    ctx = _ctx(released["root"])
    emb = get_embedder("melstat", ctx)
    manifest = open_reference(released["ref"])
    ids = released["ids"]
    gens = [f"{released['pred']}/{c}_{k}.mp4" for c in ids for k in (0, 1) if (c, k) != (ids[3], 1)]
    refs = [r.audio_source for r in manifest]
    g = np.concatenate([np.asarray(e, np.float64) for e in embed_files(emb, gens, ctx)])
    r = np.concatenate([np.asarray(e, np.float64) for e in embed_files(emb, refs, ctx)])
    fd = frechet_distance(g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    res = doc["metrics"]["fd_melstat"]
    # 1e-6, not 1e-9: the sqrt-trace term of FD on these few frames is ill-conditioned, so the
    # last bits of the covariance (numpy.cov's product vs the metric's, BLAS threads) move
    # the value by ~1e-9 relative; pooling a reference twice or dropping a sample moves it
    # by far more than 1e-6.
    assert res["value"] == pytest.approx(fd, rel=1e-6)
    assert res["extras"]["n_frames_gen"] == len(g) and res["extras"]["n_frames_ref"] == len(r)
    assert res["n"] == 4


def test_flac_ogg_mp3_in_folders_and_a_csv_mapping(released, tmp_path):
    """``{id}/{k}.flac`` sub-folders; a CSV mapping naming ogg and mp3 files; both give the
    same per-sample values as the same audio in mp4 would, up to the codec."""
    ids = released["ids"]
    recs = {r.clip_id: r for r in open_reference(released["ref"])}
    folders = tmp_path / "by_clip"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    rows = ["file,clip_id,sample"]
    for cid in ids[:2]:
        audio = media.read_audio(recs[cid].audio_source, sample_rate=SR).samples
        for k in (0, 1):
            write_wav(folders / cid / f"{k}.flac", _variant(audio, k), SR)
        sf.write(mixed / f"{cid}-a.ogg", _variant(audio, 0).T, SR, format="OGG", subtype="VORBIS")
        sf.write(mixed / f"{cid}-b.mp3", _variant(audio, 1).T, SR, format="MP3", subtype="MPEG_LAYER_III")
        rows += [f"{cid}-a.ogg,{cid},0", f"{cid}-b.mp3,{cid},1"]
    write_wav(mixed / "extra.wav", np.zeros((1, SR), np.float32), SR)
    (tmp_path / "map.csv").write_text("\n".join(rows) + "\n")

    a = _score(released, "{id}/{k}.flac", metrics=("av_align",), pred=folders)
    assert a["pairing"]["n_files_matched"] == 4 and a["pairing"]["n_files_unmatched"] == 0
    assert a["pairing"]["missing_pred"] == sorted(ids[2:]) and a["pairing"]["n_averaged"] == 4
    b = _score(released, str(tmp_path / "map.csv"), metrics=("av_align",), pred=mixed)
    pb = b["pairing"]
    assert pb["n_files_matched"] == 4 and pb["unmatched_files"] == {"extra.wav": "not listed in map.csv"}
    assert pb["samples_per_clip"] == {"2": 2}
    # every file decoded and scored as the sample the pattern or the mapping names
    fa, fb = a["metrics"]["av_align"]["extras"]["per_sample"], b["metrics"]["av_align"]["extras"]["per_sample"]
    assert set(fa) == set(fb) == set(ids[:2])
    for cid in ids[:2]:
        assert set(fa[cid]) == set(fb[cid]) == {"0", "1"}


def test_template_rules_and_errors(tmp_path):
    t = Template("{id}_{k}.flac", "v2a")
    assert t.parses("a_b_12.flac") == [("a_b", "12")] and t.parses("a_b_01.FLAC") == [("a_b", "1")]
    assert t.parses("a_b.flac") == [] and t.parses("x/a_1.flac") == []
    assert Template("{id}/{k}.wav", "v2a").parses("clip/3.wav") == [("clip", "3")]
    assert Template("{id}.mp4", "v2a").parses("café.mp4") == [("café", None)]
    for bad, why in [("{id}{k}.wav", "separate"), ("{name}.wav", "unknown placeholder"), ("{id}.txt", "media suffix"),
                     ("{k}.wav", "exactly once"), ("../{id}.wav", "relative"), ("{id}.mp3", "media suffix")]:
        task = "a2v" if bad == "{id}.mp3" else "v2a"
        with pytest.raises(InputError, match=why):
            Template(bad, task)
    # two files for one (clip, sample) are both unmatched, never one picked
    (tmp_path / "x_1.wav").write_bytes(b"")
    (tmp_path / "x_01.wav").write_bytes(b"")
    m, _ = match(tmp_path, "{id}_{k}.wav", "v2a", {"x"})
    assert m.files == {} and all("ambiguous" in why for why in m.unmatched.values()) and len(m.unmatched) == 2
    with pytest.raises(InputError, match="does not exist"):
        match(tmp_path, str(tmp_path / "nope.csv"), "v2a", {"x"})
    (tmp_path / "bad.csv").write_text("path,id\nx_1.wav,x\n")
    with pytest.raises(InputError, match="columns file and clip_id"):
        match(tmp_path, str(tmp_path / "bad.csv"), "v2a", {"x"})


def test_length_rule():
    assert protocol_length(5.0, None, 10.0) == ("ok", None)
    assert protocol_length(8.0, 8.0, 10.0, 1 / SR) == ("ok", None)
    assert protocol_length(10.0, 8.0, 10.0, 1 / SR)[0] == "cut"
    assert protocol_length(7.95, 8.0, 10.0)[0] == "ok"           # within max(0.1 s, 1 %)
    verdict, why = protocol_length(7.8, 8.0, 10.0)
    assert verdict == "short" and "protocol length is 8.000 s" in why
    assert protocol_length(5.0, 8.0, 5.0)[0] == "ok"             # the reference itself is 5 s
    assert protocol_length(4.0, 8.0, 5.0)[0] == "short"


def test_cli_pred_pattern_writes_the_counts(released, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["score", "--task", "v2a", "--pred", str(released["pred"]), "--ref", str(released["ref"]),
               "--pred-pattern", "{id}_{k}.mp4", "--metrics", "fd_melstat", "--clip-seconds", str(CLIP_S),
               "--cache-dir", str(released["root"] / "cache"), "--device", "cpu", "--quiet", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0
    p = json.loads(out.read_text())["pairing"]
    assert (p["n_files_matched"], p["n_files_unmatched"], p["n_averaged"]) == (8, 2, 6)
    assert "8 matched, 2 unmatched" in cap.out
    assert "unmatched file stray.mp4" in cap.err and "excluded by length" in cap.err


def test_default_names_unchanged_and_hint_for_other_media(released, tmp_path):
    """Without --pred-pattern nothing new is matched; a folder of mp4s gets a hint, not a guess."""
    with pytest.raises(InputError, match=r"--pred-pattern '\{id\}.mp4'"):
        _score(released, None)


def test_clipsim_clipscore_variant_is_labelled_and_rescales_each_frame(monkeypatch):
    """Issue 13 item 5: ``clipsim_clipscore`` = mean over frames of 2.5 * max(cos, 0). A stub
    stands in for CLIP (the metric conformance tests run the variant with the proxy CLIP);
    its frames are drawn so that some cosines are negative and the clamp matters."""
    from foleybench.leaderboard import footer
    from foleybench.metrics import clipsim
    from foleybench.registry import METRICS

    rng = np.random.default_rng(0)
    text = {"dog": rng.normal(size=16), "rain": rng.normal(size=16)}

    class Stub:
        def embed_text(self, prompts):
            return [text[p] for p in prompts]

        def provenance(self):
            return {"embedder": "stub", "weights": "none"}

    monkeypatch.setattr(clipsim, "get_embedder", lambda name, ctx, **kw: Stub())
    rows = {f"c{i}": (lab, rng.normal(size=(8, 16)).astype(np.float32)) for i, lab in enumerate(["dog", "rain", "dog"])}
    entry = METRICS.entry("clipsim_clipscore")
    raw, scaled = clipsim.CLIPSim(ScoreContext()), entry.load()(ctx=ScoreContext(), **entry.kwargs)
    raw.rows, scaled.rows = dict(rows), dict(rows)
    vr, vs = raw.compute(), scaled.compute()
    expected = {}
    negative = 0
    for cid, (label, img) in rows.items():
        img64, t = img.astype(np.float64), text[label]
        cos = (img64 @ t) / (np.linalg.norm(img64, axis=1) * np.linalg.norm(t))
        negative += int((cos < 0).sum())
        expected[cid] = float(np.mean(2.5 * np.maximum(cos, 0)))
        assert vr.extras["per_clip"][cid] == pytest.approx(float(np.mean(cos)), abs=1e-9)
    assert negative > 0
    assert vs.extras["per_clip"] == pytest.approx(expected, abs=1e-9)
    assert vs.value == pytest.approx(np.mean(list(expected.values())), abs=1e-9)
    assert scaled.name == "clipsim_clipscore" and vs.extras["scale"] == "clipscore" and vr.extras["scale"] == "cosine"
    assert "hypothesis" in scaled.provenance()["value"] and "raw cosine" in raw.provenance()["value"]
    doc = {"model": "m", "dataset": {"name": "d", "fingerprint": "0" * 16}, "pairing": {"n_scored_pairs": 3},
           "metrics": {"clipsim_clipscore": {"provenance": scaled.provenance()}}}
    assert "CLIPScore's scale" in footer([doc]) and "hypothesis" in footer([doc])
    doc["metrics"] = {"clipsim": {"provenance": raw.provenance()}}
    assert "CLIPScore" not in footer([doc])
    with pytest.raises(ValueError, match="scale must be one of"):
        clipsim.CLIPSim(ScoreContext(), scale="x100")


def test_a2v_samples_and_length_by_frames(released, tmp_path):
    """A2V: two video samples per clip in a folder per clip; one with 0.5 s of frames is
    excluded by the length rule (frames over fps), the others averaged per clip."""
    recs = list(open_reference(released["ref"]))
    pred = tmp_path / "a2v"
    for i, rec in enumerate(recs[:2]):
        frames = media.read_video(rec.video).frames
        write_mp4(pred / rec.clip_id / "0.mp4", frames, 16)
        write_mp4(pred / rec.clip_id / "1.mp4", frames[:8] if i == 1 else frames[::-1].copy(), 16)
    d = score("a2v", pred, open_reference(released["ref"]), ["av_align"], _ctx(released["root"]),
              pred_pattern="{id}/{k}.mp4")
    p = d["pairing"]
    assert p["n_files_matched"] == 4 and p["n_files_unmatched"] == 0
    assert list(p["excluded_length"]) == [f"{recs[1].clip_id}#1"] and "0.500 s" in p["excluded_length"][f"{recs[1].clip_id}#1"]
    assert p["samples_per_clip"] == {"1": 1, "2": 1} and p["n_averaged"] == 2 and p["n_cut"] == 0
    r = d["metrics"]["av_align"]
    ps = r["extras"]["per_sample"]
    assert set(ps[recs[0].clip_id]) == {"0", "1"} and set(ps[recs[1].clip_id]) == {"0"}
    assert r["extras"]["per_clip"][recs[0].clip_id] == pytest.approx(np.mean(list(ps[recs[0].clip_id].values())))


def test_inception_score_takes_every_sample_as_one_item(monkeypatch):
    """IS over samples: each generated file is one item, in (clip id, sample) order; the
    same as the functional IS over those logits stacked in that order."""
    from foleybench import samples
    from foleybench.api import ClipPair
    from foleybench.metrics import inception_score as ism
    from foleybench.metrics.functional.inception import inception_score

    class Stub:
        kind, name = "audio", "stub"

        def provenance(self):
            return {"embedder": "stub", "weights": "none"}

    def logits(path: str) -> np.ndarray:
        seed = int.from_bytes(path.encode(), "little") % (2**32)
        return np.random.default_rng(seed).normal(0, 2, 7).astype(np.float32)

    monkeypatch.setattr(ism, "get_embedder", lambda name, ctx, **kw: Stub())
    monkeypatch.setattr(ism, "logits_files", lambda emb, paths, ctx: [logits(p) for p in paths])
    pairs = [ClipPair(f"c{i}", "v2a", pred_audio=f"c{i}_{k}.wav", ref_audio=f"r{i}.wav", sample=str(k))
             for i in range(6) for k in range(2 if i % 3 else 1)]  # c0, c3: one sample; others two
    make = lambda: ism.InceptionScore(ScoreContext(), embedder="stub", n_splits=4, seed=7)  # noqa: E731
    _, value, excluded, block = samples.score_samples(make, pairs, "is_stub", samples.rule_of(ism.InceptionScore, "x"))
    order = sorted(pairs, key=lambda p: (p.clip_id, int(p.sample)))
    mean, std = inception_score(np.stack([logits(p.pred_audio) for p in order]), 4, 7)
    assert excluded == [] and value.n == len(pairs) == 10
    assert value.value == pytest.approx(mean, rel=1e-12) and value.extras["std"] == pytest.approx(std, rel=1e-12)
    assert block["rule"] == "pooled_items" and block["samples_per_clip"] == {"1": 2, "2": 4}


def test_mapping_rows_that_cannot_be_used_are_listed(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        write_wav(tmp_path / name, np.zeros((1, 160), np.float32), SR)
    (tmp_path / "map.csv").write_text("file,clip_id\na.wav,x\nb.wav,x\nc.wav,y\ngone.wav,z\na.wav,w\n,q\n")
    m, rule = match(tmp_path, str(tmp_path / "map.csv"), "v2a", {"x", "y"})
    assert rule.startswith("mapping ")
    # a.wav is listed for two clips: left out, never one picked; x keeps b.wav, its only file
    assert [(f.rel, f.sample) for f in m.files["x"]] == [("b.wav", None)]
    assert [(f.rel, f.sample) for f in m.files["y"]] == [("c.wav", None)]
    assert m.unmatched == {"gone.wav": "listed in map.csv:5 but not found", "a.wav": "listed 2 times (map.csv:2, map.csv:6)",
                           "map.csv:7": "row without a file or a clip_id", "d.wav": "not listed in map.csv"}
    assert "map.csv" not in m.ignored
    (tmp_path / "map2.csv").write_text("file,clip_id\na.wav,x\nb.wav,x\nc.wav,x\n")
    m, _ = match(tmp_path, str(tmp_path / "map2.csv"), "v2a", {"x"})
    assert [(f.rel, f.sample) for f in m.files["x"]] == [("a.wav", "0"), ("b.wav", "1"), ("c.wav", "2")]  # row order


def test_a_path_that_reads_two_ways_is_settled_by_the_reference_ids(tmp_path):
    t = Template("{id}0{k}.wav", "v2a")
    assert t.parses("a0102.wav") == [("a", "102"), ("a01", "2")]
    write_wav(tmp_path / "a0102.wav", np.zeros((1, 160), np.float32), SR)
    m, _ = match(tmp_path, "{id}0{k}.wav", "v2a", {"a"})
    assert [(f.clip_id, f.sample) for f in m.files["a"]] == [("a", "102")]
    m, _ = match(tmp_path, "{id}0{k}.wav", "v2a", {"a", "a01"})
    assert m.files == {} and "reads two ways" in m.unmatched["a0102.wav"]
