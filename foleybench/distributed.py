"""Sharded runs on several processes, GPUs or machines, with exact merges.

The engine is torch.distributed as launched by ``torchrun``, ``srun`` or submitit: the
rank, world size and local rank come from the environment (``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``, or srun's ``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``); with
neither, the run is one process. Nothing here schedules anything.

- **Shard rule** (:func:`shard_of`): a clip belongs to shard
  ``int(sha256(NFC(clip_id))[:16], 16) % world_size``. A pure function of the id, so the
  shards are disjoint and complete, no clip is padded or duplicated (unlike
  ``DistributedSampler``), and a rerun with the same world size gives each rank the same
  clips (so a killed rank's rerun finds its own finished files).
- **Exact merges**: metric state is rows keyed by clip id (metrics/base.py), reduced in
  sorted clip-id order at ``compute``. Ranks send their rows to rank 0
  (:func:`gather_to_root`), which unions them (:func:`merge_state`) and computes: the
  value, interval and exclusions are those of a one-process run, bit for bit, as long as
  each clip's row is itself computed the same way (docs/SCALING.md lists the caveats).
- **Offline shards** (``--shard i/N``, no network between jobs): each job scores its
  shard and writes a state file (:func:`write_state`); ``foleybench merge`` reads them
  (:func:`read_state`, restricted unpickler) and computes the same document.
- **Faults**: :func:`fault_point` is a test hook (``FOLEYBENCH_TEST_SIGKILL=STAGE:RANK:K``
  makes that rank SIGKILL itself at its K-th clip of STAGE ``generate`` or ``score``).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import signal
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from foleybench.api import FoleybenchError, InputError

SHARD_RULE = "int(sha256(NFC(clip_id)).hexdigest()[:16], 16) % world_size"
STATE_SCHEMA = "foleybench.shard-state/1"
T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node.

    ``offline``: the shard came from ``--shard i/N`` (independent jobs, no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    offline: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def grouped(self) -> bool:
        """True when the ranks talk (a torch.distributed process group), not offline shards."""
        return self.active and not self.offline

    def record(self) -> dict[str, Any]:
        """What the results document says about the run's sharding."""
        return {"world_size": self.world_size, "shard_rule": SHARD_RULE,
                "mode": "offline shards + merge" if self.offline else
                ("torch.distributed" if self.active else "single process")}


def _int_env(*names: str) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v not in (None, ""):
            try:
                return int(v)
            except ValueError:
                raise FoleybenchError(f"environment variable {n}={v!r} is not an integer") from None
    return None


def env_from_environ() -> DistEnv:
    """Rank, world size and local rank from torchrun's or srun's variables (one process when absent)."""
    # SLURM_STEP_NUM_TASKS, not SLURM_NTASKS: the latter is also set in the batch script
    # itself, where a plain `foleybench score` is one process, not rank 0 of many.
    world = _int_env("WORLD_SIZE", "SLURM_STEP_NUM_TASKS") or 1
    rank = _int_env("RANK", "SLURM_PROCID") or 0
    local = _int_env("LOCAL_RANK", "SLURM_LOCALID") or 0
    if world < 1 or not 0 <= rank < world:
        raise FoleybenchError(f"rank {rank} is not within world size {world} (RANK/WORLD_SIZE)")
    return DistEnv(rank, world, local)


def parse_shard(text: str) -> DistEnv:
    """``--shard i/N`` -> an offline DistEnv (0 <= i < N)."""
    i, slash, n = text.partition("/")
    try:
        rank, world = int(i), int(n)
    except ValueError:
        raise FoleybenchError(f"--shard expects I/N (e.g. 0/4), got {text!r}") from None
    if not slash or world < 1 or not 0 <= rank < world:
        raise FoleybenchError(f"--shard {text}: need 0 <= I < N")
    return DistEnv(rank, world, 0, offline=True)


_CURRENT: DistEnv | None = None


