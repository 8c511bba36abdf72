"""Registry, manifests, derangement, leaderboard rendering, drift verdicts, weights errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.reference import derangement, fit_audio, fit_video
from foleybench import drift, weights
from foleybench.api import AudioOutput, FoleybenchError, InputError, check_outputs
from foleybench.datasets.base import ClipRecord, Manifest
from foleybench.leaderboard import DASH, PROXY_MARK, render_table
from foleybench.registry import METRICS, MODELS, UnknownNameError
from foleybench.spec import PublishedRow


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean 'oracle'"):
        MODELS.entry("oracel")
    with pytest.raises(UnknownNameError, match="did you mean 'av_align'"):
        METRICS.entry("av_allign")
    with pytest.raises(UnknownNameError) as exc:
        METRICS.entry("zzz")
    assert "did you mean" not in str(exc.value) and "foleybench list metrics" in str(exc.value)


def test_registry_lists_are_lazy_and_sorted():
    names = METRICS.names()
    assert names == sorted(names) and "av_align" in names
    assert METRICS.names("fd_*") and all(n.startswith("fd_") for n in METRICS.names("fd_*"))


def _manifest(tmp_path, ids=("b", "a", "c")):
    recs = [ClipRecord(clip_id=i, video=str(tmp_path / f"{i}.mp4"), audio=str(tmp_path / f"{i}.wav"),
                       sha256="0" * 64, duration_s=2.0, label="dog barking", split="test",
                       events=(0.5, 1.25)) for i in ids]
    return Manifest(recs, tmp_path, name="t")


def test_manifest_round_trip_and_fingerprint(tmp_path):
    m = _manifest(tmp_path)
    path = m.write(tmp_path / "manifest.csv")
    back = Manifest.read(path)
    assert back.fingerprint() == m.fingerprint()
    assert back["a"].events == (0.5, 1.25) and back["a"].video == str(tmp_path / "a.mp4")
    assert _manifest(tmp_path, ("a", "b")).fingerprint() != m.fingerprint()
    # order of rows does not change the fingerprint; content does
    assert _manifest(tmp_path, ("c", "a", "b")).fingerprint() == m.fingerprint()


def test_manifest_rejects_duplicates_and_bad_rows(tmp_path):
    with pytest.raises(InputError, match="duplicate clip ids"):
        _manifest(tmp_path, ("a", "a"))
    bad = tmp_path / "bad.csv"
    bad.write_text("clip_id,duration_s\nx,not-a-number\n")
    with pytest.raises(InputError, match=r"bad.csv:2"):
        Manifest.read(bad)
    with pytest.raises(InputError, match="manifest file not found"):
        Manifest.read(tmp_path / "none.csv")


def test_derangement_has_no_fixed_point_and_is_seeded():
    ids = [f"c{i}" for i in range(25)]
    for seed in range(5):
        d = derangement(ids, seed)
        assert sorted(d.values()) == sorted(ids)
        assert all(k != v for k, v in d.items())
        assert d == derangement(list(reversed(ids)), seed)  # input order does not matter
    assert derangement(ids, 0) != derangement(ids, 1)
    with pytest.raises(FoleybenchError):
        derangement(["only"], 0)


def test_fit_audio_and_video():
    a = np.ones((2, 10), np.float32)
    assert fit_audio(a, 4).shape == (2, 4)
    padded = fit_audio(a, 13)
    assert padded.shape == (2, 13) and padded[:, 10:].sum() == 0
    v = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    held = fit_video(v, 5)
    assert held.shape[0] == 5 and np.array_equal(held[4], v[2])


def test_batch_contract_is_enforced():
    class R:
        def __init__(self, i):
            self.clip_id = i

    reqs = [R("a"), R("b")]
    check_outputs(reqs, [AudioOutput("a", np.zeros((1, 1)), 16000), AudioOutput("b", np.zeros((1, 1)), 16000)], "m")
    with pytest.raises(FoleybenchError, match="batch contract"):
        check_outputs(reqs, [AudioOutput("b", np.zeros((1, 1)), 16000)], "m")


def test_leaderboard_marks_best_missing_and_proxy():
    rows = [
        {"model": "oracle", "values": {"av_align": 0.8, "fd": 1.0}, "ci": {"av_align": (0.7, 0.9)},
         "proxy": {"fd": True}, "n": 10},
        {"model": "noise", "values": {"av_align": 0.1, "fd": None}, "proxy": {}, "n": 10},
    ]
    md = render_table(rows, ["av_align", "fd"], {"av_align": True, "fd": False},
                      published=[PublishedRow(model="Paper", source="x", values={"fd": 2.5})])
    lines = md.splitlines()
    assert "av_align ↑" in lines[0] and "fd ↓" in lines[0]
    assert "**0.8000** [0.7000, 0.9000]" in lines[2]
    assert f"**1.000**{PROXY_MARK}" in lines[2]
    assert lines[3].split("|")[3].strip() == DASH  # missing is a dash, never 0
    assert "Paper (published)" in lines[4] and "| 2.5 |" in lines[4]


def test_drift_detects_changes_and_missing(tmp_path):
    golden = {"tolerances": {"default": {"abs": 0.0, "rel": 1e-3}, "av_align": {"abs": 0.01, "rel": 0}},
              "values": {"v2a": {"oracle": {"av_align": 0.5, "fd_x": 10.0}, "noise": {"fd_x": None}}}}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(golden))

    def cur(av=0.505, fd=10.005, noise=None, drop=False):
        oracle = {"av_align": av} if drop else {"av_align": av, "fd_x": fd}
        return {"v2a": {"oracle": oracle, "noise": {"fd_x": noise}}}

    rc, text = drift.check(path, cur())
    assert rc == 0 and "3 of 3" in text, text
    rc, text = drift.check(path, cur(av=0.52))    # av_align: abs 0.01 tolerance by metric name
    assert rc == 1 and "DRIFT" in text and "v2a/oracle/av_align" in text
    rc, text = drift.check(path, cur(drop=True))
    assert rc == 1 and "missing" in text
    rc, _ = drift.check(path, cur(noise=3.0))
    assert rc == 1
    rc, _ = drift.check(path, cur(fd=10.02))        # default: rel 1e-3 of 10
    assert rc == 1
    drift.update(path, cur(av=0.52))
    assert json.loads(path.read_text())["tolerances"] == golden["tolerances"]
    assert drift.check(path, cur(av=0.52))[0] == 0


def test_missing_and_corrupt_weights_errors(tmp_path):
    rec = weights.register(weights.WeightRecord("unit-test-net", "unit_test_net.pth", "https://example.org/u.pth",
                                                "0" * 64, "MIT", "none"))
    weights.set_weights_dir(tmp_path)
    try:
        with pytest.raises(weights.MissingWeightsError) as exc:
            weights.resolve("unit-test-net")
        msg = str(exc.value)
        assert "unit_test_net.pth" in msg and rec.url in msg and "foleybench weights fetch unit-test-net" in msg
        (tmp_path / "unit_test_net.pth").write_bytes(b"not the file")
        with pytest.raises(weights.ChecksumError, match="does not match"):
            weights.resolve("unit-test-net")
        assert [r["state"] for r in weights.status() if r["name"] == "unit-test-net"] == ["BAD SHA256"]
    finally:
        weights.set_weights_dir(None)
        weights.WEIGHTS.pop("unit-test-net")


def test_load_strict_names_every_problem():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    sd = net.state_dict()
    bad = dict(sd)
    bad.pop("1.bias")
    bad["extra.weight"] = torch.zeros(1)
    bad["0.weight"] = torch.zeros(5, 5)
    with pytest.raises(weights.StrictLoadError) as exc:
        weights.load_strict(net, bad, "ckpt.pth")
    msg = str(exc.value)
    assert "ckpt.pth" in msg and "1.bias" in msg and "extra.weight" in msg and "0.weight" in msg
    weights.load_strict(net, sd, "ok.pth")


def test_device_resolution():
    from foleybench.device import amp_dtype, inference, resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    with pytest.raises(FoleybenchError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FoleybenchError, match="CUDA is not available"):
            resolve_device("cuda")
    assert amp_dtype("cpu") is None
    with inference("cpu"):
        x = torch.ones(2, requires_grad=True) * 2
    assert not x.requires_grad and x.dtype == torch.float32
