"""Bad-input corpus, part 4: the classes a second, independently built corpus found
(issue 15, "judged against a second corpus"): damaged value-memo entries, cache paths that
are folders or files, manifest encodings and headers, prediction names that are not
files, header sample rates no audio has, content that is not what its name says,
silence that only the mono mix shows, short predictions without a protocol length, and
a ``--checkpoint`` nothing uses. Each case: no traceback, the file/name and the problem
said, the rest of the run complete, no other clip's value moved."""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

from tests.badinput_common import assert_isolated, copy_dir, error_line, score, write_wav

pytest_plugins = ("tests.badinput_common",)  # the session-scoped `corpus` fixture


def _pred_with(corpus, tmp_path):
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    cid = corpus["ids"][0]
    return pred, cid, pred / f"{cid}.wav"


# ------------------------------------------------------------------ the value memo (cache/values)
def _edit_value(doc):
    doc["value"]["value"] = 1.25e46  # the checksum still names the old number


def _wrong_type(doc):
    doc["value"] = "garbage"


def _no_checksum(doc):  # an entry as an older code version wrote it
    doc.pop("sha256", None)


@pytest.mark.parametrize("damage", [_edit_value, _wrong_type, _no_checksum, "nan"],
                         ids=["edited-number", "wrong-type", "older-format", "bare-nan"])
def test_damaged_value_memo_is_recomputed_and_reported(corpus, tmp_path, capsys, damage):
    cache = copy_dir(corpus["cache_clean"], tmp_path / "cache")
    entries = sorted(cache.glob("values/*/*.json"))
    assert entries, "the clean run stores fd_melstat's value in the memo"
    for f in entries:
        if damage == "nan":
            f.write_text(f.read_text().replace('"value": {"value": ', '"value": {"value": NaN, "was": ', 1))
        else:
            doc = json.loads(f.read_text())
            damage(doc)
            f.write_text(json.dumps(doc))
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", cache)
    assert rc == 0 and "Traceback" not in err, err
    clean = corpus["clean"]["metrics"]["fd_melstat"]
    assert doc["metrics"]["fd_melstat"]["value"] == clean["value"] and doc["metrics"]["fd_melstat"]["ci"] == clean["ci"]
    assert doc["cache"]["repaired"] == len(entries)
    assert any("values" in r["entry"] for r in doc["cache"]["repairs"])
    assert "cache value" in err and "recomputed" in err
    if damage is not _edit_value:
        return
    # the entry was rewritten sound: the next run trusts it and reports nothing
    rc, doc2, err2 = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r2.json", cache)
    assert rc == 0 and doc2["cache"]["repaired"] == 0 and doc2["metrics"]["fd_melstat"]["value"] == clean["value"]


def test_folder_on_a_cache_entry_name_costs_time_not_the_run(corpus, tmp_path, capsys):
    cache = copy_dir(corpus["cache_clean"], tmp_path / "cache")
    for f in cache.glob("*/*.fbe"):
        f.unlink()
        f.mkdir()
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", cache)
    assert rc == 0 and "Traceback" not in err, err
    assert doc["metrics"]["kl_panns"]["extras"]["per_clip"] == corpus["clean"]["metrics"]["kl_panns"]["extras"]["per_clip"]
    assert "not stored" in err and doc["cache"]["repaired"] > 0


