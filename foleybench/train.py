"""Training any model family with a trainer; staleness of shipped checkpoints.

``train`` is seeded and resumable for every family (``foleybench.family.Trainer`` gives
the data, batches and loss): batch t is drawn from ``default_rng([seed, t])``, so a run
resumed from a checkpoint draws the batches an uninterrupted run would have drawn. A
checkpoint records the recipe hash (config + steps + seed + code version) and the data
fingerprint (``Manifest.fingerprint`` of the training split, which covers decoded
content, not container bytes). ``stale_reason`` compares a shipped checkpoint with its
family's record and with what training would use now. ``make bench`` only reports stale
checkpoints (and marks their rows); retraining is ``make train``
(``python -m foleybench.train --all``).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foleybench import family as fams
from foleybench.api import FoleybenchError
from foleybench.datasets.base import Manifest

SAVE_EVERY = 50  # steps between resumable checkpoints
DEFAULT_DATA = Path("runs/data/synthfoley-48-s0")


def read_manifest(data_dir: str | Path) -> Manifest:
    """The dataset's manifest: ``data_dir`` itself when it is a CSV, else data_dir/manifest.csv."""
    p = Path(data_dir)
    return Manifest.read(p if p.suffix == ".csv" else p / "manifest.csv")


def default_data(root: str | Path = DEFAULT_DATA) -> Path:
    """The synthfoley set the shipped checkpoints are trained on (48 clips, seed 0)."""
    from foleybench.datasets.synthfoley import SynthFoley

    SynthFoley(root, n_clips=48, seed=0).manifest()
    return Path(root)


BENCH_SEED = 0                   # the seed of the benchmark sets (synthfoley-48-s0 and its test split)


def train_data_spec(cfg: Any) -> dict[str, int] | None:
    """A config's own training set, ``cfg.train_data = {"clips": N, "seed": S}``, or None
    (then it trains on the train split of the default 48-clip seed-0 set).

    synthfoley is procedural, so a family that needs more than the 21 train clips of the
    default set declares a larger train-only set. Clip i of a seed-S set is drawn from
    (S, i) whatever the clip count or split, so seed 0 would reproduce the benchmark's
    test clips: it is refused."""
    spec = getattr(cfg, "train_data", None)
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"clips", "seed"}:
        raise FoleybenchError(f"train_data must be {{'clips': N, 'seed': S}}, got {spec!r}")
    clips, seed = int(spec["clips"]), int(spec["seed"])
    if clips < 1:
        raise FoleybenchError(f"train_data clips must be >= 1, got {clips}")
    if seed == BENCH_SEED:
        raise FoleybenchError(f"train_data seed {seed} is the benchmark sets' seed: its clips would include the "
                              "test clips; choose another seed")
    return {"clips": clips, "seed": seed}


def train_data_dir(spec: dict[str, int], root: str | Path = "runs/data", generate: bool = True) -> Path:
    """The folder of a ``train_data`` set (every clip in split "train"); rendered on first use."""
    from foleybench.datasets.synthfoley import SynthConfig, SynthFoley

    path = Path(root) / f"synthfoley-{spec['clips']}-s{spec['seed']}-train"
    if generate:
        ds = SynthFoley(path, n_clips=spec["clips"], seed=spec["seed"], cfg=SynthConfig(test_fraction=0.0))
        if not ds.is_current():
            print(f"rendering the training set {path} ({spec['clips']} synthfoley clips, seed {spec['seed']})")
        ds.manifest()
    return path


def data_for(model_name: str, data_dir: str | Path | None = None) -> Path:
    """Where ``model_name`` trains: ``data_dir`` when given, else its config's ``train_data``
    set, else the default 48-clip seed-0 set."""
    if data_dir is not None:
        return Path(data_dir)
    fam, tag = fams.split_name(model_name)
    spec = train_data_spec(fam.configs[tag])
    return train_data_dir(spec) if spec else default_data()


def _save(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, str(tmp))
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


