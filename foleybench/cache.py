"""Content-keyed embedding cache and batched extraction.

Key = sha256 of (input file's sha256, embedder name and version, checkpoint sha256,
preprocessing id, protocol clip length, what was computed). Changing any part recomputes; renaming or moving
a file does not. Values are float32 ``.npy`` files written atomically (temp file +
``os.replace``), so an interrupted run leaves no half-written entry and a rerun resumes
where it stopped. Unlike a cache keyed by file existence, an edited file gets a new key.

Decoding runs in a DataLoader (``ctx.num_workers`` processes), the network in batches of
``ctx.batch_size`` on ``ctx.device``. A file that fails to decode comes back as its
:class:`InputError` in its slot: the caller reports and excludes it, the rest proceeds.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from foleybench.api import Embedder, FoleybenchError, InputError, ScoreContext
from foleybench.hashing import sha256_file_cached

DEFAULT_CACHE = Path("~/.cache/foleybench/embeddings")
# The one file hash (foleybench.hashing), remembered per (path, size, mtime) across runs;
# ``file_sha256`` stays importable from here for older call sites.
file_sha256 = sha256_file_cached


class EmbeddingCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def key(self, file_hash: str, embedder: Embedder, what: str, ctx: ScoreContext) -> str:
        # clip_seconds lives in the run context, not the embedder, so it joins the key here.
        parts = [file_hash, embedder.name, str(embedder.version), str(embedder.checkpoint_sha256),
                 embedder.preprocess_id(), f"clip={ctx.clip_seconds}", what]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError):
            return None  # a damaged entry is recomputed, never trusted

    def put(self, key: str, value: np.ndarray) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(value, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class _Inputs(Dataset):
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
        loader = DataLoader(_Inputs([paths[i] for i in todo], load), batch_size=max(1, ctx.batch_size),
                            num_workers=ctx.num_workers, collate_fn=list)
        from foleybench.progress import track

        it = track(loader, len(loader), f"{embedder.name}:{what}", "batch", enabled=ctx.progress, leave=False)
        pos = 0
        for batch in it:
            idx = todo[pos:pos + len(batch)]
            pos += len(batch)
            good = [(i, x) for i, x in zip(idx, batch) if not isinstance(x, InputError)]
            for i, x in zip(idx, batch):
                if isinstance(x, InputError):
                    out[i] = x
            if not good:
                continue
            values = apply([x for _, x in good])
            if len(values) != len(good):
                raise FoleybenchError(f"embedder {embedder.name!r} returned {len(values)} outputs "
                                      f"for {len(good)} inputs")
            for (i, _), v in zip(good, values):
                v = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float32)
                if not np.all(np.isfinite(v)):
                    out[i] = InputError(paths[i], f"{embedder.name} produced non-finite values")
                    continue
                out[i] = v
                if cache is not None and keys[i] is not None:
                    cache.put(keys[i], v)
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
