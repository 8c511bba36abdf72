"""Codecs: EnCodec's bandwidth rule and prefix property, parity with the ``encodec`` package
on shared random weights, and our RVQ / small codec (random init, tiny inputs)."""
from __future__ import annotations

import pytest
import torch

from foleybench.baselines.codec import bandwidth_to_n_q, encodec_24khz, get_codec
from foleybench.baselines.codec_small import SmallCodecConfig, load_small_codec, mrstft_distance, si_snr
from foleybench.baselines.rvq import ResidualVQ

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encodec_proxy():
    return encodec_24khz(24.0, mode="proxy", seed=0)


@pytest.fixture(scope="module")
def wav():
    return 0.3 * torch.randn(2, 1, 2000, generator=torch.Generator().manual_seed(0))


def test_bandwidth_to_codebooks_as_upstream():
    assert [bandwidth_to_n_q(b) for b in (1.5, 3.0, 6.0, 12.0, 24.0)] == [2, 4, 8, 16, 32]
    from encodec import EncodecModel

    m = EncodecModel.encodec_model_24khz(pretrained=False)
    for b in m.target_bandwidths:  # the package's own rule agrees
        assert m.quantizer.get_num_quantizers_for_bandwidth(m.frame_rate, b) == bandwidth_to_n_q(b)


def test_encodec_codes_at_6kbps_are_the_first_8_rows_at_24kbps(encodec_proxy, wav):
    at6 = encodec_24khz(6.0, mode="proxy", seed=0)
    with torch.no_grad():
        c24, c6 = encodec_proxy.encode(wav), at6.encode(wav)
    assert c24.dtype == torch.int64 and c24.shape == (2, 32, 7) and c6.shape == (2, 8, 7)  # ceil(2000/320)
    assert torch.equal(c6, c24[:, :8])
    assert len(torch.unique(c24)) > 10  # proxy codebooks are random: codes are not all one value
    assert (c24 >= 0).all() and (c24 < 1024).all()


def test_encodec_matches_the_encodec_package_on_shared_weights(encodec_proxy, wav):
    net = encodec_proxy.net  # the package's EncodecModel with our seeded random weights
    with torch.no_grad():
        for bw in (1.5, 6.0, 24.0):
            ours = encodec_24khz(bw, mode="proxy", seed=0)
            net.set_target_bandwidth(bw)
            x = ours.pad(wav)
            (codes, scale), = net.encode(x)
            assert scale is None and torch.equal(ours.encode(wav), codes)
            torch.testing.assert_close(ours.decode(codes), net.decode([(codes, None)]), rtol=0, atol=1e-6)


def test_our_rvq_picks_the_codes_of_encodecs_quantiser(encodec_proxy):
    vq = encodec_proxy.net.quantizer.vq
    ours = ResidualVQ(8, 1024, 128)
    with torch.no_grad():
        for q in range(8):
            ours.codebooks[q].copy_(vq.layers[q]._codebook.embed)
        z = torch.randn(2, 128, 9, generator=torch.Generator().manual_seed(1))
        theirs = vq.encode(z, n_q=8).transpose(0, 1)
        assert torch.equal(ours.encode(z), theirs)
        torch.testing.assert_close(ours.decode(theirs), vq.decode(theirs.transpose(0, 1)), rtol=0, atol=1e-5)


def test_small_codec_shapes_prefix_and_determinism(wav):
    codec = get_codec("foleycodec_16khz", mode="proxy", seed=3)
    assert codec.sample_rate == 16000 and codec.frame_rate == 50.0 and codec.n_q == 4 and codec.cardinality == 256
    with torch.no_grad():
        codes = codec.encode(wav)
        assert codes.dtype == torch.int64 and codes.shape == (2, 4, 7)
        assert (codes >= 0).all() and (codes < 256).all()
        assert torch.equal(codec.net.quantizer.encode(codec.net.encoder(codec.pad(wav)), n_q=2), codes[:, :2])
        out = codec.decode(codes)
        assert out.shape == (2, 1, 7 * 320) and torch.isfinite(out).all()
        assert torch.equal(get_codec("foleycodec_16khz", mode="proxy", seed=3).encode(wav), codes)


def test_rvq_training_step_moves_codebooks_and_passes_gradients():
    torch.manual_seed(0)
    vq = ResidualVQ(2, 8, 4).train()
    z = torch.randn(3, 4, 10, requires_grad=True)
    zq, codes, commit = vq(z)
    assert bool(vq.inited) and codes.shape == (3, 2, 10) and commit.item() >= 0
    zq.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # straight-through


def test_reconstruction_measures():
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2))
    assert float(mrstft_distance(x, x)) < 1e-6
    assert (si_snr(3 * x, x) > 60).all()  # scale-invariant
    noisy = x + 0.1 * torch.randn_like(x)
    assert 15 < float(si_snr(noisy, x).mean()) < 25  # about 20 dB
    assert float(mrstft_distance(noisy, x)) > 0.01


def test_small_codec_config_hop():
    cfg = SmallCodecConfig()
    assert cfg.sample_rate // int(torch.tensor(cfg.strides).prod()) == 50
    assert load_small_codec("proxy").hop == 320