def plot_losses(losses: list[float], path: Path, title: str, ylabel: str = "training loss") -> None:
    """Per-step losses and their running mean of len/25 steps, as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6, alpha=0.4, label="per step")
    w = max(1, len(losses) // 25)
    if len(losses) >= w:
        ax.plot(np.arange(w - 1, len(losses)), np.convolve(losses, np.ones(w) / w, "valid"), label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(model_name: str, data_dir: str | Path, out_ckpt: str | Path, steps: int | None = None,
          seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train config ``family.tag`` on the train split of ``data_dir``; returns a summary dict.

    Resumes from ``out_ckpt`` when it holds the same recipe and data; a finished run
    returns at once. Writes the loss curve next to the checkpoint (``*.loss.png``).
    """
    from foleybench.progress import Stage

    fam, tag = fams.split_name(model_name)
    tr, cfg = fam.trainer, fam.configs[tag]
    if tr is None:
        raise FoleybenchError(f"family {fam.name!r} has no trainer")
    steps = int(steps if steps is not None else cfg.steps)
    out_ckpt = Path(out_ckpt)
    out_ckpt.parent.mkdir(parents=True, exist_ok=True)
    train_split = read_manifest(data_dir).split("train")
    fingerprint, rhash = train_split.fingerprint(), fam.recipe_hash(cfg, steps, seed)

    torch.manual_seed(seed)
    net = tr.build_net(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    done, losses, seconds = 0, [], 0.0
    if out_ckpt.is_file():
        ck = fam.load_checkpoint(out_ckpt)
        if ck.get("recipe_hash") == rhash and ck.get("data_fingerprint") == fingerprint:
            net.load_state_dict(ck["state_dict"])
            if ck.get("optimizer") is not None:
                opt.load_state_dict(ck["optimizer"])
            done, losses, seconds = ck["steps_done"], list(ck["losses"]), ck.get("train_seconds", 0.0)
    data = tr.load_data(train_split, cfg) if done < steps else []
    if done < steps and not data:
        raise FoleybenchError(f"{data_dir}: no training clips (split 'train') long enough for {model_name}")

    def payload(final: bool) -> dict[str, Any]:
        return {"model": model_name, "config": fam.recipe_config(cfg), "state_dict": net.state_dict(),
                "optimizer": None if final else opt.state_dict(), "steps_done": done, "steps": steps,
                "seed": seed, "losses": losses, "recipe_hash": rhash, "data_fingerprint": fingerprint,
                "code_version": fam.code_version(), "train_seconds": seconds}

    net.train()
    bar = Stage(f"train {model_name}", total=steps, unit="step", initial=done, enabled=progress)
    t0 = time.perf_counter()
    while done < steps:
        # cosine decay to 10% of lr: a function of the step, so resuming does not change it
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done / steps)))
        loss = tr.loss(net, tr.batch(data, cfg, np.random.default_rng([seed, done])), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        done += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if done % SAVE_EVERY == 0 or done == steps:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save(out_ckpt, payload(final=done == steps))
    bar.close()
    png = out_ckpt.with_suffix(".loss.png")
    if losses:
        plot_losses(losses, png, f"{model_name}, seed {seed}", tr.loss_label(cfg))
    tail = losses[-20:]
    return {"model": model_name, "checkpoint": str(out_ckpt), "steps": done, "seed": seed,
            "final_loss": float(np.mean(tail)) if tail else None, "train_seconds": round(seconds, 1),
            "n_params": sum(p.numel() for p in net.parameters()), "recipe_hash": rhash,
            "data_fingerprint": fingerprint, "loss_png": str(png)}


def stale_reason(name: str, data_dir: str | Path | None = None) -> str | None:
    """Why the shipped checkpoint of ``name`` (``family.tiny``) does not describe today's
    recipe, or None when it does.

    Stale means: no record, the file is missing or is not the file its record describes
    (sha256), today's config, default steps, seed 0 and code version do not hash to the
    record's recipe, or, when ``data_dir`` is given, the content fingerprint of that
    folder's train split is not the record's. Reads no weights: the record carries it all.
    """
    fam, tag = fams.split_name(name)
    rec = fam.checkpoints.get(tag)
    if rec is None or tag not in fam.shipped():
        return f"{name} has no shipped checkpoint record"
    path = fam.checkpoint_path(tag)
    if not path.is_file():
        return f"{path} is missing"
    from foleybench.weights import sha256_file

    digest = sha256_file(path)
    if digest != rec.sha256:
        return (f"{path.name} is not the file its record describes (sha256 {digest[:12]}, record "
                f"{str(rec.sha256)[:12]}): update the record in {fam.module}")
    if fam.recipe_hash(fam.configs[tag]) != rec.recipe_hash:
        return (f"recipe changed since it was trained (config, steps, seed or code version; "
                f"code now {fam.code_version()})")
    spec = train_data_spec(fam.configs[tag])
    if spec is not None:
        # trained on its own train-only set, not on the folder given: compare with that set
        # when it is here (rendering it only to check would cost make bench minutes)
        own = train_data_dir(spec, generate=False)
        data_dir = own if (own / "manifest.csv").is_file() else None
    if data_dir is not None:
        fp = read_manifest(data_dir).split("train").fingerprint()
        if rec.data_fingerprint != fp:
            return (f"trained on other data (fingerprint {str(rec.data_fingerprint)[:12]}, "
                    f"the train split here is {fp[:12]})")
    return None


def trained_families() -> tuple[str, ...]:
    """Families whose ``tiny`` config ships a trained checkpoint."""
    return tuple(f.name for f in fams.families() if "tiny" in f.shipped())


def stale_checkpoints(data_dir: str | Path | None = None) -> dict[str, str]:
    """{name: reason} for every shipped checkpoint of every family that is stale."""
    names = [f"{f.name}.{t}" for f in fams.families() for t in f.shipped()]
    return {n: why for n in names if (why := stale_reason(n, data_dir))}


def record_line(info: dict[str, Any]) -> str:
    """The checkpoint record of a finished training run, to paste into its family module."""
    from foleybench.weights import sha256_file

    tag = info["model"].partition(".")[2]
    return (f'CheckpointRecord("{tag}", "{Path(info["checkpoint"]).name}", "{sha256_file(info["checkpoint"])}", '
            f'"{info["recipe_hash"]}", "{info["data_fingerprint"]}")')


def _one_per_file(names: list[str]) -> list[str]:
    """``names`` with one name per checkpoint file: generation-only tags share their model's
    file (tempotokens.text_only_tiny, foleygen_c.causal_tiny ...), which is trained once,
    under the tag the file is named after (``FAMILY.TAG.pt``) when it is among them."""
    by_file: dict[Path, list[str]] = {}
    for n in names:
        fam, tag = fams.split_name(n)
        by_file.setdefault(fam.checkpoint_path(tag), []).append(n)
    out = []
    for path, group in by_file.items():
        own = [n for n in group if f"{n}.pt" == path.name]
        out.append(own[0] if own else group[0])
    return out


def retrain(data_dir: str | Path | None = None, force: bool = False, names: list[str] | None = None,
            progress: bool = True) -> list[str]:
    """Train ``names`` (default: every family's shipped tiny checkpoints) that are stale,
    or all of them with ``force``, into their checkpoint paths; prints their new records.

    Only ``make train`` (``python -m foleybench.train``) calls this: ``make bench`` never
    retrains. Training is not bit-reproducible across CPUs, so after retraining the
    records and the goldens must be updated and committed together (docs/PROTOCOL.md)."""
    names = _one_per_file(list(names) if names else [f"{f.name}.{t}" for f in fams.families() for t in f.shipped()])
    todo = names if force else [n for n in names if stale_reason(n, data_for(n, data_dir))]
    for name in todo:
        fam, tag = fams.split_name(name)
        path = fam.checkpoint_path(tag)
        if force and path.exists():
            path.unlink()
        info = train(name, data_for(name, data_dir), path, progress=progress)
        print(f"{name}: {info.get('steps')} steps, final loss {info.get('final_loss')}; its record in "
              f"{fam.module}:\n    {record_line(info)}")
    return todo


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Retrain the shipped tiny checkpoints of every model family.")
    ap.add_argument("--all", action="store_true", help="retrain every shipped checkpoint, stale or not")
    ap.add_argument("--model", action="append", help="train only this config (FAMILY.TAG; repeatable)")
    ap.add_argument("--data", help="synthfoley folder (default: the config's train_data set, else the 48-clip "
                    "seed-0 set under runs/data)")
    args = ap.parse_args()
    done = retrain(args.data, force=args.all, names=args.model)
    print("trained: " + (", ".join(done) if done else "nothing (all current)"))
