"""Bad-input corpus, part 3: mistakes on the command line, generation, strict JSON,
bounded memory (issue 15). Every error is one line naming the option/file and exit 2."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import media
from foleybench.cli import main
from foleybench.results import write_json
from tests.badinput_common import METRICS, copy_dir, error_line, score, tone, write_wav

pytest_plugins = ("tests.badinput_common",)  # the session-scoped `corpus` fixture


def _run(capsys, *args: str) -> tuple[int, str]:
    rc = main(list(args))
    return rc, capsys.readouterr().err


def _exit(capsys, *args: str) -> tuple[int, str]:
    """argparse errors exit: the code and the one line."""
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return int(e.value.code), capsys.readouterr().err


BAD_NUMBERS = [
    (["--clip-seconds", "-2"], "--clip-seconds: must be > 0"),
    (["--batch-size", "0"], "--batch-size: must be > 0"),
    (["--num-workers", "-1"], "--num-workers: must be >= 0"),
    (["--clip-seconds", "nan"], "--clip-seconds: must be finite"),
    (["--batch-size", "two"], "--batch-size: expected an integer"),
]


@pytest.mark.parametrize("extra,message", BAD_NUMBERS, ids=[m.split(":")[0] + "=" + e[1] for e, m in BAD_NUMBERS])
def test_bad_numbers_are_one_line_errors(corpus, tmp_path, capsys, extra, message):
    code, err = _exit(capsys, "score", "--task", "v2a", "--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]),
                      "--metrics", "av_align", "--out", str(tmp_path / "r.json"), *extra)
    assert code == 2 and message in error_line(err) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args,message", [
    (["synth", "--fps", "0"], "--fps: must be > 0"),
    (["synth", "--duration", "0"], "--duration: must be > 0"),
    (["synth", "--clips", "-1"], "--clips: must be > 0"),
    (["generate", "--task", "v2a", "--model", "noise", "--data", "D", "--out", "O", "--limit", "-2"],
     "--limit: must be >= 0"),
], ids=["synth-fps-0", "synth-duration-0", "synth-clips-neg", "generate-limit-neg"])
def test_bad_command_numbers(tmp_path, capsys, args, message):
    args = [a.replace("D", str(tmp_path)) if a == "D" else a for a in args]
    code, err = _exit(capsys, *args, *(["--out", str(tmp_path / "s")] if args[0] == "synth" else []))
    assert code == 2 and message in error_line(err)


def test_short_synth_duration_is_a_printed_rule(tmp_path, capsys):
    rc, err = _run(capsys, "synth", "--out", str(tmp_path / "s"), "--clips", "1", "--duration", "0.1")
    assert rc == 0 and "at least 8 frames" in err and "0.5 s" in err


def test_out_that_is_a_folder_fails_before_work(corpus, tmp_path, capsys):
    rc, err = _run(capsys, "score", "--task", "v2a", "--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]),
                   "--metrics", METRICS, "--proxy", "--out", str(tmp_path))
    assert rc == 2 and f"{tmp_path}: is a folder" in error_line(err)
    assert "summary" not in err  # nothing was scored


def test_out_under_a_file_fails_before_work(corpus, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "r.json"
    rc, err = _run(capsys, "score", "--task", "v2a", "--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]),
                   "--metrics", METRICS, "--proxy", "--out", str(out))
    assert rc == 2 and str(out) in error_line(err) and "is a file" in err
    rc, err = _run(capsys, "generate", "--task", "v2a", "--model", "noise", "--data", str(corpus["ref"]),
                   "--out", str(tmp_path / "f"))
    assert rc == 2 and "is a file" in error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder_fails_before_work(corpus, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, err = _run(capsys, "score", "--task", "v2a", "--pred", str(corpus["pred"]), "--ref",
                       str(corpus["ref"]), "--metrics", METRICS, "--proxy", "--out", str(ro / "r.json"))
        assert rc == 2 and "not writable" in error_line(err)
    finally:
        ro.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("opt,message", [
    ("fd_melstat.n_boot=abc", "fd_melstat.n_boot: expected int"),
    ("fd_melstat.n_boot=-5", "fd_melstat.n_boot: must be >= 0"),
    ("fd_melstat.nboot=3", "fd_melstat.nboot: metric 'fd_melstat' has no option"),
    ("fd_melstat.fd_inf=3", "fd_melstat.fd_inf: expected bool"),
    ("clipsim.prompt=x", "metric 'clipsim' is not among"),
], ids=["type", "negative", "unknown-key", "bool", "other-metric"])
def test_invalid_opt_values_are_one_line_errors(corpus, tmp_path, capsys, opt, message):
    rc, _, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"], "--opt", opt)
    assert rc == 2 and message in error_line(err)


def _ckpt(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / ("w.safetensors" if kind == "safetensors" else "w.pt")
    if kind == "text":
        p.write_text("<html>404 not found</html>\n")
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "safetensors":
        p.write_bytes((200).to_bytes(8, "little") + b'{"a":{"dtype":"F32","shape":[9],"data_offsets":[0,36]}}')
    elif kind == "foreign":
        torch.save({"w": torch.zeros(3)}, p)
    return p


@pytest.mark.parametrize("kind,message", [
    ("text", "not a PyTorch or safetensors checkpoint"), ("empty", "empty file"),
    ("safetensors", "damaged or truncated safetensors"), ("foreign", "checkpoint does not fit the network"),
])
def test_unloadable_checkpoints_are_one_line_errors(corpus, tmp_path, capsys, kind, message):
    ck = _ckpt(tmp_path, kind)
    rc, _, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                       "--checkpoint", f"panns={ck}", metrics="kl_panns")
    assert rc == 2 and f"{ck}: {message}" in error_line(err)


def test_checkpoint_for_an_unknown_embedder_suggests_names(corpus, tmp_path, capsys):
    ck = _ckpt(tmp_path, "foreign")
    rc, _, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                       "--checkpoint", f"pans={ck}", metrics="kl_panns")
    assert rc == 2 and "--checkpoint pans: unknown embedder 'pans'; did you mean 'panns'" in error_line(err)


def test_unknown_metric_and_model_names(corpus, tmp_path, capsys):
    rc, _, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                       metrics="fd_vgish")
    assert rc == 2 and "unknown metric 'fd_vgish'; did you mean 'fd_vggish'" in error_line(err)
    rc, err = _run(capsys, "generate", "--task", "v2a", "--model", "oracel", "--data", str(corpus["ref"]),
                   "--out", str(tmp_path / "g"))
    assert rc == 2 and "did you mean 'oracle'" in error_line(err) and not (tmp_path / "g").exists()


# ------------------------------------------------------------------ generate
def test_generate_skips_a_reference_without_audio_and_a_negative_duration(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    ids = corpus["ids"]
    v = media.read_video(ref / f"{ids[0]}.mp4")
    media.write_mp4(ref / f"{ids[0]}.mp4", v.frames, v.fps)  # video only: the oracle has nothing to copy
    text = (ref / "manifest.csv").read_text().splitlines()
    fixed = []
    for ln in text:
        cells = ln.split(",")
        if cells[0] == ids[0]:
            cells[2] = cells[3] = cells[8] = cells[9] = ""  # no wav, no hashes for the replaced mp4
        if cells[0] == ids[1]:
            cells[4] = "-2.0"
        fixed.append(",".join(cells))
    (ref / "manifest.csv").write_text("\n".join(fixed) + "\n")
    out = tmp_path / "gen"
    rc, err = _run(capsys, "generate", "--task", "v2a", "--model", "oracle", "--data", str(ref), "--out", str(out),
                   "--device", "cpu")
    assert rc == 0, err
    idx = json.loads((out / "generation.json").read_text())
    assert set(idx["failures"]) == {ids[0], ids[1]} and idx["generated"] == len(ids) - 2
    assert "no audio" in idx["failures"][ids[0]] and "duration_s" in idx["failures"][ids[1]]
    assert ids[0] in err and ids[1] in err
    assert sorted(p.stem for p in out.glob("*.wav")) == sorted(ids[2:])
    mode = stat.S_IMODE((out / f"{ids[2]}.wav").stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # follows the umask, not mkstemp's 0600
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_killed_write_leaves_nothing_that_pairs(tmp_path):
    target = tmp_path / "clip.wav"
    with pytest.raises(RuntimeError), media._atomic_target(target) as tmp:
        tmp.write_bytes(b"")
        assert not tmp.name.endswith(".wav") and tmp.name.startswith(".")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ strict JSON
def test_results_are_strict_json_with_reasons(tmp_path):
    p = write_json(tmp_path / "r.json", {"m": {"value": float("nan"), "ci": [float("-inf"), 1.0], "n": 3},
                                         "x": np.float32("inf")})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["m"]["value"] is None and doc["m"]["ci"] == [None, 1.0] and doc["x"] is None
    assert doc["m"]["non_finite"] == {"value": "nan", "ci": "-inf"} and doc["non_finite"] == {"x": "inf"}


# ------------------------------------------------------------------ A2V predictions
def test_a2v_one_frame_tiny_and_videoless_predictions(corpus, tmp_path, capsys):
    pred = tmp_path / "a2v"
    pred.mkdir()
    rng = np.random.default_rng(0)
    ids = corpus["ids"]
    for cid in ids:
        media.write_mp4(pred / f"{cid}.mp4", rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8), 16.0)
    media.write_mp4(pred / f"{ids[0]}.mp4", rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 16.0)
    media.write_mp4(pred / f"{ids[1]}.mp4", rng.integers(0, 255, (16, 2, 2, 3), dtype=np.uint8), 16.0)
    write_wav(tmp_path / "a.wav", tone(1, 16000), 16000)
    import av

    with av.open(str(tmp_path / "a.wav")) as ic, av.open(str(pred / f"{ids[2]}.mp4"), "w", format="mp4") as oc:
        oa = oc.add_stream("aac", rate=16000)
        for frame in ic.decode(audio=0):
            frame.pts = None
            for pk in oa.encode(frame):
                oc.mux(pk)
        for pk in oa.encode():
            oc.mux(pk)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"], task="a2v",
                         metrics="av_align")
    assert rc == 0, err
    assert "no video stream" in doc["pairing"]["invalid_pred"][ids[2]] and ids[2] in err
    assert ids[0] in err and (ids[0] in doc["pairing"]["invalid_pred"] or
                              any(e[0] == ids[0] for e in doc["metrics"]["av_align"]["excluded"]) or
                              ids[0] in doc["metrics"]["av_align"]["extras"]["per_clip"])
    assert ids[3] in doc["metrics"]["av_align"]["extras"]["per_clip"]


# ------------------------------------------------------------------ bounded memory
def test_chunked_encodec_and_vggish_match_the_whole_pass():
    """Long inputs run in chunks (benchmarks/perf_memory.py measures the memory); on a
    short input forced through small chunks the embedding is the one-pass embedding."""
    from foleybench.metrics.embedders.encodec import HOP
    from foleybench.metrics.embedders.encodec import build as encodec
    from foleybench.metrics.embedders.vggish import build as vggish

    rng = np.random.default_rng(0)
    e = encodec(mode="proxy")
    x = rng.normal(0, 0.1, 24000 + 123).astype(np.float32)
    whole = e._run([x], e._embed)[0]
    e.chunk_samples = 20 * HOP
    chunked = e._run([x], e._embed)[0]
    assert chunked.shape == whole.shape and np.allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    v = vggish(mode="proxy")
    y = rng.normal(0, 0.1, 16000 * 5 + 77).astype(np.float32)
    whole = v._run([y], v._embed)[0]
    v.chunk_examples = 2
    chunked = v._run([y], v._embed)[0]
    assert chunked.shape == whole.shape == (5, 128) and np.allclose(chunked, whole, rtol=1e-5, atol=1e-5)


def test_long_file_preprocessing_matches_the_plain_path(tmp_path, monkeypatch):
    from foleybench import media_long

    path = write_wav(tmp_path / "long.wav", tone(6, 22050, 2) + 0.05, 22050)
    clip = media.read_audio(path)
    monkeypatch.setattr(media_long, "MARGIN_S", 0.5)
    monkeypatch.setattr(media_long, "LEAN_ABOVE_S", 2.0)
    for secs in (2.0, None):
        plain = media.preprocess_audio(clip.samples, clip.sample_rate, 16000, secs)
        lean = media_long.load_preprocessed(str(path), 16000, secs)
        assert lean.shape == plain.shape and np.array_equal(lean, plain)  # bit for bit
