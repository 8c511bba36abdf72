"""``foleybench merge``: shard state files (``score --shard I/N``) -> one results document.

Independent jobs (a Slurm array, machines with no network between them) each score one
shard of the clips (:data:`foleybench.distributed.SHARD_RULE`) and write a state file:
their metric rows keyed by clip id, exclusions, pairing notes and the run's settings.
:func:`merge_files` checks the files are shards 0..N-1 of one split of one run (same
task, metrics, options, dataset fingerprint and protocol; every rank once), unions the
rows and computes each metric once, in sorted clip-id order: the document a one-process
run writes, with ``distributed.mode`` saying how it was made.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from foleybench import distributed
from foleybench.api import FoleybenchError, ScoreContext


def merge_files(paths: Sequence[str | Path]) -> dict[str, Any]:
    """The results document of the shard states in ``paths``."""
    import torch

    from foleybench.registry import METRICS, load_plugins
    from foleybench.runner import score_finish

    if not paths:
        raise FoleybenchError("merge: give the shard state files (written by `score --shard I/N --out FILE`)")
    states = [distributed.read_state(p) for p in paths]
    distributed.check_complete_shards(states, [str(p) for p in paths])
    run = states[0]["run"]
    for name in run["metric_names"]:
        provs = {repr(s["metrics"][name]["provenance"]) for s in states}
        if len(provs) != 1:
            raise FoleybenchError(f"merge: metric {name!r} was scored with different settings on different shards")
    ctx_fields = dict(run["ctx"])
    if str(ctx_fields.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        ctx_fields["device"] = "cpu"  # merging computes from stored rows; no network runs here
    ctx_fields["progress"] = False
    ctx = ScoreContext(**ctx_fields)
    load_plugins()
    metrics = {}
    for name in run["metric_names"]:
        entry = METRICS.entry(name)
        metrics[name] = entry.load()(ctx=ctx, **{**entry.kwargs, **run["options"].get(name, {})})
    return score_finish(run, states, metrics, skip_rank=None, check_provenance=False)