def test_cache_dir_that_is_a_file_is_one_error(corpus, tmp_path, capsys):
    f = tmp_path / "cachefile"
    f.write_text("x")
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", f)
    assert rc == 2 and "cachefile: is a file, not a folder" in error_line(err)
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------ manifests
def test_manifest_with_a_byte_order_mark_reads_the_same(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    (ref / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + (ref / "manifest.csv").read_bytes())
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    assert doc["metrics"]["kl_panns"]["value"] == corpus["clean"]["metrics"]["kl_panns"]["value"]
    assert doc["dataset"]["fingerprint"] == corpus["clean"]["dataset"]["fingerprint"]


def test_manifest_with_a_column_twice_is_one_error(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    lines = (ref / "manifest.csv").read_text().splitlines()
    lines = [lines[0] + ",label"] + [ln + ",another label" for ln in lines[1:]]
    (ref / "manifest.csv").write_text("\n".join(lines) + "\n")
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 2 and "column 'label' appears 2 times" in error_line(err) and "manifest.csv" in error_line(err)


@pytest.mark.parametrize("edit,n", [(lambda ln: ",".join(ln.split(",")[:3]), 3),          # a cut line
                                    (lambda ln: ln.replace("test,", "test,extra,", 1), 11)],  # a comma not quoted
                         ids=["short-row", "long-row"])
def test_manifest_row_with_the_wrong_field_count_is_excluded(corpus, tmp_path, capsys, edit, n):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    cid = corpus["ids"][0]
    lines = (ref / "manifest.csv").read_text().splitlines()
    lines = [edit(ln) if ln.startswith(cid + ",") else ln for ln in lines]
    (ref / "manifest.csv").write_text("\n".join(lines) + "\n")
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, f"the row has {n} fields, the header 10")
    assert cid in doc["pairing"]["excluded_ref"]


def test_manifest_with_only_a_header_is_one_error(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    (ref / "manifest.csv").write_text((ref / "manifest.csv").read_text().splitlines()[0] + "\n")
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 2 and "manifest.csv: no clip rows" in error_line(err)


# ------------------------------------------------------------------ names that are not files
@pytest.mark.parametrize("kind,words", [("folder", "is a folder"), ("loop", "symbolic link loop"),
                                        ("dangling", "broken symbolic link")])
def test_prediction_name_that_is_not_a_file_is_listed(corpus, tmp_path, capsys, kind, words):
    pred, cid, path = _pred_with(corpus, tmp_path)
    path.unlink()
    if kind == "folder":
        path.mkdir()
    else:
        os.symlink(path.name if kind == "loop" else str(tmp_path / "gone.wav"), path)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, words)
    assert cid in doc["pairing"]["invalid_pred"] and cid not in doc["pairing"]["missing_pred"]


def test_hidden_clip_in_a_reference_folder_is_noted(corpus, tmp_path, capsys):
    """Dot-files are not clips (documented): a reference folder's hidden clip is said, by name."""
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    (ref / "manifest.csv").unlink()
    pred, cid, path = _pred_with(corpus, tmp_path)
    for ext in ("mp4", "wav"):
        (ref / f"{cid}.{ext}").rename(ref / f".{cid}.{ext}")
    path.rename(pred / f".{cid}.wav")
    rc, doc, err = score(capsys, pred, ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    notes = "\n".join(doc["pairing"]["notes"])
    assert f".{cid}.mp4" in notes and f".{cid}.wav" in notes and "hidden" in notes
    assert f".{cid}" in err and "hidden" in err


# ------------------------------------------------------------------ headers and content
def test_implausible_header_sample_rate_is_excluded(corpus, tmp_path, capsys):
    """A wav whose header says 1 Hz would decode to hours at 16 kHz: excluded by its header."""
    pred, cid, path = _pred_with(corpus, tmp_path)
    b = bytearray(path.read_bytes())
    i = b.index(b"fmt ")
    b[i + 12:i + 20] = struct.pack("<II", 1, 2)  # sample rate 1 Hz, byte rate 2
    path.write_bytes(b)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "implausible sample rate 1 Hz")


def test_compressed_content_under_a_wav_name_is_said(corpus, tmp_path, capsys):
    pred, cid, path = _pred_with(corpus, tmp_path)
    x, sr = sf.read(str(path), dtype="float32")
    sf.write(str(tmp_path / "x.ogg"), x, sr, format="OGG", subtype="VORBIS")
    shutil.move(tmp_path / "x.ogg", path)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "holds OGG data, not WAV")
    assert cid in doc["metrics"]["kl_panns"]["extras"]["per_clip"]  # scored, as decoded


