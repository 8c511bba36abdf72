"""VGGSound manifests over a clip folder, and the `foleybench embed` contract."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from foleybench import media
from foleybench.api import InputError
from foleybench.cli import main
from foleybench.datasets.vggsound import VGGSound, read_classes, read_test_csv
from foleybench.runner import open_reference


def _clip(path, seed, seconds=1.0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (int(16 * seconds), 32, 32, 3), dtype=np.uint8)
    audio = rng.normal(0, 0.1, (1, int(16000 * seconds))).astype(np.float32)
    return media.write_mp4(path, frames, 16.0, audio=audio, sample_rate=16000)


def test_shipped_vggsound_lists():
    rows = read_test_csv()
    classes = read_classes()
    assert len(rows) == 15446 and len(classes) == 309
    assert all(name.endswith(".mp4") for name, _ in rows)
    assert {lab for _, lab in rows} <= set(classes)


def test_vggsound_folder_reports_missing_and_uses_lossless_audio(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    _clip(root / "aaaaaaaaaaa_000010.mp4", 0)
    _clip(root / "bbbbbbbbbbb_000020.mp4", 1)
    media.write_wav(root / "bbbbbbbbbbb_000020.wav", np.zeros((1, 16000)), 16000)
    man = tmp_path / "test.csv"
    with open(man, "w", newline="") as f:
        csv.writer(f).writerows([["aaaaaaaaaaa_000010.mp4", "dog barking"], ["bbbbbbbbbbb_000020.mp4", "playing violin, fiddle"],
                                 ["ccccccccccc_000030.mp4", "dog barking"], ["ddddddddddd_000040.mp4", "not a class"]])
    ds = VGGSound(root, manifest=man)
    m = ds.manifest()
    assert m.ids() == ["aaaaaaaaaaa_000010", "bbbbbbbbbbb_000020"]
    assert m["bbbbbbbbbbb_000020"].audio_source.endswith(".wav") and m["aaaaaaaaaaa_000010"].audio is None
    assert m["bbbbbbbbbbb_000020"].label == "playing violin, fiddle"
    assert ds.missing == ["ccccccccccc_000030", "ddddddddddd_000040"]
    report = ds.report()
    assert "2 of 4" in report and "missing: 2" in report and "ccccccccccc_000030" in report
    assert "not a class" in report
    bad = tmp_path / "bad.csv"
    bad.write_text("no_extension,dog barking\n")
    with pytest.raises(InputError, match="bad.csv:1"):
        VGGSound(root, manifest=bad)
    with pytest.raises(InputError, match="clip folder not found"):
        VGGSound(tmp_path / "nope", manifest=man).manifest()


def test_folder_reference_by_stem(tmp_path):
    _clip(tmp_path / "x1.mp4", 2)
    media.write_wav(tmp_path / "x2.wav", np.zeros((1, 800)), 16000)
    m = open_reference(tmp_path)
    assert m.ids() == ["x1", "x2"] and m["x2"].video is None and m["x1"].audio_source.endswith("x1.mp4")


def test_embed_writes_rows_in_input_order_with_index(tmp_path, capsys):
    a = media.write_wav(tmp_path / "a.wav", np.random.default_rng(0).normal(0, .1, (1, 16000 * 3)), 16000)
    b = _clip(tmp_path / "b.mp4", 3, seconds=2.0)
    out = tmp_path / "emb.npy"
    rc = main(["embed", "--embedder", "vggish", "--proxy", "--no-cache", "--device", "cpu", "--quiet",
               "--out", str(out), str(a), str(b)])
    assert rc == 0
    arr = np.load(out)
    with open(tmp_path / "emb.index.csv") as f:
        idx = list(csv.DictReader(f))
    assert [r["input"] for r in idx] == [str(a), str(b)]
    assert int(idx[0]["row_start"]) == 0 and int(idx[0]["row_end"]) == int(idx[1]["row_start"])
    assert int(idx[1]["row_end"]) == arr.shape[0] and arr.shape[1] == 128 and arr.dtype == np.float32
    assert int(idx[0]["row_end"]) == 3  # 3 s of audio -> three 0.96 s VGGish frames
    prov = json.loads((tmp_path / "emb.json").read_text())
    assert prov["embedder"]["weights"] == "proxy" and prov["embedder"]["checkpoint_sha256"]
    (tmp_path / "broken.wav").write_bytes(b"RIFF0000")
    rc = main(["embed", "--embedder", "vggish", "--proxy", "--no-cache", "--device", "cpu", "--quiet",
               "--out", str(out), str(a), str(tmp_path / "broken.wav")])
    assert rc == 1 and "broken.wav" in capsys.readouterr().err
    assert np.load(out).shape[0] == 3


def test_embed_video_embedder_on_mp4(tmp_path):
    b = _clip(tmp_path / "v.mp4", 4, seconds=2.0)
    out = tmp_path / "i3d.npy"
    assert main(["embed", "--embedder", "i3d", "--proxy", "--no-cache", "--device", "cpu", "--quiet",
                 "--out", str(out), str(b)]) == 0
    assert np.load(out).shape == (1, 400)


def test_score_metric_options_are_checked(tmp_path, capsys):
    _clip(tmp_path / "x1.mp4", 2)
    rc = main(["score", "--task", "v2a", "--pred", str(tmp_path), "--ref", str(tmp_path), "--metrics", "av_align",
               "--opt", "fd_panns.n_boot=3", "--out", str(tmp_path / "o.json")])
    assert rc == 2 and "not among --metrics" in capsys.readouterr().err
