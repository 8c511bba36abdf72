"""``foleybench embed``: embeddings of files to ``.npy``, with a row index.

Output: ``OUT.npy`` float32 ``[R, D]`` holding every embedding row of every input in
input order (frame-level embedders contribute all their frames), ``OUT.index.csv``
mapping rows to inputs (``input,sha256,row_start,row_end``; end exclusive), and
``OUT.json`` with the embedder's provenance. Unreadable inputs are listed on stderr and
in the JSON, and contribute no rows; the command then exits 1.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from foleybench.api import InputError, ScoreContext
from foleybench.cache import cached_apply
from foleybench.hashing import sha256_file_cached
from foleybench.metrics.embedders import get_embedder
from foleybench.results import provenance_block, write_json


def embed_paths(name: str, paths: list[str], ctx: ScoreContext, checkpoint: str | None = None
                ) -> tuple[np.ndarray, list[tuple[str, str, int, int]], dict[str, str], dict]:
    if checkpoint:
        ctx.checkpoints[name] = checkpoint
    emb = get_embedder(name, ctx)
    outs = cached_apply(emb, paths, ctx, "embed")
    rows, index, failed, start = [], [], {}, 0
    for p, v in zip(paths, outs):
        if isinstance(v, InputError):
            failed[p] = str(v)
            continue
        v = np.asarray(v, np.float32).reshape(-1, emb.dim)
        rows.append(v)
        index.append((p, sha256_file_cached(p), start, start + len(v)))
        start += len(v)
    arr = np.concatenate(rows) if rows else np.zeros((0, emb.dim), np.float32)
    return arr, index, failed, emb.provenance()


def embed_command(a: argparse.Namespace, ctx: ScoreContext) -> int:
    arr, index, failed, prov = embed_paths(a.embedder, list(a.inputs), ctx)
    out = Path(a.out)
    stem = out.with_suffix("") if out.suffix == ".npy" else out
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, arr)
    with open(f"{stem}.index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "sha256", "row_start", "row_end"])
        w.writerows(index)
    write_json(f"{stem}.json", {"embedder": prov, "shape": list(arr.shape), "inputs": len(a.inputs),
                                "failed": failed, "clip_seconds": ctx.clip_seconds, **provenance_block()})
    label = prov.get("weights")
    note = f" ({label} weights, sha256 {str(prov.get('checkpoint_sha256'))[:16]}…)" if label in ("proxy", "custom") else ""
    print(f"wrote {out} {tuple(arr.shape)} and {stem}.index.csv{note}")
    for p, why in failed.items():
        print(f"  failed {p}: {why}", file=sys.stderr)
    return 1 if failed else 0
