"""What must reproduce bit for bit, and what a fingerprint covers (docs/PROTOCOL.md,
"Fingerprints" and "Reproducibility and goldens").

- A recipe-made dataset's fingerprint covers decoded content: rewriting an mp4 with
  other container bytes (here: another AAC track) but the same frames keeps it; a changed
  frame changes it.
- A folder of user files is fingerprinted by its files' bytes: changing what one file
  decodes to changes the fingerprint.
- The main job on one machine with one thread count is bit-reproducible: the same spec
  run twice from scratch (and once more, resumed) writes byte-identical leaderboard
  markdown and JSON, with no clock time in them.
- `bench` never retrains and never writes a shipped checkpoint; a stale one is named
  with its reason and its rows are marked.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from foleybench import media
from foleybench.baselines import martel_wagner as mw
from foleybench.bench import run_benchmark
from foleybench.datasets.base import Manifest
from foleybench.datasets.folder import folder_manifest
from foleybench.datasets.synthfoley import SynthConfig, generate
from foleybench.hashing import content_sha256, sha256_file


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Manifest:
    return generate(tmp_path_factory.mktemp("synth"), 3, seed=5, cfg=SynthConfig(duration_s=1.0))


def _rehash(m: Manifest) -> Manifest:
    """The manifest a fresh generation would write for the files as they are now."""
    return Manifest([dataclasses.replace(x, sha256=sha256_file(x.video),
                                         content_sha256=content_sha256(x.video, x.audio)) for x in m], m.root)


def test_fingerprint_covers_decoded_content_not_container_bytes(synth, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synth.root, root)
    m = Manifest.read(root / "manifest.csv")
    assert m.fingerprint() == synth.fingerprint()
    r = m.records[0]
    assert r.content_sha256 == content_sha256(r.video, r.audio)
    clip = media.read_video(r.video)
    # Same frames, another AAC track: other mp4 bytes, same decoded content, same fingerprint.
    media.write_mp4(r.video, clip.frames, clip.fps, 0.5 * media.read_audio(r.audio).samples, 16000)
    assert sha256_file(r.video) != r.sha256
    assert _rehash(m).fingerprint() == synth.fingerprint()
    # One changed pixel: other content, other fingerprint.
    frames = clip.frames.copy()
    frames[0, 0, 0, 0] ^= 1
    media.write_mp4(r.video, frames, clip.fps)
    assert _rehash(m).fingerprint() != synth.fingerprint()


def test_fingerprint_survives_a_round_trip_and_ignores_mp4_bytes(synth, monkeypatch, tmp_path):
    import shutil

    back = Manifest.read(synth.root / "manifest.csv")
    assert back.fingerprint() == synth.fingerprint()
    # Where the folder is, and how its path is spelled, does not matter.
    moved = shutil.copytree(synth.root, tmp_path / "elsewhere" / "set")
    monkeypatch.chdir(tmp_path)
    assert Manifest.read("elsewhere/set/manifest.csv").fingerprint() == synth.fingerprint()
    assert Manifest.read(moved / "manifest.csv").fingerprint() == synth.fingerprint()
    # The mp4 byte hash is not part of the fingerprint when content is known.
    blind = Manifest([dataclasses.replace(x, sha256="f" * 64) for x in synth.records], synth.root)
    assert blind.fingerprint() == synth.fingerprint()


def test_folder_fingerprint_follows_file_content(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        media.write_wav(tmp_path / f"clip{i}.wav", 0.1 * rng.standard_normal((1, 1600)).astype(np.float32), 16000)
    before = folder_manifest(tmp_path).fingerprint()
    assert folder_manifest(tmp_path).fingerprint() == before
    target = tmp_path / "clip1.wav"
    st = os.stat(target)
    media.write_wav(target, 0.1 * rng.standard_normal((1, 1600)).astype(np.float32), 16000)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert folder_manifest(tmp_path).fingerprint() != before


SPEC = """
name: repro
title: reproducibility canary
dataset: {{name: synthfoley, clips: 8, seed: 3, split: test, root: {root}}}
proxy: true
seed: 0
tasks:
  v2a:
    models: [oracle, noise, deepfusion.tiny]
    metrics: [av_align, fd_melstat]
"""


def _bench(tmp_path, data, tag):
    spec = tmp_path / "repro.yaml"
    spec.write_text(SPEC.format(root=data))
    lb = tmp_path / f"lb-{tag}"
    run_benchmark(str(spec), runs_dir=tmp_path / f"runs-{tag}", leaderboard_dir=lb, progress=False,
                  cache_dir=str(tmp_path / f"cache-{tag}"))
    return {p.name: p.read_bytes() for p in sorted(lb.iterdir()) if p.suffix in (".md", ".json")}


@pytest.fixture(scope="module")
def shipped_checkpoint():
    path = mw.default_checkpoint("deepfusion.tiny")
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    return path


def test_bench_is_bit_reproducible_and_never_writes_checkpoints(tmp_path, shipped_checkpoint):
    before = {p.name: sha256_file(p) for p in mw.CHECKPOINT_DIR.iterdir()}
    data = tmp_path / "data"
    first = _bench(tmp_path, data, "a")
    second = _bench(tmp_path, data, "b")
    assert first == second and set(first) == {"repro.md", "repro.json"}
    again = _bench(tmp_path, data, "a")           # resumed: media and cache reused
    assert again == first
    text = first["repro.md"].decode()
    assert "created" not in text and "commit" not in text and "code digest" in text
    assert "‡" not in text                           # the shipped checkpoint is current here
    assert {p.name: sha256_file(p) for p in mw.CHECKPOINT_DIR.iterdir()} == before


def test_stale_checkpoint_is_reported_and_marked_not_retrained(tmp_path, shipped_checkpoint, monkeypatch, caplog):
    before = sha256_file(shipped_checkpoint)
    monkeypatch.setattr(mw, "CODE_VERSION", "mw-test-bump")
    caplog.set_level("WARNING", logger="foleybench")
    out = _bench(tmp_path, tmp_path / "data", "stale")
    text = out["repro.md"].decode()
    assert "| deepfusion.tiny ‡ |" in text and "recipe changed" in text
    assert "stale checkpoint deepfusion.tiny" in caplog.text
    assert '"deepfusion.tiny"' in out["repro.json"].decode()
    assert sha256_file(shipped_checkpoint) == before
