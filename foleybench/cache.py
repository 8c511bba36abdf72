"""Content-keyed embedding cache and batched extraction.

Key = sha256 of (input file's sha256, embedder name and version, checkpoint sha256,
preprocessing id, protocol clip length, what was computed, and whether the network ran one
clip per forward pass: ``ScoreContext.batch_invariant``). Changing any part recomputes; renaming or moving
a file does not. Values are float32 ``.npy`` payloads behind a sha256 checksum, written atomically (temp file +
``os.replace``), so an interrupted run leaves no half-written entry and a rerun resumes
where it stopped; a damaged entry is detected, reported and recomputed (:class:`EmbeddingCache`). Unlike a cache keyed by file existence, an edited file gets a new key.

Decoding runs in a DataLoader (``ctx.num_workers`` processes, each prefetching batches, so
decoding overlaps the network), the network in batches of ``ctx.batch_size`` on
``ctx.device`` (halved on CUDA out-of-memory, see foleybench.distributed.halving), or one
clip per forward pass when ``ctx.forward_per_clip()`` (the CPU default): then no clip's
values depend on which clips share its batch. A file that fails to decode comes back as its
:class:`InputError` in its slot: the caller reports and excludes it, the rest proceeds.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from foleybench.api import Embedder, FoleybenchError, InputError, ScoreContext
from foleybench.hashing import sha256_file_cached

DEFAULT_CACHE = Path("~/.cache/foleybench/embeddings")
# The one file hash (foleybench.hashing), remembered per (path, size, mtime) across runs;
# ``file_sha256`` stays importable from here for older call sites.
file_sha256 = sha256_file_cached


_MAGIC = b"FBE1"  # entry = magic, sha256 of the payload, payload (.npy bytes)
# Damaged entries met since the last take_repairs(): (entry path, problem). The runner
# moves them into the results JSON ("cache.repaired") and the end-of-run summary.
_REPAIRS: list[tuple[str, str]] = []
_WRITE_WARNED: set[str] = set()


def take_repairs() -> list[tuple[str, str]]:
    """The damaged cache entries found (and recomputed) since the last call; clears the list."""
    out = list(_REPAIRS)
    _REPAIRS.clear()
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class EmbeddingCache:
    """Entries are ``ROOT/ab/{key}.fbe``: ``FBE1`` + sha256(payload) + a float32 ``.npy``.

    Every read checks the checksum, the dtype (float32), the shape (non-empty) and that
    all values are finite. Anything else (flipped bytes behind an intact npy header, a
    0-byte file, NaNs, another array under the key's name) is deleted, reported through
    :func:`take_repairs` and a stderr line, and recomputed by the caller: never trusted,
    never fatal. A cache that cannot be written only costs time (one warning).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def key(self, file_hash: str, embedder: Embedder, what: str, ctx: ScoreContext) -> str:
        # clip_seconds lives in the run context, not the embedder, so it joins the key here.
        parts = [file_hash, embedder.name, str(embedder.version), str(embedder.checkpoint_sha256),
                 embedder.preprocess_id(), f"clip={ctx.clip_seconds}", what]
        if ctx.forward_per_clip():
            # rows from a one-clip forward are batch-free; batched rows (older caches, CUDA)
            # differ from them at float32 rounding, so the two never stand in for each other
            parts.append("forward=clip")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.fbe"

    @staticmethod
    def _problem(raw: bytes | bytearray | memoryview, kind: str = "rows") -> tuple[np.ndarray | None, str]:
        """(value, "") for a sound entry of ``kind`` ("rows": float32 embeddings; "stats":
        packed float64 frame statistics, :func:`stats_problem`), else (None, what is wrong).

        The value is a view of ``raw``'s payload (a bytearray gives a writable array), so a
        large entry (a long input's frames) is held once, not once per parsing step."""
        raw = memoryview(raw)
        if len(raw) == 0:
            return None, "empty file (0 bytes)"
        if len(raw) < 36 or bytes(raw[:4]) != _MAGIC:
            return None, "not a foleybench cache entry (no FBE1 header)"
        if hashlib.sha256(raw[36:]).digest() != bytes(raw[4:36]):
            return None, "checksum mismatch (damaged bytes)"
        try:
            v = _npy_view(raw, 36)
        except (ValueError, OSError, EOFError) as exc:
            return None, f"unreadable array ({exc})"
        if kind == "stats":
            problem = stats_problem(v)
            return (None, problem) if problem else (v, "")
        if v.dtype != np.float32:
            return None, f"dtype {v.dtype}, expected float32"
        if v.ndim == 0 or v.size == 0:
            return None, f"shape {v.shape} holds no values"
        if not all_finite(v):
            return None, "non-finite values"
        return v, ""

    def get(self, key: str, kind: str = "rows") -> np.ndarray | None:
        """The entry under ``key`` (checked as ``kind``: "rows" or "stats"), or None when
        there is none or it was damaged (then deleted and reported)."""
        p = self._path(key)
        try:
            with open(p, "rb") as f:
                raw = bytearray(os.fstat(f.fileno()).st_size)
                got = f.readinto(raw)
            del raw[got:]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raw, problem = bytearray(), f"unreadable ({exc.strerror})"
        else:
            value, problem = self._problem(raw, kind)
            if value is not None:
                return value
        _REPAIRS.append((str(p), problem))
        print(f"foleybench: warning: cache entry {p}: {problem}; recomputed", file=sys.stderr)
        try:
            p.unlink()
        except OSError:
            pass  # put() replaces it anyway
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        """Store ``value``: packed statistics (float64, :func:`is_stats`) as they are, anything
        else as float32 rows."""
        p = self._path(key)
        if isinstance(value, np.ndarray) and value.dtype == np.float64 and is_stats(value):
            arr = np.ascontiguousarray(value)
        else:
            arr = np.ascontiguousarray(value, dtype=np.float32)
        # the .npy bytes np.save writes (format 1.0 header, then the data), hashed and
        # written piece by piece: a long input's frames are never copied into one buffer
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(arr))
        data = memoryview(arr).cast("B") if arr.size else memoryview(b"")
        digest = hashlib.sha256(head.getvalue())
        digest.update(data)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            # Temp name ends in .tmp, never .fbe: a killed run leaves nothing a reader takes for an entry.
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        except OSError as exc:
            if str(self.root) not in _WRITE_WARNED:
                _WRITE_WARNED.add(str(self.root))
                print(f"foleybench: warning: {self.root}: embedding cache not writable ({exc.strerror}); "
                      "continuing without storing", file=sys.stderr)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + digest.digest() + head.getvalue())
                f.write(data)
            os.chmod(tmp, 0o666 & ~_umask())  # shared caches: follow the umask, not mkstemp's 0600
            os.replace(tmp, p)
        except OSError as exc:
            # Disk full, or a folder squatting on the entry's name: storing is an optimisation,
            # never a reason to lose the run (the value is computed and used all the same).
            print(f"foleybench: warning: cache entry {p}: not stored ({exc.strerror or exc})", file=sys.stderr)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# ------------------------------------------------------------------ statistics entries
