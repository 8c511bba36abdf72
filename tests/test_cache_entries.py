"""Embedding cache entries: the bytes np.save writes behind the checksum, read back as one
buffer (a long input's frames are held once), writable, and every damage still caught."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from foleybench import cache as C


@pytest.mark.parametrize("shape", [(5,), (300, 128), (1, 2048), (2, 3, 4)])
def test_entry_bytes_are_np_save_bytes_and_round_trip(tmp_path, shape):
    c = C.EmbeddingCache(tmp_path)
    v = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    c.put("ab" * 32, v)
    raw = c._path("ab" * 32).read_bytes()
    buf = io.BytesIO()
    np.save(buf, v, allow_pickle=False)
    payload = buf.getvalue()
    assert raw == C._MAGIC + hashlib.sha256(payload).digest() + payload  # entries written before still read
    got = c.get("ab" * 32)
    assert got.dtype == np.float32 and got.shape == shape and np.array_equal(got, v)
    got += 1  # a hit is the caller's own array
    assert np.array_equal(c.get("ab" * 32), v)


def test_fortran_order_payload_reads_as_its_array():
    v = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    buf = io.BytesIO()
    np.save(buf, v, allow_pickle=False)
    payload = buf.getvalue()
    got, why = C.EmbeddingCache._problem(C._MAGIC + hashlib.sha256(payload).digest() + payload)
    assert why == "" and np.array_equal(got, v)


def _entry(payload: bytes) -> bytes:
    return C._MAGIC + hashlib.sha256(payload).digest() + payload


@pytest.mark.parametrize("make,why", [
    (lambda: b"", "empty file"),
    (lambda: b"FBE0" + b"\0" * 40, "no FBE1 header"),
    (lambda: _entry(b"not an npy payload"), "unreadable array"),
])
def test_header_problems_are_named(make, why):
    assert why in C.EmbeddingCache._problem(make())[1]


def test_truncated_payload_with_valid_checksum_is_unreadable_not_a_crash():
    buf = io.BytesIO()
    np.save(buf, np.ones((10, 4), np.float32), allow_pickle=False)
    v, why = C.EmbeddingCache._problem(_entry(buf.getvalue()[:-8]))
    assert v is None and "unreadable array" in why and "data bytes" in why


def test_flipped_data_byte_and_nan_and_dtype_are_caught(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.ones((10, 4), np.float32), allow_pickle=False)
    raw = bytearray(_entry(buf.getvalue()))
    raw[-3] ^= 0xFF
    assert "checksum mismatch" in C.EmbeddingCache._problem(bytes(raw))[1]
    for arr, why in ((np.full((3, 2), np.nan, np.float32), "non-finite"), (np.ones(4, np.float64), "dtype float64")):
        b = io.BytesIO()
        np.save(b, arr, allow_pickle=False)
        assert why in C.EmbeddingCache._problem(_entry(b.getvalue()))[1]


def test_all_finite_looks_at_every_block():
    v = np.zeros(10_000, np.float32)
    assert C.all_finite(v, block=64)
    v[9_999] = np.inf
    assert not C.all_finite(v, block=64)
