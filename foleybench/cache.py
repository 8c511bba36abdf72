"""Content-keyed embedding cache and batched extraction.

Key = sha256 of (input file's sha256, embedder name and version, checkpoint sha256,
preprocessing id, protocol clip length, what was computed). Changing any part recomputes; renaming or moving
a file does not. Values are float32 ``.npy`` payloads behind a sha256 checksum, written atomically (temp file +
``os.replace``), so an interrupted run leaves no half-written entry and a rerun resumes
where it stopped; a damaged entry is detected, reported and recomputed (:class:`EmbeddingCache`). Unlike a cache keyed by file existence, an edited file gets a new key.

Decoding runs in a DataLoader (``ctx.num_workers`` processes, each prefetching batches, so
decoding overlaps the network), the network in batches of ``ctx.batch_size`` on
``ctx.device`` (halved on CUDA out-of-memory, see foleybench.distributed.halving). A file that fails to decode comes back as its
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
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.fbe"

    @staticmethod
    def _problem(raw: bytes | bytearray | memoryview) -> tuple[np.ndarray | None, str]:
        """(value, "") for a sound entry, else (None, what is wrong with it).

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
        if v.dtype != np.float32:
            return None, f"dtype {v.dtype}, expected float32"
        if v.ndim == 0 or v.size == 0:
            return None, f"shape {v.shape} holds no values"
        if not all_finite(v):
            return None, "non-finite values"
        return v, ""

    def get(self, key: str) -> np.ndarray | None:
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
            value, problem = self._problem(raw)
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
        p = self._path(key)
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
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


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
) -> list[np.ndarray | InputError]:
    """Run ``apply(load(path))`` for each path in batches, through the cache.

    ``what`` names the computation in the cache key ("embed", "logits", "audio"...), so
    one embedder can cache several outputs (ImageBind's two towers, PANNs' logits).
    Returns one float32 array (or the InputError) per path, in input order.
    """
    load = load or (lambda p: embedder.load_input(p, ctx))
    from foleybench.distributed import fault_point, halving

    apply = apply or embedder.embed_inputs
    cache = EmbeddingCache(ctx.cache_dir) if ctx.cache_dir else None
    out: list[np.ndarray | InputError | None] = [None] * len(paths)
    keys: list[str | None] = [None] * len(paths)
    todo: list[int] = []
    for i, p in enumerate(paths):
        if not os.path.isfile(p):
            out[i] = InputError(p, "file not found")
            continue
        if cache is not None:
            keys[i] = cache.key(sha256_file_cached(p), embedder, what, ctx)
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
            values = halving(apply, [x for _, x in good], f"{embedder.name} batch")
            if len(values) != len(good):
                raise FoleybenchError(f"embedder {embedder.name!r} returned {len(values)} outputs "
                                      f"for {len(good)} inputs")
            for (i, _), v in zip(good, values):
                v = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float32)
                if not all_finite(v):
                    out[i] = InputError(paths[i], f"{embedder.name} produced non-finite values")
                    continue
                out[i] = v
                if cache is not None and keys[i] is not None:
                    cache.put(keys[i], v)
                computed += 1
                fault_point("score", computed)  # test hook (FOLEYBENCH_TEST_SIGKILL); no-op unset
    return out  # type: ignore[return-value]


def embed_files(embedder: Embedder, paths: Sequence[str], ctx: ScoreContext) -> list[np.ndarray | InputError]:
    """Embeddings ``[F, D]`` per file (see :meth:`Embedder.embed_inputs`)."""
    return cached_apply(embedder, paths, ctx, "embed")


def logits_files(embedder: Embedder, paths: Sequence[str], ctx: ScoreContext) -> list[np.ndarray | InputError]:
    """Classifier logits ``[K]`` per file, for embedders that offer ``logits_inputs``."""
    fn = getattr(embedder, "logits_inputs", None)
    if fn is None:
        raise FoleybenchError(f"embedder {embedder.name!r} has no classifier head (logits)")
    return cached_apply(embedder, paths, ctx, "logits", apply=fn)


# ------------------------------------------------------------------ computed values
class ValueMemo:
    """Results of deterministic computations on cached embeddings, keyed by their inputs.

    The costly step of a re-score, once every embedding is cached, is the statistics: a
    Frechet distance at D = 2048 is an eigendecomposition of seconds. Its inputs (the
    embedding rows, the options, the implementation) determine its bits, so the value
    computed once is the value of every re-run with the same key. Entries are
    ``ROOT/values/ab/{key}.json`` holding the key and a JSON document (floats written
    with ``repr``, so they read back bit for bit), written atomically; an unreadable or
    foreign entry is recomputed (and replaced), never trusted.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser() / "values"

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        import json

        try:
            doc = json.loads(self._path(key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("key") != key or "value" not in doc:
            return None
        return doc["value"]

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` when it survives a JSON round trip unchanged (else nothing)."""
        import json

        text = json.dumps({"key": key, "value": value})  # insertion order kept: results read the same
        if json.loads(text)["value"] != value:
            return
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
            pass
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
