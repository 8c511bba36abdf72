"""Training: seeded, resumable, provenance in the checkpoint, staleness, Table I evaluation."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from foleybench import family
from foleybench import train as T
from foleybench.baselines import martel_wagner as mw
from foleybench.baselines.mw_train import MWTrainer
from foleybench.datasets.base import Manifest

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from foleybench.datasets.synthfoley import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    # one train and one test clip per class; 1 s clips keep decoding and training quick
    generate(out, 6, seed=0, cfg=SynthConfig(duration_s=1.0, classes=("car_passing", "clapping", "rain_nature")))
    return out


def _weights(path) -> dict:
    return mw.load_checkpoint(path)["state_dict"]


def test_train_checkpoint_provenance_and_exact_resume(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(T, "SAVE_EVERY", 2)
    full = T.train("wavenet_video.debug", data_dir, tmp_path / "full.pt", steps=4, seed=0, progress=False)
    ck = mw.load_checkpoint(full["checkpoint"])
    fam, _ = family.split_name("wavenet_video.debug")
    cfg = fam.configs["debug"]
    assert ck["steps_done"] == 4 and len(ck["losses"]) == 4 and ck["optimizer"] is None
    assert ck["recipe_hash"] == fam.recipe_hash(cfg, 4, 0) != fam.recipe_hash(cfg, 4, 1)
    assert ck["data_fingerprint"] == Manifest.read(data_dir / "manifest.csv").split("train").fingerprint()
    assert (tmp_path / "full.loss.png").stat().st_size > 1000
    assert math.isfinite(full["final_loss"])

    # interrupt after the step-2 checkpoint, then resume: same weights as uninterrupted
    real_batch, calls = MWTrainer.batch, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_batch(*a, **k)

    monkeypatch.setattr(MWTrainer, "batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        T.train("wavenet_video.debug", data_dir, tmp_path / "resumed.pt", steps=4, seed=0, progress=False)
    assert mw.load_checkpoint(tmp_path / "resumed.pt")["steps_done"] == 2
    monkeypatch.setattr(MWTrainer, "batch", real_batch)
    T.train("wavenet_video.debug", data_dir, tmp_path / "resumed.pt", steps=4, seed=0, progress=False)
    a, b = _weights(tmp_path / "full.pt"), _weights(tmp_path / "resumed.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)

    other = T.train("wavenet_video.debug", data_dir, tmp_path / "seed1.pt", steps=4, seed=1, progress=False)
    c = _weights(other["checkpoint"])
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("family,drop", [("deepfusion", 0.05), ("av_transformer", 0.5)])
def test_training_reduces_loss(data_dir, tmp_path, family, drop):
    r = T.train(f"{family}.debug", data_dir, tmp_path / "m.pt", steps=40, seed=0, progress=False)
    losses = mw.load_checkpoint(r["checkpoint"])["losses"]
    assert losses[0] > 5.0  # about ln 256 at initialisation
    # (the debug nets are a few thousand weights: deep fusion learns slowly in 40 steps)
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - drop


def test_stale_reason_follows_the_family_record(data_dir, tmp_path, monkeypatch):
    """A family whose tiny record describes a debug-sized file trained here: current, then
    each way of going stale (file, recipe, data), through the generic record path."""
    base, _ = family.split_name("deepfusion.debug")
    cfg = base.configs["debug"]
    fake = dataclasses.replace(base, name="fakefam", checkpoint_dir=tmp_path,
                               configs={"tiny": dataclasses.replace(cfg, steps=3)}, checkpoints={})
    monkeypatch.setitem(family._FAMILIES, "fakefam", fake)
    assert "no shipped checkpoint record" in T.stale_reason("fakefam.tiny")
    info = T.train("fakefam.tiny", data_dir, tmp_path / "fakefam.tiny.pt", progress=False)
    rec = eval(T.record_line(info), {"CheckpointRecord": family.CheckpointRecord})  # what retrain prints
    assert rec.recipe_hash == fake.recipe_hash(fake.configs["tiny"]) and rec.file == "fakefam.tiny.pt"
    fake = dataclasses.replace(fake, checkpoints={"tiny": rec})
    monkeypatch.setitem(family._FAMILIES, "fakefam", fake)
    assert "fakefam" in T.trained_families()
    assert T.stale_reason("fakefam.tiny", data_dir) is None
    stale = T.stale_checkpoints(data_dir)  # the shipped ones were trained on other data than this
    # a config that declares its own train_data set is compared with that set, not data_dir
    own = {f"{f.name}.{t}" for f in family.families() for t in f.shipped() if T.train_data_spec(f.configs[t])}
    assert set(stale) == {f"{f.name}.{t}" for f in family.families() for t in f.shipped()} - {"fakefam.tiny"} - own
    assert {f"{f}.tiny" for f in mw.FAMILIES} <= set(stale)
    assert all("trained on other data" in why for why in stale.values())

    m = Manifest.read(data_dir / "manifest.csv")  # same files, another train split: other data
    moved = [dataclasses.replace(r, split="train" if r.split == "test" else "test") for r in m]
    Manifest(moved, m.root).write(tmp_path / "manifest.csv")
    assert "trained on other data" in T.stale_reason("fakefam.tiny", tmp_path / "manifest.csv")
    monkeypatch.setattr(mw, "CODE_VERSION", "bumped")  # the declaring module's CODE_VERSION counts
    assert "recipe changed" in T.stale_reason("fakefam.tiny", data_dir)
    monkeypatch.undo()
    monkeypatch.setitem(family._FAMILIES, "fakefam", fake)
    (tmp_path / "fakefam.tiny.pt").write_bytes(b"not it")
    assert "not the file its record describes" in T.stale_reason("fakefam.tiny", data_dir)
    (tmp_path / "fakefam.tiny.pt").unlink()
    assert "is missing" in T.stale_reason("fakefam.tiny", data_dir)


def test_evaluate_table1_and_ablation(data_dir, tmp_path):
    from foleybench.baselines.mw_table1 import evaluate_table1
    from foleybench.bench import load_spec

    spec = load_spec("martel-wagner-table1")
    cks = {f: T.train(f"{f}.debug", data_dir, tmp_path / f"{f}.pt", steps=3, progress=False)["checkpoint"]
           for f in mw.FAMILIES}
    res = evaluate_table1(data_dir, spec, checkpoints=cks)
    assert [r["class"] for r in res["rows"]] == [r.key for r in spec.rows] == ["car_passing", "clapping", "rain_nature"]
    car = res["rows"][0]
    assert car["stands_for"] == "car chase" and car["n_clips"] == 1
    pub = spec.published["table1"][0]
    assert pub.model == "car chase" and pub.values["av_transformer"] == -0.22 and pub.values["deepfusion"] == 1.65133e-05
    for row in res["rows"]:
        for f in mw.FAMILIES:
            assert 0 < row[f] < 8  # nats per sample; uniform is 5.55
    for ab in res["ablation"]:
        assert set(ab) >= {"model", "true", "zeroed", "shuffled"}
        assert ab["true"] != ab["zeroed"] and ab["true"] != ab["shuffled"]
    # The table follows its spec: fewer rows, another title, fewer conditions, two columns.
    import dataclasses

    from foleybench.baselines import mw_render
    from foleybench.spec import AblationSpec, RowSpec

    small = dataclasses.replace(spec, rows=[RowSpec("clapping", "hands")], columns=spec.columns[:2],
                                ablation=AblationSpec("ablation", {"true": "own", "zeroed": "none"}))
    res2 = evaluate_table1(data_dir, small, checkpoints=cks)
    assert [(r["class"], r["stands_for"]) for r in res2["rows"]] == [("clapping", "hands")]
    assert [a["model"] for a in res2["ablation"]] == ["deepfusion", "wavenet_video"]
    assert res2["rows"][0]["deepfusion"] == res["rows"][1]["deepfusion"]
    assert set(res2["ablation"][0]) == {"model", "checkpoint", "true", "zeroed"}
    md = mw_render.render_markdown(res2, small, None)
    assert "| hands (clapping) |" in md and "Aud & Vid" not in md and "shuffled" not in md
    assert mw_render.flat_values(res2, small) == {
        "table1": {"clapping": {"deepfusion": res2["rows"][0]["deepfusion"],
                                "wavenet_video": res2["rows"][0]["wavenet_video"]}},
        "ablation": {a["model"]: {"true": a["true"], "zeroed": a["zeroed"]} for a in res2["ablation"]}}


def test_cli_train_and_list(data_dir, tmp_path, capsys):
    from foleybench.cli import main

    out = tmp_path / "wv.pt"
    assert main(["train", "--model", "wavenet_video.debug", "--data", str(data_dir), "--out", str(out),
                 "--steps", "2"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and 'CheckpointRecord("debug", "wv.pt"' in text and '"steps": 2' in text
    assert main(["train", "--model", "wavenet_video.tiny", "--data", str(data_dir)]) == 2  # no --out: refused
    assert "give --out" in capsys.readouterr().err
    assert main(["train", "--model", "wavenet_video.tinny", "--out", str(out)]) == 2
    assert "did you mean 'wavenet_video.tiny'" in capsys.readouterr().err
    assert main(["list", "models", "*.tiny", "--long"]) == 0
    lines = capsys.readouterr().out.splitlines()
    from foleybench import family as fam_mod

    want = sorted(f"{f.name}.tiny" for f in fam_mod.families() if "tiny" in f.shipped())
    assert [ln.split()[0] for ln in lines] == want and {f"{f}.tiny" for f in mw.FAMILIES} <= set(want)
    assert all(" shipped " in ln and ln.endswith(".tiny.pt") for ln in lines)


def test_train_data_spec_checks_and_refuses_the_benchmark_seed():
    cfg = dataclasses.make_dataclass("C", [("train_data", object)])
    assert T.train_data_spec(cfg(None)) is None
    assert T.train_data_spec(cfg({"clips": 40, "seed": 7})) == {"clips": 40, "seed": 7}
    with pytest.raises(Exception, match="benchmark sets' seed"):
        T.train_data_spec(cfg({"clips": 40, "seed": 0}))
    with pytest.raises(Exception, match="clips"):
        T.train_data_spec(cfg({"clips": 0, "seed": 3}))
    with pytest.raises(Exception, match="train_data must be"):
        T.train_data_spec(cfg({"n": 4}))


def test_train_data_set_is_train_only_and_disjoint_from_the_benchmark_clips(tmp_path):
    from foleybench.datasets.synthfoley import SynthFoley

    own = T.read_manifest(T.train_data_dir({"clips": 6, "seed": 5}, root=tmp_path)).records
    assert len(own) == 6 and {r.split for r in own} == {"train"}
    bench = SynthFoley(tmp_path / "bench", n_clips=6, seed=T.BENCH_SEED).manifest().records
    assert not {r.content_sha256 for r in own} & {r.content_sha256 for r in bench}
    # clip i of a seed depends on (seed, i) only: the same seed reproduces the benchmark clips
    same = SynthFoley(tmp_path / "same", n_clips=6, seed=T.BENCH_SEED).manifest().records
    assert [r.content_sha256 for r in same] == [r.content_sha256 for r in bench]


def test_retrain_trains_each_shared_checkpoint_file_once():
    names = [f"{f.name}.{t}" for f in family.families() for t in f.shipped()]
    once = T._one_per_file(names)
    paths = [family.split_name(n)[0].checkpoint_path(family.split_name(n)[1]) for n in once]
    assert len(paths) == len(set(paths)) == len({family.split_name(n)[0].checkpoint_path(family.split_name(n)[1])
                                                 for n in names})
    for n, p in zip(once, paths):  # a file named after a tag is trained under that tag
        if any(f"{m}.pt" == p.name for m in names):
            assert f"{n}.pt" == p.name
    assert "tempotokens.tiny" in once and "tempotokens.text_only_tiny" not in once
