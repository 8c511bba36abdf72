"""TempoTokens mapper: window-token arithmetic, locality by time, determinism, odd lengths."""
from __future__ import annotations

import pytest
import torch

from foleybench.baselines.tempotokens_mapper import (
    WINDOWS,
    AudioMapper,
    frame_assignment,
    pool_to_frames,
    window_tokens,
)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9, 17])
def test_window_tokens_match_the_closed_form(n: int) -> None:
    s = torch.randn(2, n, 4, dtype=torch.float64)
    got = window_tokens(s, WINDOWS)
    for k, w in zip(WINDOWS, got):
        for i in range(n):
            lo, hi = max(i - k, 0), min(i + k, n)   # half-open: i - k in, i + k out
            assert torch.allclose(w[:, i], s[:, lo:hi].mean(dim=1), atol=1e-12, rtol=0), (k, i)


def test_patches_map_to_frames_by_time() -> None:
    times = torch.tensor([0.0, 0.05, 0.12, 0.26, 0.99, 1.5])
    assert frame_assignment(times, 8, 8.0).tolist() == [0, 0, 0, 2, 7, 7]  # past the end -> last frame
    x = torch.arange(6, dtype=torch.float64)[None, :, None]
    pooled = pool_to_frames(x, times, 8, 8.0)[0, :, 0]
    assert pooled[0] == 1.0 and pooled[2] == 3.0 and pooled[7] == 4.5
    # frame 1 (0.125-0.25 s) has no patch: nearest in time to its centre 0.1875 is t=0.12 (index 2)
    assert pooled[1] == 2.0
    # a float32 time on a frame boundary belongs to the frame it starts
    assert frame_assignment(torch.tensor([1.3], dtype=torch.float32), 30, 10.0).item() == 13


def _mapper(seed: int = 0) -> AudioMapper:
    torch.manual_seed(seed)
    return AudioMapper(in_dim=6, hidden=16, out_dim=8).eval()


def test_changing_one_window_of_audio_changes_only_nearby_tokens() -> None:
    m = _mapper()
    fps, n_frames, rate = 10.0, 30, 40.0               # 4 patches per frame
    times = torch.arange(int(n_frames / fps * rate)) / rate
    a = torch.randn(1, len(times), 6)
    b = a.clone()
    j = 13
    b[0, (times >= j / fps) & (times < (j + 1) / fps)] += 1.0   # audio of frame 13's window only
    with torch.no_grad():
        (ca, sa), (cb, sb) = m(a, times, n_frames, fps), m(b, times, n_frames, fps)
    changed = (sa - sb).abs().amax(dim=-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [j]
    for t, k in enumerate(WINDOWS, start=1):
        diff = (ca[0, :, t] - cb[0, :, t]).abs().amax(dim=-1) > 0
        expect = [i for i in range(n_frames) if max(i - k, 0) <= j < min(i + k, n_frames)]
        assert diff.nonzero().flatten().tolist() == expect, k


def test_eval_is_deterministic_and_training_dropout_is_not() -> None:
    m = _mapper()
    times = torch.arange(40) / 20.0
    a = torch.randn(2, 40, 6)
    with torch.no_grad():
        c1, _ = m(a, times, 16, 8.0)
        c2, _ = m(a, times, 16, 8.0)
        assert torch.equal(c1, c2)
        m.train()
        torch.manual_seed(1)
        g1 = m(a, times, 16, 8.0)[0][:, :, -1]
        torch.manual_seed(2)
        g2 = m(a, times, 16, 8.0)[0][:, :, -1]
    assert not torch.equal(g1, g2)


@pytest.mark.parametrize("seconds,fps", [(2.37, 8.0), (10.0, 25.0), (3.0, 7.5)])
def test_odd_lengths_and_ablation_shapes(seconds: float, fps: float) -> None:
    m = _mapper()
    n_frames = max(1, round(seconds * fps))
    times = torch.arange(int(seconds * 12.5)) / 12.5      # patches sparser than frames at 25 fps
    a = torch.randn(1, len(times), 6)
    with torch.no_grad():
        full, s = m(a, times, n_frames, fps)
        assert full.shape == (1, n_frames, 2 + len(WINDOWS), 8) and s.shape == (1, n_frames, 8)
        for w in range(len(WINDOWS) + 1):
            assert m(a, times, n_frames, fps, n_windows=w)[0].shape[2] == 2 + w
        g, _ = m(a, times, n_frames, fps, global_only=True)
    assert g.shape == (1, n_frames, 1, 8) and torch.equal(g[:, :, 0], full[:, :, -1])
    assert torch.isfinite(full).all()
    with pytest.raises(ValueError):
        m(a, times, 0, fps)
