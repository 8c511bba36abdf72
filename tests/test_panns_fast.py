"""PANNs Cnn14's fast CPU route (batch norm folded into the convs, per-layer memory format,
optional Winograd convs) against the direct module-by-module route, and the Winograd
convolution itself against ``F.conv2d``.

Accuracy bar (issue 16, item 4): embeddings and logits within 1e-5 relative (max abs
difference / max abs) of the direct route, on random weights with non-trivial batch-norm
statistics and on the real clips in ../shared.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from foleybench import weights as W
from foleybench.metrics.embedders import panns, winograd

BAR = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def net() -> panns.Cnn14:
    torch.manual_seed(3)
    m = panns.Cnn14().eval()
    W.he_normal_init(m)
    m.fill_frontend()
    with torch.no_grad():  # realistic, non-trivial batch-norm statistics and affines
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.3, 3.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.2)
    return m


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape,pool", [((2, 13, 7, 8, 5), False), ((2, 12, 8, 16, 16), True),
                                        ((1, 25, 2, 32, 8), False), ((3, 9, 5, 4, 6), True),
                                        ((1, 1, 1, 3, 2), False)])
def test_winograd_equals_direct_convolution_in_float64(m, shape, pool) -> None:
    """In float64 the transform is exact up to rounding: any indexing, padding, tiling or
    pooling mistake would show as an O(1) difference."""
    n, h, w, c, k = shape
    g = torch.Generator().manual_seed(h * w + c)
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=g)
    kern = torch.randn(k, c, 3, 3, dtype=torch.float64, generator=g)
    bias = torch.randn(k, dtype=torch.float64, generator=g)
    ref = F.relu(F.conv2d(x, kern, bias, padding=1))
    if pool:
        ref = F.avg_pool2d(ref, 2)
    u = winograd.transform_kernel(kern, m, dtype=torch.float64)
    got = winograd.conv3x3(x.permute(0, 2, 3, 1).contiguous(), u, bias, m, pool=pool)
    assert got.shape == ref.permute(0, 2, 3, 1).shape
    assert _rel(got.permute(0, 3, 1, 2), ref) < 1e-12
    lin = winograd.conv3x3(x.permute(0, 2, 3, 1).contiguous(), u, None, m, relu=False)
    assert _rel(lin.permute(0, 3, 1, 2), F.conv2d(x, kern, padding=1)) < 1e-12


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_float32_both_gemms(m) -> None:
    g = torch.Generator().manual_seed(m)
    x = torch.randn(2, 64, 20, 10, generator=g)
    kern = torch.randn(48, 64, 3, 3, generator=g) * (2 / (9 * 64)) ** 0.5
    bias = 0.1 * torch.randn(48, generator=g)
    ref = F.avg_pool2d(F.relu(F.conv2d(x.double(), kern.double(), bias.double(), padding=1)), 2)
    u = winograd.transform_kernel(kern, m)
    for gemm in ("bmm", "conv"):
        got = winograd.conv3x3(x.permute(0, 2, 3, 1).contiguous(), u, bias, m, pool=True, gemm=gemm)
        assert got.dtype == torch.float32
        assert _rel(got.permute(0, 3, 1, 2).double(), ref) < (1e-6 if m == 2 else 1e-5)


def test_winograd_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tile size m=3"):
        winograd.transform_kernel(torch.zeros(2, 2, 3, 3), 3)
    with pytest.raises(ValueError, match=r"\[C_out, C_in, 3, 3\] kernel, got \(2, 2, 5, 5\)"):
        winograd.transform_kernel(torch.zeros(2, 2, 5, 5), 2)
    u = winograd.transform_kernel(torch.zeros(4, 3, 3, 3), 2)
    with pytest.raises(ValueError, match="does not fit F"):
        winograd.conv3x3(torch.zeros(1, 5, 5, 2), u, None, 2)
    with pytest.raises(ValueError, match="gemm must be"):
        winograd.conv3x3(torch.zeros(1, 5, 5, 3), u, None, 2, gemm="fft")


def _direct_reference(net: panns.Cnn14, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The upstream graph spelled out module by module (batch norm separate, NCHW)."""
    z = net.logmel_extractor(net.spectrogram_extractor(x))
    z = net.bn0(z.transpose(1, 3)).transpose(1, 3)
    for i in range(6):
        blk = getattr(net, f"conv_block{i + 1}")
        z = F.relu(blk.bn1(blk.conv1(z)))
        z = F.relu(blk.bn2(blk.conv2(z)))
        z = F.avg_pool2d(z, 2 if i < 5 else 1)
    z = z.mean(dim=3)
    z = z.max(dim=2).values + z.mean(dim=2)
    emb = F.relu(net.fc1(z))
    return emb, net.fc_audioset(emb)


@pytest.mark.parametrize("plan", ["default", "winograd"])
def test_fast_route_within_bar_of_direct(net: panns.Cnn14, plan: str) -> None:
    x = 0.1 * torch.randn(2, 16000 + 1234, generator=torch.Generator().manual_seed(7))
    if plan == "winograd":  # blocks 1-4 by Winograd, F(2x2) and F(4x4) mixed
        net.FAST_PLAN = ("im2col",) + ("w2", "w4") * 3 + ("w2", "nchw", "nchw", "wide2", "wide2")
    try:
        with torch.inference_mode():
            e_direct, l_direct = net(x, fast=False)
            e_fast, l_fast = net(x)
            e_ref, l_ref = _direct_reference(net, x)
    finally:
        net.__dict__.pop("FAST_PLAN", None)
    # the direct route is the upstream graph, bit for bit
    assert torch.equal(e_direct, e_ref) and torch.equal(l_direct, l_ref)
    assert not torch.equal(e_fast, e_direct), "the fast route did not run"
    assert _rel(e_fast, e_direct) < BAR and _rel(l_fast, l_direct) < BAR