def setup(shard: str | None = None) -> DistEnv:
    """The run's DistEnv; under torchrun/srun with world size > 1, the process group too
    (gloo on CPU, nccl when this rank has a GPU, which becomes its current device)."""
    global _CURRENT
    if shard:
        if env_from_environ().active:
            raise FoleybenchError("--shard is for independent jobs; under torchrun/srun the ranks shard themselves")
        _CURRENT = parse_shard(shard)
        return _CURRENT
    env = env_from_environ()
    _CURRENT = env
    if env.active:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if "MASTER_ADDR" not in os.environ and "SLURM_PROCID" in os.environ:
                raise FoleybenchError("under srun set MASTER_ADDR and MASTER_PORT (e.g. the first node of "
                                      "$SLURM_JOB_NODELIST and a free port) so the ranks can meet")
            use_nccl = torch.cuda.is_available() and env.local_rank < torch.cuda.device_count()
            if use_nccl:
                torch.cuda.set_device(env.local_rank)
            dist.init_process_group("nccl" if use_nccl else "gloo", rank=env.rank, world_size=env.world_size)
    return env


def current() -> DistEnv:
    """The DistEnv set up by :func:`setup`, else the environment's (never initialises a group)."""
    return _CURRENT if _CURRENT is not None else env_from_environ()


def teardown() -> None:
    global _CURRENT
    if "torch.distributed" not in sys.modules:  # no group can exist; a cached re-score never imports torch
        _CURRENT = None
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


# ------------------------------------------------------------------------------ sharding
def shard_of(clip_id: str, world_size: int) -> int:
    """The shard (rank) of ``clip_id``: see :data:`SHARD_RULE`."""
    h = hashlib.sha256(unicodedata.normalize("NFC", clip_id).encode("utf-8")).hexdigest()
    return int(h[:16], 16) % world_size


def mine(items: Iterable[T], env: DistEnv, key: Callable[[T], str]) -> list[T]:
    """The items of this rank's shard, in their given order."""
    items = list(items)
    if not env.active:
        return items
    return [x for x in items if shard_of(key(x), env.world_size) == env.rank]


# ------------------------------------------------------------------------------ collectives
def gather_to_root(obj: Any, env: DistEnv) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (rank order), None on the others. One process: [obj]."""
    if not env.grouped:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * env.world_size if env.is_root else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(env: DistEnv) -> None:
    if env.grouped:
        import torch.distributed as dist

        dist.barrier()


def broadcast_from_root(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.grouped:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------------------------ metric states
def metric_state(metric: Any) -> dict[str, Any]:
    """A clip-keyed metric's state without its networks: rows, exclusions, provenance."""
    return {"type": f"{type(metric).__module__}:{type(metric).__qualname__}", "name": metric.name,
            "provenance": metric.provenance(), "rows": dict(metric.rows), "excluded": dict(metric.excluded)}


def merge_state(metric: Any, state: dict[str, Any], where: str = "shard", check_provenance: bool = True) -> None:
    """Union a :func:`metric_state` into ``metric`` (same class and provenance, disjoint clips)."""
    mine_type = f"{type(metric).__module__}:{type(metric).__qualname__}"
    if state["type"] != mine_type or state["name"] != metric.name:
        raise FoleybenchError(f"{where}: metric {state['name']!r} ({state['type']}) cannot merge into "
                              f"{metric.name!r} ({mine_type})")
    if check_provenance and state["provenance"] != metric.provenance():
        raise FoleybenchError(f"{where}: metric {metric.name!r} was scored with different settings "
                              f"({state['provenance']} vs {metric.provenance()})")
    shared = sorted((set(metric.rows) | set(metric.excluded)) & (set(state["rows"]) | set(state["excluded"])))
    if shared:
        raise FoleybenchError(f"{where}: metric {metric.name!r}: shards share clip ids {shared[:5]}")
    metric.rows.update(state["rows"])
    metric.excluded.update(state["excluded"])


