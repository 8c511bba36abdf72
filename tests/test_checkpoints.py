"""The one checkpoint reader, custom-checkpoint labelling, the precision policy and the
shared embedder base (foleybench.weights, foleybench.device, metrics/embedders/base.py)."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from foleybench import device as D
from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.cli import main
from foleybench.metrics import embedders as emb_pkg
from foleybench.metrics.embedders import encodec, i3d
from foleybench.metrics.embedders.base import TorchEmbedder, build_net
from foleybench.registry import EMBEDDERS

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _empty_weights_dir(tmp_path_factory):
    W.set_weights_dir(tmp_path_factory.mktemp("weights"))  # never pick up real files
    emb_pkg.clear()
    yield
    W.set_weights_dir(None)
    emb_pkg.clear()


def _sd() -> dict[str, torch.Tensor]:
    return {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(2)}


class _NotData:  # any class a weights-only load must refuse
    pass


# ---------------------------------------------------------------------- the reader
@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "legacy", "safetensors"])
def test_reader_unwraps_every_supported_layout(tmp_path: Path, layout: str) -> None:
    sd = _sd()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    elif layout == "plain":
        torch.save(sd, path)
    elif layout == "legacy":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif layout == "state_dict":  # our trained families: a string "model" next to the tensors
        torch.save({"model": "wavenet_video.tiny", "state_dict": sd, "config": {"k": (1, 2)}, "losses": [0.5]}, path)
    else:  # PANNs: tensors under "model", a sampler state of numpy arrays and scalars beside them
        torch.save({"model": sd, "iteration": 7, "sampler": {"idx": [np.arange(4), np.array([1.5])],
                                                             "q": [np.int64(3)], "p": np.float32(2)}}, path)
    got = W.read_state_dict(path)
    assert sorted(got) == sorted(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    if layout == "model":
        ck = W.read_checkpoint(path)
        assert ck["iteration"] == 7 and np.array_equal(ck["sampler"]["idx"][0], np.arange(4))


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error must contain)."""
    out: dict[str, tuple[Path, str]] = {}
    (tmp / "text.pt").write_text("<html><body>403 Forbidden</body></html>\n")
    out["text"] = (tmp / "text.pt", "not a PyTorch or safetensors checkpoint (text")
    (tmp / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    out["lfs pointer"] = (tmp / "lfs.pt", "Git LFS pointer")
    (tmp / "empty.pt").write_bytes(b"")
    out["0 bytes"] = (tmp / "empty.pt", "empty file (0 bytes)")
    torch.save(_sd(), tmp / "good.pt")
    data = (tmp / "good.pt").read_bytes()
    (tmp / "trunc.pt").write_bytes(data[: len(data) // 2])
    out["truncated zip"] = (tmp / "trunc.pt", "truncated or damaged zip archive")
    torch.save(_sd(), tmp / "legacy.pt", _use_new_zipfile_serialization=False)
    data = (tmp / "legacy.pt").read_bytes()
    (tmp / "legacy_trunc.pt").write_bytes(data[:-20])
    out["truncated legacy pickle"] = (tmp / "legacy_trunc.pt", "truncated or damaged checkpoint")
    from safetensors.torch import save_file

    save_file(_sd(), str(tmp / "good.safetensors"))
    data = (tmp / "good.safetensors").read_bytes()
    (tmp / "trunc.safetensors").write_bytes(data[: len(data) - 8])
    out["truncated safetensors"] = (tmp / "trunc.safetensors", "damaged or truncated safetensors")
    torch.save({"state_dict": _sd(), "obj": _NotData()}, tmp / "pickle.pt")
    out["needs full unpickle"] = (tmp / "pickle.pt", "_NotData) that a weights-only load refuses")
    torch.save([torch.zeros(2)], tmp / "list.pt")
    out["not a dict"] = (tmp / "list.pt", "holds a list, not a dict of tensors")
    torch.save({"model": "name", "config": {"a": 1}}, tmp / "nosd.pt")
    out["no state dict"] = (tmp / "nosd.pt", "holds no state dict")
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp / "scripted.pt"))
    out["torchscript"] = (tmp / "scripted.pt", "is a TorchScript archive")
    out["missing"] = (tmp / "nope.pt", "no such file")
    return out


def test_reader_refuses_bad_files_naming_file_and_problem(tmp_path: Path) -> None:
    for label, (path, phrase) in _bad_files(tmp_path).items():
        with pytest.raises(W.CheckpointError) as info:
            W.read_state_dict(path)
        assert isinstance(info.value, InputError), label
        assert str(path) in str(info.value) and phrase in str(info.value), (label, str(info.value))


def test_refused_pickle_runs_no_code(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"state_dict": _sd(), "x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(W.CheckpointError, match="weights-only load refuses"):
        W.read_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_torchscript_is_its_own_explicit_case(tmp_path: Path) -> None:
    lin = torch.nn.Linear(2, 2)
    torch.jit.script(lin).save(str(tmp_path / "m.pt"))
    torch.save(lin.state_dict(), tmp_path / "sd.pt")
    assert W.is_torchscript_archive(tmp_path / "m.pt") and not W.is_torchscript_archive(tmp_path / "sd.pt")
    mod = W.read_torchscript(tmp_path / "m.pt")
    assert torch.equal(mod.state_dict()["weight"], lin.weight.detach())
    with pytest.raises(W.CheckpointError, match="not a TorchScript archive"):
        W.read_torchscript(tmp_path / "sd.pt")


@pytest.mark.parametrize("path", sorted((REPO / "baselines" / "checkpoints").glob("*.pt")), ids=lambda p: p.name)
def test_reader_reads_the_shipped_family_checkpoints(path: Path) -> None:
    """martel_wagner.load_checkpoint (weights_only=False today) can use read_checkpoint."""
    ck = W.read_checkpoint(path)
    sd = W.state_dict_of(ck, str(path))
    assert sd and all(isinstance(v, torch.Tensor) for v in sd.values()) and sd.keys() == ck["state_dict"].keys()
    from foleybench import family

    records = {r.file for f in family.families() for r in f.checkpoints.values()}
    if path.name in records:  # a model family's checkpoint, written by the training driver
        assert isinstance(ck["config"], dict) and all(isinstance(x, float) for x in ck["losses"])
        assert isinstance(ck["model"], str) and isinstance(ck["recipe_hash"], str)
    with zipfile.ZipFile(path) as z:  # nothing in the file needs more than the allowlist
        assert not [n for n in z.namelist() if n.endswith("/code/")]


# ---------------------------------------------------------------------- custom labelling
@pytest.fixture(scope="module")
def encodec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random EnCodec-24k weights in the published layout: not the upstream file."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        net = encodec._model()
    path = tmp_path_factory.mktemp("ckpt") / "my_encodec.th"
    torch.save(net.state_dict(), path)
    return path


def test_users_checkpoint_is_custom_with_its_sha256(encodec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = W.sha256_file(encodec_file)
    e = encodec.build(mode="pretrained", checkpoint=str(encodec_file))
    assert e.weights == "custom" and e.checkpoint_sha256 == digest and not e.is_proxy
    assert e.provenance()["weights"] == "custom" and e.provenance()["checkpoint_sha256"] == digest
    sd = W.read_state_dict(encodec_file)
    assert all(torch.equal(e.net.state_dict()[k], v) for k, v in sd.items())  # every tensor loaded
    # the file upstream publishes (sha256, prefix or md5 matching the record) stays pretrained
    md5 = hashlib.md5(encodec_file.read_bytes()).hexdigest()
    for rec in [dataclasses.replace(encodec.RECORD, sha256=digest, sha256_prefix=None),
                dataclasses.replace(encodec.RECORD, sha256_prefix=digest[:8]),
                dataclasses.replace(encodec.RECORD, sha256_prefix=None, md5=md5)]:
        monkeypatch.setitem(W.WEIGHTS, "encodec", rec)
        assert encodec.build(mode="pretrained", checkpoint=str(encodec_file)).weights == "pretrained"


def test_custom_checkpoint_still_loads_strictly(tmp_path: Path) -> None:
    sd = {k: v for k, v in i3d.InceptionI3d(400).state_dict().items() if k != "logits.conv3d.bias"}
    torch.save(sd, tmp_path / "mine.pt")
    with pytest.raises(W.StrictLoadError, match="1 missing keys"):
        i3d.build("pretrained", checkpoint=str(tmp_path / "mine.pt"))


def test_score_and_leaderboard_mark_custom(encodec_file: Path, tmp_path: Path, capsys) -> None:
    from foleybench.leaderboard import CUSTOM_MARK, PROXY_MARK, footer, render_table, rows_from_results

    data, pred, out = tmp_path / "synth", tmp_path / "pred", tmp_path / "s.json"
    assert main(["synth", "--out", str(data), "--clips", "3", "--seed", "1", "--duration", "1"]) == 0
    assert main(["generate", "--task", "v2a", "--model", "noise", "--data", str(data), "--out", str(pred),
                 "--device", "cpu"]) == 0
    assert main(["score", "--task", "v2a", "--pred", str(pred), "--ref", str(data), "--metrics", "fd_encodec,fd_melstat",
                 "--checkpoint", f"encodec={encodec_file}", "--out", str(out), "--device", "cpu", "--no-cache",
                 "--quiet"]) == 0
    doc = json.loads(out.read_text())
    fd = doc["metrics"]["fd_encodec"]
    assert fd["custom"] is True and fd["proxy"] is False and fd["value"] is not None
    assert fd["provenance"]["checkpoint_sha256"] == W.sha256_file(encodec_file)
    assert doc["metrics"]["fd_melstat"]["custom"] is False
    rows = rows_from_results([doc], ["fd_encodec", "fd_melstat"])
    table = render_table(rows, ["fd_encodec", "fd_melstat"], {"fd_encodec": False, "fd_melstat": False})
    cells = table.splitlines()[2].split("|")
    assert cells[2].strip().endswith(CUSTOM_MARK) and CUSTOM_MARK not in cells[3] and PROXY_MARK not in table
    note = footer([doc])
    assert f"{CUSTOM_MARK} custom checkpoint: encodec sha256 `{W.sha256_file(encodec_file)[:16]}" in note
    capsys.readouterr()


def test_embed_cli_checkpoint_is_custom(encodec_file: Path, tmp_path: Path, capsys) -> None:
    from foleybench import media

    wav = media.write_wav(tmp_path / "a.wav", (0.1 * np.random.default_rng(0).standard_normal((1, 24000))
                                               ).astype(np.float32), 24000)
    out = tmp_path / "e.npy"
    assert main(["embed", "--embedder", "encodec", "--checkpoint", str(encodec_file), "--out", str(out),
                 "--device", "cpu", "--no-cache", "--quiet", str(wav)]) == 0
    meta = json.loads((tmp_path / "e.json").read_text())["embedder"]
    assert meta["weights"] == "custom" and meta["checkpoint_sha256"] == W.sha256_file(encodec_file)
    assert np.load(out).shape == (75, 128) and "custom weights" in capsys.readouterr().out


def test_checkpoint_for_unknown_embedder_fails_before_any_work(tmp_path: Path, capsys) -> None:
    torch.save(_sd(), tmp_path / "w.pt")
    rc = main(["score", "--task", "v2a", "--pred", str(tmp_path / "no-such-dir"), "--ref", str(tmp_path / "nope"),
               "--metrics", "fd_vggish", "--checkpoint", f"vgish={tmp_path / 'w.pt'}", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "'vgish'" in err and "did you mean 'vggish'" in err and not (tmp_path / "o.json").exists()
    rc = main(["score", "--task", "v2a", "--pred", str(tmp_path), "--ref", str(tmp_path), "--metrics", "fd_vggish",
               "--checkpoint", f"vggish={tmp_path / 'missing.pt'}", "--out", str(tmp_path / "o.json")])
    assert rc == 2 and "missing.pt is not a file" in capsys.readouterr().err


def test_get_embedder_uses_context_checkpoint(encodec_file: Path) -> None:
    ctx = ScoreContext(device="cpu", checkpoints={"encodec": str(encodec_file)})
    e = emb_pkg.get_embedder("encodec", ctx)
    assert e.weights == "custom" and e.checkpoint_sha256 == W.sha256_file(encodec_file)


# ---------------------------------------------------------------------- precision policy
def test_autocast_is_a_null_context_on_cpu() -> None:
    for dev in ("cpu", "cuda", "cuda:0"):  # this machine: no CUDA, so "cuda" must not crash either
        if dev.startswith("cuda") and torch.cuda.is_available():
            continue
        assert isinstance(D.autocast(dev), contextlib.nullcontext) and D.precision(dev) == "fp32"
        assert isinstance(D.full_precision(dev), contextlib.nullcontext)
        with D.inference(dev):
            y = torch.ones(3, 3) @ torch.ones(3, 3)
            assert not torch.is_autocast_enabled()
        assert y.dtype == torch.float32 and not y.requires_grad


def test_autocast_on_cuda_is_bf16_only_with_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    native = {"v": True}

    def bf16(including_emulation: bool = True) -> bool:
        return native["v"] or including_emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16)
    ctx = D.autocast("cuda")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16 and ctx.device == "cuda"
    assert D.precision("cuda") == "bf16" and D.precision("cuda", enabled=False) == "fp32"
    assert isinstance(D.autocast("cuda", enabled=False), contextlib.nullcontext)
    assert isinstance(D.autocast("cpu"), contextlib.nullcontext)
    e = encodec.build(mode="proxy")
    e.device = "cuda"  # labels only: nothing runs on it
    assert e.precision == "bf16" and e.preprocess_id().endswith("|amp-bf16")
    assert e.provenance()["precision"] == "bf16"
    e.amp = False
    assert e.preprocess_id() == "24000Hz|torchaudio-sinc|mono|dc"
    native["v"] = False  # bf16 only by emulation (pre-Ampere): full precision, never fp16
    assert D.amp_dtype("cuda") is None and isinstance(D.autocast("cuda"), contextlib.nullcontext)


# ---------------------------------------------------------------------- one base
def test_every_registered_embedder_builds_through_the_base(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    names = [n for n in EMBEDDERS.names() if n != "melstat"]  # melstat has no weights ("none")
    assert {"vggish", "panns", "clap", "encodec", "i3d", "c3d", "clip", "imagebind"} <= set(names)
    for n in names:
        e = EMBEDDERS.entry(n).load()(mode="proxy", seed=0)
        assert isinstance(e, TorchEmbedder), n
        assert e.weights == "proxy" and e.is_proxy and e.precision == "fp32", n
        assert e.checkpoint_sha256 == W.state_dict_sha256(e.net.state_dict()), n
        assert e.provenance()["precision"] == "fp32" and "|amp-" not in e.preprocess_id(), n
    # every pretrained path locates its file and reads it through the one reader
    torch.save(_sd(), tmp_path / "w.pt")
    seen: list[str] = []

    class Reached(Exception):
        pass

    def fake_read(path):
        raise Reached(str(path))

    monkeypatch.setattr(W, "locate", lambda name, ckpt=None, verify=True: (
        seen.append(name), W.Located(tmp_path / "w.pt", "0" * 64, "custom"))[1])
    monkeypatch.setattr(W, "read_state_dict", fake_read)
    for n in names:
        with pytest.raises(Reached):
            EMBEDDERS.entry(n).load()(mode="pretrained", checkpoint=str(tmp_path / "w.pt"))
    assert seen == names


def test_build_net_rejects_unknown_mode() -> None:
    from foleybench.api import FoleybenchError

    with pytest.raises(FoleybenchError, match="mode must be"):
        build_net("encodec", encodec._model, mode="trained")