def test_channels_that_cancel_in_the_mono_mix_are_a_silence_warning(corpus, tmp_path, capsys):
    pred, cid, path = _pred_with(corpus, tmp_path)
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    write_wav(path, np.concatenate([x, -x], 1), sr)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "silent once its 2 channels are mixed")


def test_short_prediction_without_clip_seconds_is_a_warning(corpus, tmp_path, capsys):
    pred, cid, path = _pred_with(corpus, tmp_path)
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    write_wav(path, x[: len(x) // 2], sr)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "shorter than its reference")
    assert "scored whole" in doc["pairing"]["warnings"][cid]


def test_checkpoint_that_no_metric_uses_is_noted(corpus, tmp_path, capsys):
    import torch

    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pt")
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                         "--checkpoint", f"clap={tmp_path / 'w.pt'}")
    assert rc == 0, err
    assert any("no requested metric uses embedder 'clap'" in n for n in doc["pairing"]["notes"])
    assert "--checkpoint clap=" in err
    assert doc["metrics"]["kl_panns"]["value"] == corpus["clean"]["metrics"]["kl_panns"]["value"]


# ------------------------------------------------------------------ option values and the environment
@pytest.mark.parametrize("opt,message", [
    ("fd_melstat.embedder=panns", "fd_melstat.embedder: fixed by the metric's name"),
    ("fd_melstat.n_boot=1000000000000", "fd_melstat.n_boot: must be <= 100000"),
    ("fd_melstat.ddof=50", "fd_melstat.ddof: must be 0 or 1"),
    ("fd_melstat.ddof=-1", "fd_melstat.ddof: must be 0 or 1"),
    ("av_align.workers=-3", "av_align.workers: must be >= 1"),
    ("av_align.n_boot=.nan", "av_align.n_boot: expected int"),
], ids=["embedder-override", "n_boot-huge", "ddof-big", "ddof-negative", "workers-negative", "nan"])
def test_option_values_no_one_means_are_one_line_errors(corpus, tmp_path, capsys, opt, message):
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"], "--opt", opt)
    assert rc == 2 and message in error_line(err) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name,value,message", [
    ("FOLEYBENCH_AV_ALIGN_WORKERS", "many", "expected an integer >= 1"),
    ("FOLEYBENCH_BOOTSTRAP_THREADS", "-4", "must be >= 1"),
    ("FOLEYBENCH_FRECHET_THREADS", "x", "expected an integer >= 1"),
    ("FOLEYBENCH_CACHE", "FILE", "is a file, not a folder"),
    ("FOLEYBENCH_WEIGHTS", "FILE", "is a file, not a folder"),
])
def test_bad_environment_values_are_one_line_errors(corpus, tmp_path, capsys, monkeypatch, name, value, message):
    if value == "FILE":
        value = str(tmp_path / "f")
        (tmp_path / "f").write_text("x")
    monkeypatch.setenv(name, value)
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"])
    line = error_line(err)
    assert rc == 2 and line.startswith(f"foleybench: error: {name}=") and message in line


# ------------------------------------------------------------------ other commands
@pytest.mark.parametrize("metrics", ["", ",,", " "], ids=["empty", "commas", "blank"])
def test_metrics_naming_nothing_is_one_error(corpus, tmp_path, capsys, metrics):
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"], metrics=metrics)
    assert rc == 2 and "--metrics: no metric name" in error_line(err) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("args,message", [
    (["--sample-rate", "1"], "--sample-rate: must be in [8000, 192000] Hz"),
    (["--fps", "1e9"], "GB while it is drawn"),
    (["--duration", "1e12"], "GB while it is drawn"),
    (["--size", "100000"], "GB while it is drawn"),
], ids=["rate-1", "fps-huge", "duration-huge", "size-huge"])
def test_synth_settings_that_cannot_be_drawn_are_one_error(tmp_path, capsys, args, message):
    from foleybench.cli import main

    rc = main(["synth", "--out", str(tmp_path / "s"), "--clips", "1", *args])
    assert rc == 2 and message in error_line(capsys.readouterr().err) and not (tmp_path / "s").exists()


