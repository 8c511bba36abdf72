"""avc (baselines/correspondence.py): what it trains on, the record of what the shipped
checkpoint trained on, and the make-up of its training batches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import train as T
from foleybench.baselines import correspondence as co


def test_avc_declares_its_own_train_only_set():
    spec = T.train_data_spec(co._Cfg(co.TRAIN))
    assert spec == co.TRAIN["train_data"] and spec["seed"] != T.BENCH_SEED and spec["clips"] >= 200
    assert co.train_dir_path() == Path("runs/data") / f"synthfoley-{spec['clips']}-s{spec['seed']}-train"


def test_shipped_checkpoint_records_what_it_trained_on():
    from foleybench.weights import sha256_file

    assert co.CHECKPOINT.stat().st_size < 2 * 2**20
    assert sha256_file(co.CHECKPOINT) == co.CHECKPOINT_SHA
    ck = torch.load(co.CHECKPOINT, map_location="cpu", weights_only=False)
    assert ck["train"] == co.TRAIN  # the recipe in the module is the one that made the file
    assert ck["train_data"] == co.TRAIN["train_data"] and ck["n_train_clips"] == co.TRAIN["train_data"]["clips"]
    assert ck["data_fingerprint"] == co.TRAINED_ON_FINGERPRINT and len(ck["losses"]) == co.TRAIN["steps"]


def test_rendered_train_set_is_the_recorded_one_and_disjoint_from_the_test_clips():
    own, bench = co.train_dir_path(), Path(T.DEFAULT_DATA)
    if not (own / "manifest.csv").is_file() or not (bench / "manifest.csv").is_file():
        pytest.skip(f"{own} or {bench} not rendered (python -m foleybench.baselines.correspondence renders it)")
    train = T.read_manifest(own)
    assert {r.split for r in train} == {"train"} and len(train) == co.TRAIN["train_data"]["clips"]
    assert train.split("train").fingerprint() == co.TRAINED_ON_FINGERPRINT
    test = T.read_manifest(bench).split("test")
    assert not {r.content_sha256 for r in train} & {r.content_sha256 for r in test}
    assert not {r.audio_sha256 for r in train} & {r.audio_sha256 for r in test}


def test_first_clips_of_the_avc_seed_are_not_benchmark_clips(tmp_path):
    """Cheap form of the disjointness check above, without the rendered sets."""
    from foleybench.datasets.synthfoley import SynthConfig, generate

    cfg = SynthConfig(duration_s=1.0)
    own = generate(tmp_path / "own", 7, seed=co.TRAIN["train_data"]["seed"], cfg=cfg)
    bench = generate(tmp_path / "bench", 7, seed=T.BENCH_SEED, cfg=cfg)
    assert not {r.content_sha256 for r in own} & {r.content_sha256 for r in bench}


def test_batches_are_balanced_with_same_class_other_class_and_shifted_negatives():
    # clip i: audio tokens all equal to i, video tokens all equal to i: which clip's audio
    # went with which video can be read back from the batch
    n, classes = 6, ["a", "a", "a", "b", "b", "c"]
    data = [(torch.full((40, co.N_MELS), float(i)), torch.full((40, 6, 2, 2), float(i))) for i in range(n)]
    mel, vid, y = co.make_batch(data, classes, np.random.default_rng(0), b=30)
    assert y.tolist() == [1.0] * 30 + [0.0] * 30
    a_of, v_of = mel[:, 0, 0].long().tolist(), vid[:, 0, 0, 0, 0].long().tolist()
    assert all(a == v for a, v in zip(a_of[:30], v_of[:30]))  # positives: own audio
    kinds = {"same": 0, "other": 0, "own": 0}
    for a, v in zip(a_of[30:], v_of[30:]):
        kinds["own" if a == v else "same" if classes[a] == classes[v] else "other"] += 1
    # 10 of each kind; a clip of class "c" (alone) gets an other-class negative instead of same-class
    assert kinds["own"] == 10 and kinds["same"] + kinds["other"] == 20 and kinds["same"] >= 5
