"""The CLI contract, end to end on a small synthfoley set, and its bad-input behaviour."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from foleybench import media
from foleybench.cli import main
from foleybench.datasets.base import Manifest

N_CLIPS = 8


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(out), "--clips", str(N_CLIPS), "--seed", "3", "--duration", "2"]) == 0
    return out


def run(args: list[str], capsys) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_list_prints_one_name_per_line(capsys):
    for what, must in [("models", "oracle"), ("metrics", "av_align"), ("datasets", "synthfoley"),
                       ("benchmarks", "synthfoley")]:
        rc, out, _ = run(["list", what], capsys)
        names = out.split()
        assert rc == 0 and must in names and names == out.strip().splitlines()


def test_synth_writes_clips_and_manifest(synth):
    m = Manifest.read(synth / "manifest.csv")
    assert len(m) == N_CLIPS
    for rec in m:
        assert (synth / f"{rec.clip_id}.mp4").is_file() and rec.video.endswith(f"{rec.clip_id}.mp4")
        assert rec.label and rec.events is not None


def test_generate_and_score_v2a_oracle_beats_baselines(synth, tmp_path, capsys):
    values = {}
    for model in ["oracle", "shuffled", "silence", "noise"]:
        out = tmp_path / model
        rc, text, _ = run(["generate", "--task", "v2a", "--model", model, "--data", str(synth), "--out", str(out),
                           "--device", "cpu"], capsys)
        assert rc == 0, text
        assert sorted(p.stem for p in out.glob("*.wav")) == sorted(Manifest.read(synth / "manifest.csv").ids())
        res = tmp_path / f"{model}.json"
        rc, text, err = run(["score", "--task", "v2a", "--pred", str(out), "--ref", str(synth), "--metrics",
                             "av_align,fd_melstat", "--out", str(res), "--device", "cpu", "--no-cache",
                             "--quiet"], capsys)
        assert rc == 0, err
        doc = json.loads(res.read_text())
        for name in ("av_align", "fd_melstat"):
            r = doc["metrics"][name]
            assert {"value", "n", "ci"} <= set(r) and r["provenance"]["metric"] == name
        assert doc["dataset"]["fingerprint"] == Manifest.read(synth / "manifest.csv").fingerprint()
        assert doc["code"]["harness_version"] and doc["environment"]["libraries"]["torch"]
        values[model] = {k: v["value"] for k, v in doc["metrics"].items()}
    # Identical sets: FD is 0 up to the square roots of rounding-level eigenvalues of a
    # rank-deficient covariance (64 frames, D = 64), i.e. ~1e-6 on distances of ~10-100.
    assert values["oracle"]["fd_melstat"] < 1e-4
    for other in ["shuffled", "silence", "noise"]:
        assert values["oracle"]["av_align"] > values[other]["av_align"], values
    for other in ["silence", "noise"]:
        assert values["oracle"]["fd_melstat"] < values[other]["fd_melstat"]
    # FD compares sets, not pairs: a derangement of the reference audio is the same set.
    assert values["shuffled"]["fd_melstat"] < 1e-4


def test_generate_a2v_and_resume(synth, tmp_path, capsys):
    out = tmp_path / "a2v"
    rc, text, _ = run(["generate", "--task", "a2v", "--model", "silence", "--data", str(synth), "--out", str(out),
                       "--limit", "3", "--device", "cpu"], capsys)
    assert rc == 0 and "generated 3" in text
    clip = media.read_video(next(out.glob("*.mp4")))
    # a held first frame: equal up to H.264 rounding
    diff = np.abs(clip.frames[0].astype(int) - clip.frames[-1].astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8
    rc, text, _ = run(["generate", "--task", "a2v", "--model", "silence", "--data", str(synth), "--out", str(out),
                       "--limit", "3", "--device", "cpu"], capsys)
    assert "generated 0, resumed 3" in text


def test_bad_predictions_are_reported_and_excluded(synth, tmp_path, capsys):
    pred = tmp_path / "pred"
    assert main(["generate", "--task", "v2a", "--model", "oracle", "--data", str(synth), "--out", str(pred),
                 "--device", "cpu"]) == 0
    ids = sorted(p.stem for p in pred.glob("*.wav"))
    import soundfile as sf

    sf.write(pred / f"{ids[0]}.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    (pred / f"{ids[1]}.wav").write_bytes(b"")  # zero-length file
    (pred / f"{ids[2]}.wav").unlink()  # missing prediction
    shutil.copy(pred / f"{ids[3]}.wav", pred / "not_a_reference_id.wav")  # unpaired
    capsys.readouterr()
    res = tmp_path / "r.json"
    rc, text, err = run(["score", "--task", "v2a", "--pred", str(pred), "--ref", str(synth), "--metrics",
                         "av_align", "--out", str(res), "--device", "cpu", "--no-cache", "--quiet"], capsys)
    assert rc == 0
    doc = json.loads(res.read_text())
    p = doc["pairing"]
    assert set(p["invalid_pred"]) == {ids[0], ids[1]}
    assert "NaN" in p["invalid_pred"][ids[0]] or "nan" in p["invalid_pred"][ids[0]].lower()
    assert ids[0] in err and ids[1] in err
    assert p["missing_pred"] == [ids[2]] and p["unpaired_pred"] == ["not_a_reference_id"]
    assert p["n_scored_pairs"] == N_CLIPS - 3
    assert doc["metrics"]["av_align"]["n"] + doc["metrics"]["av_align"]["extras"]["n_no_peaks"] <= N_CLIPS - 3


def test_unknown_names_and_missing_folders_fail_clearly(synth, tmp_path, capsys):
    rc, _, err = run(["generate", "--task", "v2a", "--model", "oracel", "--data", str(synth), "--out",
                      str(tmp_path / "x")], capsys)
    assert rc == 2 and "did you mean 'oracle'" in err
    rc, _, err = run(["score", "--task", "v2a", "--pred", str(tmp_path), "--ref", str(synth), "--metrics",
                      "fd_vgish", "--out", str(tmp_path / "o.json")], capsys)
    assert rc == 2 and "fd_vgish" in err and "did you mean" in err
    rc, _, err = run(["score", "--task", "v2a", "--pred", str(tmp_path / "nope"), "--ref", str(synth),
                      "--metrics", "av_align", "--out", str(tmp_path / "o.json")], capsys)
    assert rc == 2 and "prediction folder not found" in err and "nope" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "zzz.wav").write_bytes(b"")
    rc, _, err = run(["score", "--task", "v2a", "--pred", str(empty), "--ref", str(synth), "--metrics",
                      "av_align", "--out", str(tmp_path / "o.json")], capsys)
    assert rc == 2 and "matches a reference clip id" in err


def test_embedding_cache_makes_rescoring_fast_and_tracks_content(synth, tmp_path, capsys):
    pred = tmp_path / "noise"
    assert main(["generate", "--task", "v2a", "--model", "noise", "--data", str(synth), "--out", str(pred),
                 "--device", "cpu"]) == 0
    cache = tmp_path / "cache"
    args = ["score", "--task", "v2a", "--pred", str(pred), "--ref", str(synth), "--metrics", "fd_melstat",
            "--out", str(tmp_path / "s.json"), "--device", "cpu", "--cache-dir", str(cache), "--quiet"]
    assert main(args) == 0
    first = json.loads((tmp_path / "s.json").read_text())["metrics"]["fd_melstat"]["value"]
    n_entries = len(list(cache.rglob("*.fbe")))
    assert n_entries == 2 * N_CLIPS
    assert main(args) == 0
    assert len(list(cache.rglob("*.fbe"))) == n_entries  # all hits
    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["fd_melstat"]["value"] == first
    # editing one file changes its key: exactly one new entry
    wav = next(pred.glob("*.wav"))
    media.write_wav(wav, np.random.default_rng(1).normal(0, 0.2, (1, 32000)), 16000)
    assert main(args) == 0
    assert len(list(cache.rglob("*.fbe"))) == n_entries + 1
    assert not list(cache.rglob("*.tmp"))
    capsys.readouterr()