# A long input's frame-level rows may be reduced to their statistics while they stream
# (foleybench.metrics.frechet_state.RowStats), so the rows are never held. Such a value is
# one float64 array [D + 2, D]: row 0 [count, 0, ..., 0], row 1 the mean, rows 2.. the
# centred scatter sum (x - mean)(x - mean)^T. Rows are float32, so the two never look alike.
def is_stats(a: Any, dim: int | None = None) -> bool:
    """True for packed frame statistics (float64 ``[D + 2, D]``, row 0 ``[count >= 1, 0, ...]``)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim != 2:
        return False
    d = a.shape[1]
    if d < 1 or a.shape[0] != d + 2 or (dim is not None and d != dim):
        return False
    head = a[0]
    return bool(head[0] >= 1 and head[0] == np.floor(head[0]) and not head[1:].any())


def stats_problem(a: np.ndarray) -> str:
    """"" for sound packed statistics, else what is wrong with them (the cache's check of a
    statistics entry: dtype, shape, header, finite values, non-negative variances)."""
    if a.dtype != np.float64:
        return f"dtype {a.dtype}, expected float64 statistics"
    if a.ndim != 2 or a.shape[1] < 1 or a.shape[0] != a.shape[1] + 2:
        return f"shape {a.shape} is not statistics [D + 2, D]"
    if not all_finite(a):
        return "non-finite values"
    if not is_stats(a):
        return "statistics header is not [count >= 1, 0, ...]"
    if (np.diagonal(a[2:]) < 0).any():
        return "negative variance in the statistics"
    return ""


def _npy_view(raw: memoryview, start: int) -> np.ndarray:
    """The array of the ``.npy`` bytes at ``raw[start:]``, as a view of ``raw`` (no copy)."""
    fmt = np.lib.format
    head = io.BytesIO(bytes(raw[start:start + 65536]))  # .npy headers are a few hundred bytes
    version = fmt.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(head)
    else:
        raise ValueError(f"npy format version {version} is not written here")
    if dtype.hasobject:
        raise ValueError("object arrays are not cache entries")
    count = int(np.prod(shape, dtype=np.int64))
    offset = start + head.tell()
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{len(raw) - offset} data bytes for shape {shape} of {dtype}")
    v = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return v.reshape(shape[::-1]).T if fortran else v.reshape(shape)


def all_finite(v: np.ndarray, block: int = 1 << 20) -> bool:
    """``np.isfinite(v).all()`` a block at a time (no mask the size of a long input's rows)."""
    flat = v.reshape(-1)
    return all(bool(np.isfinite(flat[i:i + block]).all()) for i in range(0, flat.size, block))


class _Inputs:
    """The files to decode, as a map-style dataset for torch's DataLoader (duck-typed, so
    this module imports torch only when something has to be computed)."""

    def __init__(self, paths: Sequence[str], load: Callable[[str], Any]):
        self.paths, self.load = list(paths), load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.load(self.paths[i])
        except InputError as exc:
            return exc
        except Exception as exc:  # a decoder crash on one file must not end the run
            return InputError(self.paths[i], f"could not be read ({type(exc).__name__}: {exc})")


def cached_apply(
    embedder: Embedder,
    paths: Sequence[str],
    ctx: ScoreContext,
    what: str = "embed",
    load: Callable[[str], Any] | None = None,
    apply: Callable[[list[Any]], list[np.ndarray]] | None = None,
    stats_what: str | None = None,
) -> list[np.ndarray | InputError]:
    """Run ``apply(load(path))`` for each path in batches, through the cache.

    ``what`` names the computation in the cache key ("embed", "logits", "audio"...), so
    one embedder can cache several outputs (ImageBind's two towers, PANNs' logits).
    Returns one float32 array (or the InputError) per path, in input order.
    ``stats_what``: ``apply`` may answer an input with packed statistics (:func:`is_stats`,
    float64, kept as they are); those are cached under this name as "stats" entries, which
    are looked up first.
    """
    load = load or (lambda p: embedder.load_input(p, ctx))
    from foleybench.distributed import fault_point, halving

    apply = apply or embedder.embed_inputs
    cache = EmbeddingCache(ctx.cache_dir) if ctx.cache_dir else None
    out: list[np.ndarray | InputError | None] = [None] * len(paths)
    keys: list[str | None] = [None] * len(paths)
    skeys: list[str | None] = [None] * len(paths)
    todo: list[int] = []
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            out[i] = InputError(p, "file not found")
            continue
        if cache is not None:
            file_hash = sha256_file_cached(p)
            keys[i] = cache.key(file_hash, embedder, what, ctx)
            if stats_what is not None:
                skeys[i] = cache.key(file_hash, embedder, stats_what, ctx)
                hit = cache.get(skeys[i], "stats")
                if hit is not None:
                    out[i] = hit
                    continue
            hit = cache.get(keys[i])
            if hit is not None:
                out[i] = hit
                continue
        todo.append(i)
    if todo:
        from torch.utils.data import DataLoader  # here: a fully cached call never imports torch

        loader = DataLoader(_Inputs([paths[i] for i in todo], load), batch_size=max(1, ctx.batch_size),
                            num_workers=ctx.num_workers, collate_fn=list)
        from foleybench.progress import track

        it = track(loader, len(loader), f"{embedder.name}:{what}", "batch", enabled=ctx.progress, leave=False)
        per_clip = ctx.forward_per_clip() and not embedder.rows_batch_free
        pos, computed = 0, 0
        for batch in it:
            idx = todo[pos:pos + len(batch)]
            pos += len(batch)
            good = [(i, x) for i, x in zip(idx, batch) if not isinstance(x, InputError)]
            for i, x in zip(idx, batch):
                if isinstance(x, InputError):
                    out[i] = x
            if not good:
                continue
            # CUDA out-of-memory: the batch is halved and retried, with a warning.
            if per_clip:  # one clip per forward: its values cannot depend on its neighbours
                values = [v for _, x in good for v in halving(apply, [x], f"{embedder.name} batch")]
            else:
                values = halving(apply, [x for _, x in good], f"{embedder.name} batch")
            if len(values) != len(good):
                raise FoleybenchError(f"embedder {embedder.name!r} returned {len(values)} outputs "
                                      f"for {len(good)} inputs")
            for (i, _), v in zip(good, values):
                if isinstance(v, InputError):  # a streamed input found bad while embedded
                    out[i] = v
                    continue
                stats = stats_what is not None and is_stats(v)
                if not stats:
                    v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float32)
                if not all_finite(v):
                    out[i] = InputError(paths[i], f"{embedder.name} produced non-finite values")
                    continue
                out[i] = v
                key = skeys[i] if stats else keys[i]
                if cache is not None and key is not None:
                    cache.put(key, v)
                computed += 1
                fault_point("score", computed)  # test hook (FOLEYBENCH_TEST_SIGKILL); no-op unset
    return out  # type: ignore[return-value]