def test_weights_verify_of_an_unknown_name_is_one_error(capsys):
    from foleybench.cli import main

    rc = main(["weights", "verify", "pans"])
    assert rc == 2 and "unknown weight 'pans'; did you mean 'panns'" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize("args,message", [
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--seed", "99999999999999999999"], "--seed: must be <= 4294967295"),
    (["--num-workers", "100000"], "--num-workers: must be <= 256"),
], ids=["seed-negative", "seed-huge", "workers-huge"])
def test_out_of_range_seed_and_workers_are_one_line_errors(corpus, tmp_path, capsys, args, message):
    from foleybench.cli import main

    with pytest.raises(SystemExit) as e:
        main(["score", "--task", "v2a", "--pred", str(corpus["pred"]), "--ref", str(corpus["ref"]), "--metrics",
              "av_align", "--out", str(tmp_path / "r.json"), *args])
    assert e.value.code == 2 and message in error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ A2V: videos that start late or end early
def _mp4(path, frames, fps, drop_first_packets=0):
    """h264 ``frames`` at ``fps``, keyframe every 8 frames, without its first packets."""
    import av

    with av.open(str(path), "w", format="mp4") as oc:
        st = oc.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.options = {"x264-params": "keyint=8:min-keyint=8:scenecut=0:bframes=0"}
        k = 0
        for f in [*frames, None]:
            for pk in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24") if f is not None else None):
                if k >= drop_first_packets:
                    oc.mux(pk)
                k += 1


def test_a2v_video_without_its_first_keyframe_or_far_too_short_is_said(corpus, tmp_path, capsys):
    pred = tmp_path / "a2v"
    pred.mkdir()
    rng = np.random.default_rng(3)
    ids = corpus["ids"]
    frames = {cid: rng.integers(0, 255, (16, 32, 32, 3), dtype=np.uint8) for cid in ids}
    for cid in ids:
        _mp4(pred / f"{cid}.mp4", frames[cid], 16)
    rc, clean, err = score(capsys, pred, corpus["ref"], tmp_path / "clean.json", corpus["cache"], task="a2v",
                           metrics="av_align")
    assert rc == 0, err
    _mp4(pred / f"{ids[0]}.mp4", frames[ids[0]], 16, drop_first_packets=1)  # starts at its second keyframe
    _mp4(pred / f"{ids[1]}.mp4", frames[ids[1]], 1000)                      # 16 ms for a 1 s clip
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"], task="a2v",
                         metrics="av_align")
    assert rc == 0 and "Traceback" not in err, err
    assert "first keyframe is at 0.4" in doc["pairing"]["invalid_pred"][ids[0]]
    assert "shorter than its reference" in doc["pairing"]["warnings"][ids[1]]
    assert ids[0] in err and ids[1] in err
    per = doc["metrics"]["av_align"]["extras"]["per_clip"]
    for cid in ids[2:]:
        assert per[cid] == clean["metrics"]["av_align"]["extras"]["per_clip"][cid]


@pytest.mark.parametrize("opts,message", [
    (["fd_melstat.n_boot="], "no value after '='"),
    (["fd_melstat.n_boot=5", "fd_melstat.n_boot=7"], "fd_melstat.n_boot: given twice (5 and '7')"),
], ids=["empty-value", "twice"])
def test_opt_without_a_value_or_given_twice_is_one_error(corpus, tmp_path, capsys, opts, message):
    extra = [x for o in opts for x in ("--opt", o)]
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"], *extra)
    assert rc == 2 and message in error_line(err)


@pytest.mark.parametrize("extra,message", [
    (["--split", "tset"], "--split: no clip of"),
    (["--dataset", "vggsound"], "VGGSound test manifest clips"),
], ids=["split-misspelt", "vggsound-on-another-folder"])
def test_reference_selection_that_selects_nothing_is_said(corpus, tmp_path, capsys, extra, message):
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"], *extra)
    line = error_line(err)
    assert rc == 2 and message in line and "prediction" not in line


