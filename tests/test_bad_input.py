"""Bad-input corpus, part 1: broken and odd *predictions* (issue 15).

Each case breaks one clip's prediction of the shared corpus (tests/badinput_common.py)
and checks: the run completes, the clip is named on stderr with the problem and listed
in the results, and no other clip's per-clip value changed.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from foleybench import media
from tests.badinput_common import (
    assert_isolated,
    copy_dir,
    score,
    tone,
    write_wav,
)

pytest_plugins = ("tests.badinput_common",)  # the session-scoped `corpus` fixture


def _truncate_half(p: Path) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _samples(value: float) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        x = tone(1, 16000)
        x[100:200] = value
        write_wav(p, x, 16000, "FLOAT")
    return make


# (case id, how to break the prediction, words the message must hold)
EXCLUDED: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("wav-cut-in-half", _truncate_half, ("truncated", "declares")),
    ("zero-length-file", lambda p: p.write_bytes(b""), ("empty",)),
    ("text-renamed-wav", lambda p: p.write_text("this is not audio\n" * 40), ("unreadable",)),
    ("nan-samples", _samples(float("nan")), ("nan",)),
    ("inf-samples", _samples(float("inf")), ("inf",)),
    ("header-only-wav", lambda p: write_wav(p, np.zeros((0, 1), np.float32), 16000), ("zero-length",)),
    ("mp4-renamed-wav", None, ("unreadable",)),  # a video-only mp4 under a .wav name
]


@pytest.mark.parametrize("case,breaker,words", EXCLUDED, ids=[c[0] for c in EXCLUDED])
def test_bad_prediction_is_excluded_by_id(corpus, tmp_path, capsys, case, breaker, words):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][1]
    target = pred / f"{cid}.wav"
    if breaker is None:  # a video-only mp4 under a .wav name
        frames = np.zeros((4, 16, 16, 3), np.uint8)
        media.write_mp4(tmp_path / "v.mp4", frames, 16.0)
        target.write_bytes((tmp_path / "v.mp4").read_bytes())
    else:
        breaker(target)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, *words)
    assert cid in doc["pairing"]["invalid_pred"]
    assert doc["pairing"]["n_scored_pairs"] == len(corpus["ids"]) - 1


# Odd but valid audio: scored (never excluded for its format), others unchanged.
ODD = [
    ("uint8", 16000, 1, "PCM_U8"),
    ("pcm24", 16000, 1, "PCM_24"),
    ("float64", 16000, 1, "DOUBLE"),
    ("8kHz", 8000, 1, "PCM_16"),
    ("96kHz", 96000, 1, "PCM_16"),
    ("6-channels", 16000, 6, "PCM_16"),
    ("long-40s", 16000, 1, "PCM_16"),
]


@pytest.mark.parametrize("case,rate,channels,subtype", ODD, ids=[c[0] for c in ODD])
def test_odd_formats_are_scored_and_isolated(corpus, tmp_path, capsys, case, rate, channels, subtype):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][2]
    write_wav(pred / f"{cid}.wav", tone(40 if case == "long-40s" else 1, rate, channels), rate, subtype)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    assert cid not in doc["pairing"]["invalid_pred"]
    assert cid in doc["metrics"]["kl_panns"]["extras"]["per_clip"]
    clean = corpus["clean"]["metrics"]["kl_panns"]["extras"]["per_clip"]
    for other, v in clean.items():
        if other != cid:
            assert doc["metrics"]["kl_panns"]["extras"]["per_clip"][other] == v


def test_silent_prediction_is_a_warning_not_an_exclusion(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][0]
    write_wav(pred / f"{cid}.wav", np.zeros((16000, 1), np.float32), 16000)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "silent")
    assert cid in doc["pairing"]["warnings"] and cid not in doc["pairing"]["invalid_pred"]


def test_one_sample_prediction_is_excluded_per_metric(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][3]
    write_wav(pred / f"{cid}.wav", np.full((1, 1), 0.5, np.float32), 16000)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "excluded")
    assert any(e[0] == cid for e in doc["metrics"]["fd_melstat"]["excluded"])


def test_flac_cut_in_half_is_excluded(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][1]
    wav = pred / f"{cid}.wav"
    x, sr = media.read_audio(wav).samples, 16000
    wav.unlink()
    write_wav(pred / f"{cid}.flac", x.T, sr)
    _truncate_half(pred / f"{cid}.flac")
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, f"{cid}.flac")
    assert cid in doc["pairing"]["invalid_pred"]


def test_same_id_as_wav_and_flac_is_ambiguous(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][0]
    write_wav(pred / f"{cid}.flac", tone(1, 16000), 16000)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "ambiguous")
    assert f"{cid}.flac" in doc["pairing"]["invalid_pred"][cid] and f"{cid}.wav" in doc["pairing"]["invalid_pred"][cid]


def test_unpaired_and_missing_predictions_are_listed(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    gone = corpus["ids"][2]
    (pred / f"{gone}.wav").rename(pred / "not_a_clip.wav")
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], gone, "missing")
    assert doc["pairing"]["missing_pred"] == [gone] and doc["pairing"]["unpaired_pred"] == ["not_a_clip"]
    assert "not_a_clip" in err


def test_temp_and_hidden_files_are_not_predictions(corpus, tmp_path, capsys):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][0]
    (pred / f".{cid}.wav.k3j2.part").write_bytes(b"")        # a write killed half-way (ours)
    (pred / ".hidden.wav").write_bytes(b"")                   # an editor's or OS's dot-file
    (pred / "other.wav.tmp").write_bytes(b"")
    (pred / "folder.wav").mkdir()
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    p = doc["pairing"]
    assert p["unpaired_pred"] == [] and p["invalid_pred"] == {} and p["n_scored_pairs"] == len(corpus["ids"])
    assert doc["metrics"]["kl_panns"]["value"] == corpus["clean"]["metrics"]["kl_panns"]["value"]


def test_nfd_and_nfc_names_are_one_clip(corpus, tmp_path, capsys):
    """Ids are NFC everywhere: an NFD file name pairs with the NFC manifest id; both
    forms at once are one id twice (ambiguous)."""
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][1]
    nfc = unicodedata.normalize("NFC", f"café_{cid}")
    text = (ref / "manifest.csv").read_text().replace(f"{cid},", f"{nfc},", 1)
    (ref / "manifest.csv").write_text(text)
    (pred / f"{cid}.wav").rename(pred / f"{unicodedata.normalize('NFD', nfc)}.wav")
    rc, doc, err = score(capsys, pred, ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    assert nfc in doc["metrics"]["kl_panns"]["extras"]["per_clip"]
    assert doc["pairing"]["unpaired_pred"] == [] and doc["pairing"]["missing_pred"] == []
    assert doc["metrics"]["kl_panns"]["extras"]["per_clip"][nfc] == \
        corpus["clean"]["metrics"]["kl_panns"]["extras"]["per_clip"][cid]
    (pred / f"{nfc}.wav").write_bytes((pred / f"{unicodedata.normalize('NFD', nfc)}.wav").read_bytes())
    rc, doc, err = score(capsys, pred, ref, tmp_path / "r2.json", corpus["cache"])
    assert rc == 0 and "ambiguous" in doc["pairing"]["invalid_pred"][nfc] and nfc in err
