"""The contract every model family keeps, checked from the family registry alone.

Parametrised over every registered family and its ``debug`` models, so a new family
module under baselines/ is covered without a new test:
- generation: ids and order of outputs equal the requests', shape, dtype and rate
  (v2a: float32 [C, N] at the requested rate and duration; a2v: uint8 [T, H, W, 3] at the
  requested fps and size), seeded determinism (another seed gives other output, except
  for models that declare ``seed_invariant = True``, which must give the same), and a
  clip's output independent of its batch neighbours; debug params say ``weights: random-init``;
- names and records: a ``tiny`` name exists only with its shipped file, whose sha256,
  recipe hash (today's config maps to it) and data fingerprint are the record's; a
  ``paper`` name without its file fails with the missing-weights error naming file and URL.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from foleybench import family
from foleybench.api import A2VRequest, V2ARequest
from foleybench.registry import MODELS, load_plugins
from foleybench.weights import MissingWeightsError, set_weights_dir, sha256_file

torch.set_num_threads(1)
load_plugins()
FAMILIES = family.families()
DEBUG = [n for f in FAMILIES for n in f.model_names() if family.tag_kind(n.partition(".")[2]) == "debug"]
SHIPPED = [f"{f.name}.{t}" for f in FAMILIES for t in f.shipped()]
PAPER = [n for f in FAMILIES for n in f.model_names() if family.tag_kind(n.partition(".")[2]) == "paper"]
# Short clips keep this quick on a shared 2-core CPU: (id, seconds, seed).
CLIPS = [("a", 0.15, 11), ("b", 0.1, 12), ("c", 0.125, 13)]


def _request(task: str, clip_id: str, seconds: float, seed: int) -> V2ARequest | A2VRequest:
    rng = np.random.default_rng(seed)  # conditioning differs per clip
    if task == "v2a":
        frames = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)  # 0.25 s at 16 fps
        return V2ARequest(clip_id, frames, 16.0, "clapping", seconds, 16000, seed)
    audio = (0.3 * rng.standard_normal((1, 4000))).astype(np.float32)  # 0.25 s at 16 kHz
    return A2VRequest(clip_id, audio, 16000, "clapping", seconds, 16.0, (32, 32), seed)


def _check_shape(task: str, req, out) -> None:
    if task == "v2a":
        want = max(1, int(round(req.duration_s * req.sample_rate)))
        assert out.samples.dtype == np.float32 and out.samples.ndim == 2 and out.samples.shape[1] == want
        assert out.sample_rate == req.sample_rate and np.isfinite(out.samples).all()
    else:
        assert out.frames.dtype == np.uint8 and out.frames.ndim == 4
        assert out.frames.shape[1:] == (*req.size, 3) and out.fps == req.fps
        assert out.frames.shape[0] == max(1, int(round(req.duration_s * req.fps)))


def _media(out) -> np.ndarray:
    return out.samples if hasattr(out, "samples") else out.frames


@pytest.fixture(scope="module", params=DEBUG)
def debug_run(request):
    """(task, model, requests, outputs of one batch) for one debug model."""
    name = request.param
    task = MODELS.entry(name).meta["tasks"][0]
    model = MODELS.build(name, task=task, dataset=None, seed=0, device="cpu")
    reqs = [_request(task, *c) for c in CLIPS]
    return task, model, reqs, model.generate(reqs)


def test_there_are_debug_models_for_every_family():
    assert FAMILIES and {n.partition(".")[0] for n in DEBUG} == {f.name for f in FAMILIES}
    assert all(n in MODELS for n in DEBUG + SHIPPED + PAPER)


def test_ids_order_shape_dtype_rate(debug_run):
    task, model, reqs, outs = debug_run
    assert [o.clip_id for o in outs] == [r.clip_id for r in reqs]
    for r, o in zip(reqs, outs):
        _check_shape(task, r, o)
    assert _media(outs[0]).std() > 0  # something was generated, not a constant
    assert model.params()["weights"] == "random-init"


def test_seeded_determinism(debug_run):
    task, model, reqs, outs = debug_run
    again = model.generate(reqs)
    for o, a in zip(outs, again):
        np.testing.assert_array_equal(_media(o), _media(a))
    r = reqs[0]
    other = model.generate([dataclasses.replace(r, seed=r.seed + 1000)])[0]
    if getattr(model, "seed_invariant", False):  # declared deterministic (no sampling): the seed must not matter
        assert model.params().get("seed_invariant") is True
        np.testing.assert_array_equal(_media(other), _media(outs[0]))
    else:
        assert not np.array_equal(_media(other), _media(outs[0]))


def test_output_independent_of_batch_neighbours(debug_run):
    task, model, reqs, outs = debug_run
    for i in (1, 2):  # shorter and longer than the batch's first clip
        alone = model.generate([reqs[i]])[0]
        assert alone.clip_id == reqs[i].clip_id
        np.testing.assert_array_equal(_media(alone), _media(outs[i]))
    swapped = model.generate([reqs[2], reqs[0]])
    np.testing.assert_array_equal(_media(swapped[1]), _media(outs[0]))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_is_what_its_record_says(name):
    fam, tag = family.split_name(name)
    rec, path = fam.checkpoints[tag], fam.checkpoint_path(tag)
    assert path.is_file() and sha256_file(path) == rec.sha256
    ck = fam.load_checkpoint(path)
    cfg = fam.configs[tag]
    # today's config for the tag hashes to the recipe the file was trained under
    assert fam.recipe_hash(cfg) == rec.recipe_hash == ck["recipe_hash"]
    assert ck["config"] == fam.recipe_config(cfg) and ck["steps_done"] == cfg.steps
    assert ck["data_fingerprint"] == rec.data_fingerprint
    assert name in fam.model_names() and MODELS.build(name).params()["weights"] == "trained"


def test_tiny_names_exist_only_with_a_shipped_checkpoint():
    for fam in FAMILIES:
        for tag in fam.configs:
            name = f"{fam.name}.{tag}"
            if family.tag_kind(tag) == "tiny":
                assert (name in MODELS) == (tag in fam.shipped()), name


@pytest.mark.parametrize("name", PAPER)
def test_paper_without_weights_names_file_and_url(name, tmp_path):
    fam, tag = family.split_name(name)
    set_weights_dir(tmp_path)
    try:
        with pytest.raises(MissingWeightsError) as exc:
            MODELS.build(name, task=fam.task, dataset=None, seed=0, device="cpu")
    finally:
        set_weights_dir(None)
    msg = str(exc.value)
    rec = fam.checkpoints[tag]
    assert str(tmp_path / rec.file) in msg and f"url: {rec.url}" in msg
    assert rec.url and ("://" in rec.url or f"foleybench train --model {name}" in msg)


@pytest.mark.parametrize("name", PAPER[:1])
def test_fetch_refuses_a_record_with_nothing_to_download(name, tmp_path):
    from foleybench import weights

    rec = weights.record(name)
    if rec.downloadable():
        pytest.skip(f"{name} has a download address")
    set_weights_dir(tmp_path)
    try:
        with pytest.raises(MissingWeightsError, match="nothing to download"):
            weights.fetch(name)
    finally:
        set_weights_dir(None)
    assert not any(tmp_path.iterdir())  # no partial file left behind
