"""Embedders: networks that turn media into vectors, with provenance.

``get_embedder(name, ctx)`` is the one way the runner obtains an embedder: the file named
by ``ctx.checkpoints[name]`` (``--checkpoint``; labelled ``custom`` with its sha256 unless it
is the upstream file), else the weights directory's upstream file (``pretrained``, checked
against the record's sha256 / prefix / md5), else, only when the run allows it
(``ctx.proxy``) and no checkpoint was named, a seeded random-init proxy labelled as such.
Every network-backed embedder is a :class:`~foleybench.metrics.embedders.base.TorchEmbedder`.
"""
from __future__ import annotations

from typing import Any

from foleybench.api import Embedder, ScoreContext
from foleybench.device import resolve_device
from foleybench.registry import EMBEDDERS
from foleybench.weights import MissingWeightsError

_INSTANCES: dict[tuple, Embedder] = {}


def get_embedder(name: str, ctx: ScoreContext, **opts: Any) -> Embedder:
    device = resolve_device(ctx.device)
    ckpt = ctx.checkpoints.get(name)
    key = (name, device, ckpt, ctx.proxy, ctx.seed, ctx.amp, tuple(sorted(opts.items())))
    if key in _INSTANCES:
        return _INSTANCES[key]
    build = EMBEDDERS.entry(name).load()
    try:
        emb = build(mode="pretrained", checkpoint=ckpt, device=device, seed=ctx.seed, **opts)
    except MissingWeightsError as exc:
        if not ctx.proxy or ckpt:
            raise MissingWeightsError(
                f"{exc}\n  or run with --proxy to use seeded random-init proxy evaluators "
                "(scores labelled proxy; not comparable to published numbers)") from None
        emb = build(mode="proxy", checkpoint=None, device=device, seed=ctx.seed, **opts)
    emb.amp = ctx.amp  # autocast applies on GPU only (foleybench.device.inference)
    _INSTANCES[key] = emb
    return emb


def clear() -> None:
    _INSTANCES.clear()