def test_fast_route_only_without_autograd(net: panns.Cnn14) -> None:
    x = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        direct = net(x, fast=False)[0]
        assert not torch.equal(net(x)[0], direct)
    with torch.enable_grad():  # autograd on: the direct route, whatever ``fast`` says
        assert torch.equal(net(x)[0].detach(), direct)
    net.fast = False
    try:
        with torch.no_grad():
            assert torch.equal(net(x)[0], direct)
    finally:
        net.fast = True


def test_folded_kernels_follow_weight_changes(net: panns.Cnn14) -> None:
    """The folded (and transformed) kernels are cached; loading other weights or editing
    one in place must invalidate them."""
    x = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(9))
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        with torch.inference_mode():
            before = net(x)[0]
        sd = dict(saved)
        sd["conv_block3.bn2.running_mean"] = saved["conv_block3.bn2.running_mean"] + 0.5
        net.load_state_dict(sd)
        with torch.inference_mode():
            after, direct = net(x)[0], net(x, fast=False)[0]
        assert _rel(after, before) > 1e-3 and _rel(after, direct) < BAR
        with torch.no_grad():
            net.conv_block5.conv1.weight.mul_(0.5)
        with torch.inference_mode():
            edited, direct = net(x)[0], net(x, fast=False)[0]
        assert _rel(edited, after) > 1e-3 and _rel(edited, direct) < BAR
    finally:
        net.load_state_dict(saved)


def test_chunked_long_input_uses_the_fast_route(net: panns.Cnn14, monkeypatch) -> None:
    monkeypatch.setattr(panns.Cnn14, "CHUNK_FRAMES", 32 * 4)
    x = 0.1 * torch.randn(1, 16000 * 3 + 50, generator=torch.Generator().manual_seed(10))
    with torch.inference_mode():
        fast, direct = net(x), net(x, fast=False)
    assert not torch.equal(fast[0], direct[0])
    assert _rel(fast[0], direct[0]) < BAR and _rel(fast[1], direct[1]) < BAR


def test_plan_entries_against_direct_convolution() -> None:
    """The matrix-product convs of the plan, each against F.conv2d in float64."""
    g = torch.Generator().manual_seed(12)
    for c, width, fn, prep in ((1, 7, panns._im2col_conv_relu, lambda w: w.permute(0, 2, 3, 1).reshape(len(w), -1)),
                               (5, 7, panns._im2col_conv_relu, lambda w: w.permute(0, 2, 3, 1).reshape(len(w), -1)),
                               (6, 2, panns._wide2_conv_relu, panns._wide2_kernel)):
        x = torch.randn(3, c, 9, width, dtype=torch.float64, generator=g)
        w = torch.randn(4, c, 3, 3, dtype=torch.float64, generator=g)
        b = torch.randn(4, dtype=torch.float64, generator=g)
        bb = b.repeat(2) if fn is panns._wide2_conv_relu else b
        got = fn(x, prep(w).contiguous(), bb)
        assert _rel(got, F.relu(F.conv2d(x, w, b, padding=1))) < 1e-12
    with pytest.raises(ValueError, match="'wide2' needs a map 2 wide, got 3"):
        panns._wide2_conv_relu(torch.zeros(1, 2, 5, 3), torch.zeros(8, 12), torch.zeros(8))


def test_bad_plan_entry_is_named(net: panns.Cnn14) -> None:
    net.FAST_PLAN = ("cl",) * 11 + ("w3",)
    try:
        with torch.inference_mode(), pytest.raises(ValueError, match="FAST_PLAN entry 'w3'"):
            net(torch.zeros(1, 8000))
    finally:
        del net.FAST_PLAN


def test_real_clips_fast_within_bar_of_direct(shared_dir, net: panns.Cnn14) -> None:
    from foleybench.media_long import load_preprocessed

    clips = sorted(p for p in (shared_dir / "data" / "realclips").iterdir() if p.suffix in (".mp4", ".wav"))
    assert clips
    for p in clips:
        x = torch.from_numpy(load_preprocessed(str(p), panns.SAMPLE_RATE, 2.0))[None]
        with torch.inference_mode():
            (e_fast, l_fast), (e_direct, l_direct) = net(x), net(x, fast=False)
        for name, a, b in (("embedding", e_fast, e_direct), ("logits", l_fast, l_direct)):
            err = _rel(a, b)
            assert 0 < err < BAR, f"{p.name} {name}: {err:.2e}"


def test_build_fast_false_is_the_direct_route_and_its_own_cache_key() -> None:
    fast, direct = panns.build(mode="proxy", seed=0), panns.build(mode="proxy", seed=0, fast=False)
    assert fast.fast and not direct.fast
    assert fast.preprocess_id() != direct.preprocess_id()  # cached embeddings are kept apart
    x = [(0.1 * np.random.default_rng(11).standard_normal(8000)).astype(np.float32)]
    with torch.inference_mode():
        ref = direct.net(torch.from_numpy(x[0])[None], fast=False)[0].numpy()
        fast_ref = direct.net(torch.from_numpy(x[0])[None], fast=True)[0].numpy()
    assert np.array_equal(direct.embed_inputs(x)[0][0], ref[0])
    assert not np.array_equal(fast_ref, ref) and np.abs(fast_ref - ref).max() < BAR * np.abs(ref).max()