def embed_files(embedder: Embedder, paths: Sequence[str], ctx: ScoreContext,
                stats: bool = False) -> list[np.ndarray | InputError]:
    """Embeddings ``[F, D]`` per file (see :meth:`Embedder.embed_inputs`). ``stats``: for
    callers that need only the rows' statistics (Frechet distances), an embedder offering
    ``embed_stats_inputs`` may answer a long input with its packed statistics
    (:func:`is_stats`), made while its rows stream and cached as a "stats" entry."""
    fn = getattr(embedder, "embed_stats_inputs", None) if stats else None
    if fn is None:
        return cached_apply(embedder, paths, ctx, "embed")
    return cached_apply(embedder, paths, ctx, "embed", apply=fn, stats_what="embed-stats")


def logits_files(embedder: Embedder, paths: Sequence[str], ctx: ScoreContext) -> list[np.ndarray | InputError]:
    """Classifier logits ``[K]`` per file, for embedders that offer ``logits_inputs``."""
    fn = getattr(embedder, "logits_inputs", None)
    if fn is None:
        raise FoleybenchError(f"embedder {embedder.name!r} has no classifier head (logits)")
    return cached_apply(embedder, paths, ctx, "logits", apply=fn)


# ------------------------------------------------------------------ computed values
def _reject_constant(name: str) -> Any:
    raise ValueError(f"bare {name}")


