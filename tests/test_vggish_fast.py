"""VGGish's fast CPU route (metrics/embedders/vggish.py, ``VGGishNet.fast``) against its
direct route, the upstream graph layer by layer."""
from __future__ import annotations

import numpy as np
import torch

from foleybench.metrics.embedders import vggish


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _net() -> vggish.VGGishNet:
    torch.manual_seed(0)
    net = vggish.VGGishNet().eval()
    with torch.no_grad():  # biases that matter, so a dropped or doubled bias shows
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.bias.normal_(0, 0.05)
    return net


def test_fast_route_equals_direct_within_1e_5():
    net = _net()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (3, 16000 * 3)).astype(np.float32))
    ex = vggish.log_mel_examples(x).reshape(-1, 1, 96, 64).float()
    with torch.inference_mode():
        fast, direct = net(ex), net(ex, fast=False)
    assert fast.shape == direct.shape == (9, 128)
    assert 0 < _rel(fast, direct) < 1e-5  # not the same code path, the same numbers
    with torch.inference_mode():
        manual = net.embeddings(net.features(ex).permute(0, 2, 3, 1).flatten(1))
    assert torch.equal(direct, manual)


def test_direct_route_when_autograd_training_or_asked():
    net = _net()
    ex = torch.randn(2, 1, 96, 64)
    with torch.inference_mode():
        direct = net(ex, fast=False)
    with torch.no_grad():
        net.fast = False
        assert torch.equal(net(ex), direct)
        net.fast = True
    out = net(ex)  # autograd on: the direct route, so gradients flow as upstream's graph
    assert out.requires_grad and torch.equal(out.detach(), direct)
    net.train()
    with torch.no_grad():
        assert torch.equal(net(ex), direct)  # no dropout or BN in VGGish: train mode = direct


def test_embedder_uses_the_fast_route_and_matches_direct():
    emb = vggish.build(mode="proxy", seed=0)
    x = np.random.default_rng(1).normal(0, 0.1, 16000 * 2).astype(np.float32)
    fast = emb.embed_inputs([x])[0]
    emb.net.fast = False
    direct = emb.embed_inputs([x])[0]
    assert fast.shape == direct.shape == (2, 128)
    assert not np.array_equal(fast, direct)  # the switch reached the network
    assert np.abs(fast - direct).max() <= 1e-5 * np.abs(direct).max()
