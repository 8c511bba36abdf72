"""Bad-input corpus, part 2: broken *references*, manifests and cache entries (issue 15)."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import av
import numpy as np

from foleybench import cache as fcache
from tests.badinput_common import (
    assert_isolated,
    copy_dir,
    error_line,
    score,
    tone,
    write_wav,
)

pytest_plugins = ("tests.badinput_common",)  # the session-scoped `corpus` fixture


def _edit_manifest(ref: Path, cid: str, **changes: str) -> None:
    rows = list(csv.DictReader((ref / "manifest.csv").open()))
    for r in rows:
        if r["clip_id"] == cid:
            r.update(changes)
    with (ref / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_reference_wav_cut_in_half_is_excluded(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    cid = corpus["ids"][0]
    b = (ref / f"{cid}.wav").read_bytes()
    (ref / f"{cid}.wav").write_bytes(b[: len(b) // 2])
    _edit_manifest(ref, cid, audio_sha256="")  # not a hash mismatch case: the truncation must be seen itself
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "truncated")
    assert "truncated" in doc["pairing"]["excluded_ref"][cid]


def _faststart_cut(src: Path, dst: Path, keep: float) -> None:
    """Remux ``src`` with its sample table first (faststart), then cut the media data:
    the header declares every frame, fewer are there."""
    tmp = dst.with_suffix(".full.mp4")
    with av.open(str(src)) as ic, av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as oc:
        outs = {s.index: oc.add_stream_from_template(s) for s in ic.streams}
        for pk in ic.demux():
            if pk.dts is None:
                continue
            pk.stream = outs[pk.stream.index]
            oc.mux(pk)
    b = tmp.read_bytes()
    tmp.unlink()
    dst.write_bytes(b[: int(len(b) * keep)])


def test_reference_mp4_declaring_more_than_it_holds_is_excluded(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    cid = corpus["ids"][2]
    _faststart_cut(corpus["ref"] / f"{cid}.mp4", ref / f"{cid}.mp4", 0.5)
    _edit_manifest(ref, cid, sha256="")
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "declares")
    assert "video" in doc["pairing"]["excluded_ref"][cid]


def test_replaced_reference_fails_its_manifest_hash(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    cid = corpus["ids"][1]
    write_wav(ref / f"{cid}.wav", tone(1, 16000), 16000)  # same length, other content
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert_isolated(rc, doc, err, corpus["clean"], cid, "sha256", "content changed")
    assert doc["pairing"]["n_scored_pairs"] == len(corpus["ids"]) - 1


def test_manifest_bad_rows_are_excluded_not_fatal(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    ids = corpus["ids"]
    _edit_manifest(ref, ids[0], duration_s="-1")
    _edit_manifest(ref, ids[1], duration_s="nan")
    text = (ref / "manifest.csv").read_text()
    dup = [ln for ln in text.splitlines() if ln.startswith(ids[2] + ",")][0]
    (ref / "manifest.csv").write_text(text + dup + "\n" + ",x.mp4,,,1.0,l,test,,,\n")
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    ex = doc["pairing"]["excluded_ref"]
    assert "duration_s" in ex[ids[0]] and "duration_s" in ex[ids[1]] and "2 times" in ex[ids[2]]
    assert any("empty clip_id" in v for v in ex.values())
    for cid in ids[:3]:
        assert cid in err and cid not in doc["pairing"]["unpaired_pred"]
    assert doc["metrics"]["kl_panns"]["extras"]["per_clip"] == {
        ids[3]: corpus["clean"]["metrics"]["kl_panns"]["extras"]["per_clip"][ids[3]]}


def test_manifest_without_audio_column_uses_the_wav_beside_and_says_so(corpus, tmp_path, capsys):
    ref = copy_dir(corpus["ref"], tmp_path / "ref")
    rows = list(csv.DictReader((ref / "manifest.csv").open()))
    buf = io.StringIO()
    keep = [k for k in rows[0] if k not in ("audio", "audio_sha256")]
    w = csv.DictWriter(buf, fieldnames=keep, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    (ref / "manifest.csv").write_text(buf.getvalue())
    rc, doc, err = score(capsys, corpus["pred"], ref, tmp_path / "r.json", corpus["cache"])
    assert rc == 0, err
    assert "no audio column" in err and any("no audio column" in n for n in doc["pairing"]["notes"])
    assert doc["metrics"]["kl_panns"]["extras"]["per_clip"] == \
        corpus["clean"]["metrics"]["kl_panns"]["extras"]["per_clip"]


def test_manifest_that_is_not_text_is_one_error(corpus, tmp_path, capsys):
    bad = tmp_path / "manifest.csv"
    bad.write_bytes(bytes(range(256)) * 4)
    rc, doc, err = score(capsys, corpus["pred"], bad, tmp_path / "r.json", corpus["cache"])
    assert rc == 2 and "manifest.csv: not a manifest CSV" in error_line(err)


def test_ref_pointing_at_a_media_file_is_one_error(corpus, tmp_path, capsys):
    wav = corpus["ref"] / f"{corpus['ids'][0]}.wav"
    rc, _, err = score(capsys, corpus["pred"], wav, tmp_path / "r.json", corpus["cache"])
    assert rc == 2 and f"{wav}: is a media file" in error_line(err)


# ------------------------------------------------------------------ embedding cache
def _damage(cache: Path, how: str) -> list[Path]:
    entries = sorted(cache.rglob("*.fbe"))[:3]
    assert entries
    for p in entries:
        raw = p.read_bytes()
        if how == "flip":  # intact magic, checksum and npy header; the numbers changed
            p.write_bytes(raw[:-16] + bytes(b ^ 0xFF for b in raw[-16:]))
        elif how == "empty":
            p.write_bytes(b"")
        elif how == "nan":  # a well-formed entry (valid checksum) of NaNs
            buf = io.BytesIO()
            np.save(buf, np.full((3, 64), np.nan, np.float32))
            p.write_bytes(fcache._MAGIC + hashlib.sha256(buf.getvalue()).digest() + buf.getvalue())
        elif how == "shape":  # another array under the entry's name, without our header
            buf = io.BytesIO()
            np.save(buf, np.ones((7,), np.float32))
            p.write_bytes(buf.getvalue())
    return [p.relative_to(cache) for p in entries]


def _cache_case(corpus, tmp_path, capsys, how: str) -> None:
    """A damaged entry behaves exactly like a missing one: recomputed (same batches, so
    the same numbers), reported, repaired for the next run."""
    cache = copy_dir(corpus["cache_clean"], tmp_path / "cache")
    damaged = _damage(cache, how)
    missing = copy_dir(corpus["cache_clean"], tmp_path / "missing")
    for rel in damaged:
        (missing / rel).unlink()
    rc, want, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "m.json", missing)
    assert rc == 0 and want["cache"]["repaired"] == 0 and "cache entry" not in err
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r.json", cache)
    assert rc == 0, err
    assert doc["cache"]["repaired"] == len(damaged) and err.count("foleybench: warning: cache entry") == len(damaged)
    assert all(str(cache / rel) in err for rel in damaged)
    assert "recomputed" in err and "damaged embedding cache" in err
    for m in ("av_align", "fd_melstat", "kl_panns"):
        assert doc["metrics"][m]["value"] == want["metrics"][m]["value"], m
        assert doc["metrics"][m]["value"] is not None
    rc, doc, err = score(capsys, corpus["pred"], corpus["ref"], tmp_path / "r2.json", cache)
    assert rc == 0 and doc["cache"]["repaired"] == 0  # repaired for good


def test_cache_entry_with_flipped_bytes_is_recomputed(corpus, tmp_path, capsys):
    _cache_case(corpus, tmp_path, capsys, "flip")


def test_empty_cache_entry_is_recomputed(corpus, tmp_path, capsys):
    _cache_case(corpus, tmp_path, capsys, "empty")


def test_all_nan_cache_entry_is_recomputed(corpus, tmp_path, capsys):
    _cache_case(corpus, tmp_path, capsys, "nan")


def test_wrong_shape_cache_entry_is_recomputed(corpus, tmp_path, capsys):
    _cache_case(corpus, tmp_path, capsys, "shape")
