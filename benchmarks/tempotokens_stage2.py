"""Retrain only stage 2 of tempotokens.tiny on top of an existing checkpoint's stage 1.

Stage 1 (denoiser + text encoder with its event tokens) is the expensive part and, from
session 22 on, the part that works (stage 1 follows its per-frame event tokens). This
script keeps a checkpoint's stage-1 weights frozen and trains the audio encoder + mapper
for ``--steps`` stage-2 steps with the trainer's own loss
(:meth:`TempoTokensTrainer.loss`), under stage-2 overrides of the recipe
(``--set event_align_weight=2 --set event_ce_weight=1``). ``--from-scratch`` re-initialises the
audio encoder and mapper (seeded); otherwise they continue from the checkpoint's. Only
the audio encoder and mapper are in the optimiser, and the trainer's stage-2 loss
freezes the rest (their gradients stay None).

Writes a checkpoint in the format of ``foleybench.train`` (loadable by the family and
by benchmarks/tempotokens_diag.py); its ``stage2_from`` field names the source, and
its ``losses`` are those of the stage-2 steps run here. It is a research tool: the
shipped checkpoint's record says how it was made.

Usage (one thread, nice -n 19 on the shared CPU)::

    python benchmarks/tempotokens_stage2.py baselines/checkpoints/tempotokens.tiny.pt runs/tt-s2/a.pt \
        --steps 400 --set event_align_weight=2 --set event_ce_weight=1
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch


def _value(text: str):
    if "," in text:
        return tuple(int(v) for v in text.split(",") if v)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _sha(path: str) -> str:
    from foleybench.weights import sha256_file

    return sha256_file(Path(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="default: the recipe's lr")
    ap.add_argument("--from-scratch", action="store_true", help="re-initialise the audio encoder and mapper")
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (stage-2 fields)")
    ap.add_argument("--as-train", action="store_true",
                    help="with --from-scratch: stage 2 exactly as `foleybench train` runs it after the source's "
                         "stage 1 (steps = stage1_steps + --steps, its lr schedule and batch seeds); the "
                         "checkpoint carries the recipe hash and data fingerprint of that recipe")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from foleybench import train as T
    from foleybench.baselines import tempotokens as TT
    from foleybench.baselines.tempotokens_tiny import (
        TempoTinyConfig,
        TempoTokensNet,
        TempoTokensTrainer,
        recipe_config,
    )

    ck = TT.load_checkpoint(args.source)
    c = dict(ck["config"])
    c["widths"] = tuple(c["widths"])
    cfg = TempoTinyConfig(**c)
    over = dict(kv.split("=", 1) for kv in args.set)
    cfg = dataclasses.replace(cfg, **{k: _value(v) for k, v in over.items()})
    if args.as_train:
        if not args.from_scratch or args.lr or "stage1_steps" in over:
            raise SystemExit("--as-train needs --from-scratch, no --lr and the source's stage1_steps")
        cfg = dataclasses.replace(cfg, steps=cfg.stage1_steps + args.steps)
    torch.manual_seed(args.seed)
    net = TempoTokensNet(cfg)
    fresh = net.state_dict()
    stage2 = ("audio.", "mapper.")
    state = {k: (fresh[k] if args.from_scratch and k.startswith(stage2) else v) for k, v in ck["state_dict"].items()}
    new = sorted(set(fresh) - set(state))                 # layers the overrides add (audio_reach)
    assert all(k.startswith(stage2) for k in new), new
    net.load_state_dict({**state, **{k: fresh[k] for k in new}})
    net.trained_steps.fill_(cfg.stage1_steps)        # stage 2 from the first step
    tr = TempoTokensTrainer()
    assert tr.stage(net) == 2
    params = list(net.audio.parameters()) + list(net.mapper.parameters())
    lr0 = args.lr or cfg.lr
    opt = torch.optim.Adam(params, lr=lr0)
    data_dir = T.data_for("tempotokens.tiny")
    data = tr.load_data(T.read_manifest(data_dir).split("train"), cfg)
    print(f"{len(data)} training clips from {data_dir}; overrides {over}", flush=True)
    net.train()
    losses, t0 = [], time.perf_counter()
    for step in range(args.steps):
        # --as-train: foleybench.train's schedule and batch seeds at its step count (stage 1 done)
        done, total = (cfg.stage1_steps + step, cfg.steps) if args.as_train else (step, args.steps)
        for g in opt.param_groups:
            g["lr"] = lr0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done / total)))
        rng = np.random.default_rng([args.seed, done if args.as_train else 10 ** 6 + step])
        loss = tr.loss(net, tr.batch(data, cfg, rng), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}: loss (mean of 25) {np.mean(losses[-25:]):.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    assert all(p.grad is None for p in net.denoiser.parameters())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from foleybench import family as fams

    fam, _ = fams.split_name("tempotokens.tiny")
    split = T.read_manifest(data_dir).split("train")
    stage2_seconds = time.perf_counter() - t0
    payload = {"model": "tempotokens.tiny", "config": recipe_config(cfg), "state_dict": net.state_dict(),
               "optimizer": None, "steps_done": int(net.trained_steps), "steps": cfg.steps, "seed": args.seed,
               "losses": list(ck.get("losses", []))[: cfg.stage1_steps] + losses,
               "stage2_from": {"source": str(args.source), "source_sha256": _sha(args.source),
                               "from_scratch": args.from_scratch, "as_train": args.as_train, "steps": args.steps,
                               "overrides": over, "lr": lr0, "stage2_seconds": round(stage2_seconds, 1)},
               "train_seconds": stage2_seconds}
    if args.as_train:
        payload.update(recipe_hash=fam.recipe_hash(cfg, cfg.steps, args.seed), data_fingerprint=split.fingerprint(),
                       code_version=fam.code_version())
    torch.save(payload, out)
    print(f"wrote {out}: {args.steps} stage-2 steps in {time.perf_counter() - t0:.0f} s; "
          f"last-100 loss {np.mean(losses[-100:]):.4f}")


if __name__ == "__main__":
    main()