# ------------------------------------------------------------------------------ state files
class _StateUnpickler(pickle.Unpickler):
    """Reads only what a state file holds: builtins, numpy arrays and scalars, Excluded."""

    _ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "int", "float",
                                            "bool", "bytes", "complex")}
    _ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                 ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                 ("numpy._core.multiarray", "scalar"), ("foleybench.metrics.base", "Excluded"),
                 ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED or (module == "numpy" and name.endswith("DType")) or \
                (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a shard state file")


def write_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a shard state atomically: magic line, sha256 of the payload, pickled payload."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps({"schema": STATE_SCHEMA, **state}, protocol=4)
    blob = STATE_SCHEMA.encode() + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """A shard state written by :func:`write_state`; InputError naming the file when it is not one."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(str(path), f"cannot read shard state ({exc.strerror})") from None
    head, _, rest = raw.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if head != STATE_SCHEMA.encode():
        raise InputError(str(path), f"not a foleybench shard state file (expected a {STATE_SCHEMA} header)")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise InputError(str(path), "shard state is damaged (checksum mismatch)")
    try:
        return _StateUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(str(path), f"shard state unreadable ({exc})") from None


def check_complete_shards(states: Sequence[dict[str, Any]], paths: Sequence[str]) -> None:
    """The states are shards 0..N-1 of one N-way split of one run, each exactly once."""
    worlds = {s["world_size"] for s in states}
    if len(worlds) != 1:
        raise FoleybenchError(f"shard states come from different splits (world sizes {sorted(worlds)})")
    world = worlds.pop()
    ranks = sorted(s["rank"] for s in states)
    if ranks != list(range(world)):
        have = ", ".join(f"{p}: {s['rank']}/{world}" for p, s in zip(paths, states))
        raise FoleybenchError(f"merge needs shards 0..{world - 1} of {world}, each once; got {have}")
    for key in ("task", "metric_names", "fingerprint", "options", "protocol"):
        vals = {repr(s["run"][key]) for s in states}
        if len(vals) != 1:
            raise FoleybenchError(f"shard states disagree on {key}: {sorted(vals)[:2]}")


# ------------------------------------------------------------------------------ faults
def fault_point(stage: str, count: int) -> None:
    """Test hook: ``FOLEYBENCH_TEST_SIGKILL=STAGE:RANK:K`` SIGKILLs rank RANK when it
    reaches its K-th clip of ``stage`` (generate: files written; score: embeddings
    computed). Used by tests/test_distributed.py to prove reruns resume; unset, a no-op."""
    spec = os.environ.get("FOLEYBENCH_TEST_SIGKILL")
    if not spec:
        return
    st, rank, k = spec.split(":")
    if st == stage and int(rank) == current().rank and count >= int(k):
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------ OOM
def halving(fn: Callable[[list[Any]], list[T]], items: list[Any], what: str = "batch",
            on_halve: Callable[[int, int], None] | None = None) -> list[T]:
    """``fn(items)``; on CUDA out-of-memory, the batch is halved and each half retried
    (recursively), with a warning. A single item that does not fit re-raises. Results
    are concatenated in input order; for batch-independent functions (every embedder and
    model: see the conformance tests) they are those of the full batch."""
    import torch

    try:
        return list(fn(items))
    except torch.cuda.OutOfMemoryError:
        if len(items) <= 1:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = (len(items) + 1) // 2
        import sys

        print(f"foleybench: warning: CUDA out of memory on a {what} of {len(items)}; retrying as "
              f"{half} + {len(items) - half}", file=sys.stderr)
        if on_halve is not None:
            on_halve(len(items), half)
        return halving(fn, items[:half], what, on_halve) + halving(fn, items[half:], what, on_halve)


# ------------------------------------------------------------------------------ generation
def generation_index_name(env: DistEnv) -> str:
    """``generation.json``; an offline shard's own index is ``generation.shard-I-of-N.json``."""
    return f"generation.shard-{env.rank}-of-{env.world_size}.json" if env.offline else "generation.json"


def combine_generation(env: DistEnv, done: list[str], skipped: list[str], failures: dict[str, str],
                       records: Sequence[Any]) -> tuple[list[str], list[str], dict[str, str]]:
    """Every rank's (generated, resumed, failures) on rank 0, in manifest order (a
    rank's own lists elsewhere). Also a barrier: when it returns on rank 0, every rank
    has written its files."""
    if not env.grouped:
        return done, skipped, failures
    parts = gather_to_root((done, skipped, failures), env)
    barrier(env)
    if parts is None:
        return done, skipped, failures
    order = [r.clip_id for r in records]
    all_done = {c for p in parts for c in p[0]}
    all_skipped = {c for p in parts for c in p[1]}
    merged: dict[str, str] = {}
    for p in parts:
        merged.update(p[2])
    rank_of = {c: i for i, c in enumerate(order)}
    fails = dict(sorted(merged.items(), key=lambda kv: (kv[0] in rank_of, rank_of.get(kv[0], 0))))
    return ([c for c in order if c in all_done], [c for c in order if c in all_skipped], fails)