def test_out_that_is_a_special_file_or_a_media_name_is_refused(corpus, tmp_path, capsys):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)  # the atomic rename would replace the node (it replaced /dev/full as root)
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], fifo, corpus["cache"])
    assert rc == 2 and "not a regular file" in error_line(err) and fifo.is_fifo()
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    victim = pred / f"{corpus['ids'][0]}.wav"
    before = victim.read_bytes()
    rc, doc, err = score(capsys, pred, corpus["ref"], victim, corpus["cache"])
    assert rc == 2 and "names a media file" in error_line(err) and victim.read_bytes() == before


def test_pred_that_is_the_reference_folder_is_noted(corpus, tmp_path, capsys):
    rc, doc, err = score(capsys, corpus["ref"], corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    assert any("is the reference folder" in n for n in doc["pairing"]["notes"]) and "is the reference folder" in err


def test_weights_dir_that_is_a_file_is_one_error(corpus, tmp_path, capsys):
    (tmp_path / "w").write_text("x")  # ignored before: every evaluator fell back without a word
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                         "--weights-dir", str(tmp_path / "w"))
    assert rc == 2 and "--weights-dir" in error_line(err) and "is a file, not a folder" in error_line(err)


def test_a_file_the_os_refuses_to_read_is_excluded_by_id(corpus, tmp_path, capsys, monkeypatch):
    """chmod 000 as a non-root user (root reads anyway, so the refusal is simulated): one
    clip's PermissionError excludes that clip; it ended the whole run before."""
    from foleybench import media_check

    pred, cid, path = _pred_with(corpus, tmp_path)
    real = media_check._problem

    def refuse(p):
        if p == str(path):
            raise PermissionError(13, "Permission denied", p)
        return real(p)

    monkeypatch.setattr(media_check, "_problem", refuse)
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "unreadable (Permission denied)")


def test_bad_device_and_odd_synth_size_name_their_option(corpus, tmp_path, capsys):
    from foleybench.cli import main

    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", corpus["cache"],
                         "--device", "gpu0")
    assert rc == 2 and "--device gpu0: unknown device" in error_line(err)
    assert main(["synth", "--out", str(tmp_path / "s"), "--size", "33"]) == 2
    assert "--size: size must be even" in error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ batch composition
@pytest.mark.parametrize("bad", ["first", "middle"])
def test_excluded_clip_moves_no_other_value_with_a_fresh_cache(corpus, tmp_path, capsys, bad):
    """The judge's way: each run with its own empty cache, so every clip is embedded again
    next to different neighbours (a bad clip's exclusion shifts the batches). On CPU the
    embedders run one clip per forward pass by default, so the other clips' per-clip
    values (PANNs logits behind kl_panns were 3e-5 relative off with batched forwards) are
    bit for bit those of a run without the bad clip."""
    ids = corpus["ids"]
    cid = ids[0] if bad == "first" else ids[len(ids) // 2]
    pred = copy_dir(corpus["pred"], tmp_path / "pred")
    (pred / f"{cid}.wav").write_bytes(b"RIFF\x00\x00")  # unreadable: excluded by id
    rc, doc, err = score(capsys, pred, corpus["ref"], tmp_path / "bad.json", tmp_path / "cache_bad",
                         "--batch-size", "3")
    assert doc is not None and doc["protocol"]["batch_invariant"] is True
    # the clean reference run, also with a fresh cache and another batch size
    rc0, clean, err0 = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "clean.json", tmp_path / "cache_clean",
                             "--batch-size", "4")
    assert rc0 == 0, err0
    assert_isolated(rc, doc, err, clean, cid)
    assert set(doc["metrics"]["kl_panns"]["extras"]["per_clip"]) == set(ids) - {cid}


def test_batch_invariance_is_a_recorded_choice(corpus, tmp_path, capsys):
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", tmp_path / "c",
                         "--no-batch-invariant", metrics="kl_panns")
    assert rc == 0, err
    assert doc["protocol"]["batch_invariant"] is False