class ValueMemo:
    """Results of deterministic computations on cached embeddings, keyed by their inputs.

    The costly step of a re-score, once every embedding is cached, is the statistics: a
    Frechet distance at D = 2048 is an eigendecomposition of seconds. Its inputs (the
    embedding rows, the options, the implementation) determine its bits, so the value
    computed once is the value of every re-run with the same key. Entries are
    ``ROOT/values/ab/{key}.json`` holding the key, a JSON document (floats written
    with ``repr``, so they read back bit for bit) and the sha256 of the key and that
    document's text, written atomically. An entry that is unreadable, foreign, from an
    older format (no checksum) or edited (checksum mismatch: a hand-changed value) is
    recomputed, replaced and reported like a damaged embedding entry, never trusted.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser() / "values"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    @staticmethod
    def _digest(key: str, value_text: str) -> str:
        return hashlib.sha256(f"{key}|{value_text}".encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        import json

        p = self._path(key)
        try:
            text = p.read_text()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._damaged(p, f"unreadable ({getattr(exc, 'strerror', None) or exc})")
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            return self._damaged(p, f"not JSON ({str(exc)[:60]})")
        if not isinstance(doc, dict) or doc.get("key") != key or "value" not in doc:
            return self._damaged(p, "not a value entry for its key")
        if doc.get("sha256") is None:
            return self._damaged(p, "no checksum (an older format)")
        if doc["sha256"] != self._digest(key, json.dumps(doc["value"])):
            return self._damaged(p, "checksum mismatch (edited or damaged)")
        return doc["value"]

    @staticmethod
    def _damaged(p: Path, problem: str) -> None:
        _REPAIRS.append((str(p), problem))
        print(f"foleybench: warning: cache value {p}: {problem}; recomputed", file=sys.stderr)
        try:
            p.unlink()
        except OSError:
            pass  # put() replaces it, or says why it cannot
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` when it survives a JSON round trip unchanged (else nothing)."""
        import json

        value_text = json.dumps(value)  # insertion order kept: results read the same
        if json.loads(value_text) != value:
            return
        text = json.dumps({"key": key, "value": value, "sha256": self._digest(key, value_text)})
        p = self._path(key)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        except OSError:
            return  # an unwritable cache only costs the computation next time
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, p)
        except OSError:
            pass  # an entry that cannot be stored only costs the computation next time
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
