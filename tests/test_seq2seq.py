"""seq2seq: incremental generation carries the tiers' states exactly as teacher forcing sees them."""
from __future__ import annotations

import torch

from foleybench.baselines.seq2seq import CONFIGS, clip_log_likelihood
from foleybench.baselines.seq2seq_net import Seq2SeqNet


def test_step_by_step_logits_equal_teacher_forced_logits():
    cfg = CONFIGS["debug"]
    torch.manual_seed(0)
    net = Seq2SeqNet(cfg).eval()
    q = torch.randint(0, cfg.n_classes, (2, 3 * cfg.top_frame + 3))  # not a whole number of top frames
    video = torch.rand(2, 4, 3, cfg.frame_size, cfg.frame_size) * 2 - 1
    with torch.no_grad():
        forced = net.logits(q, video)
        st, steps = net.init_state(net.init_hidden(video)), []
        for t in range(q.shape[1]):
            steps.append(net.step(st, t))
            net.push(st, q[:, t])
    torch.testing.assert_close(torch.stack(steps, 1), forced, atol=1e-5, rtol=1e-5)


def test_video_reaches_the_likelihood_only_through_the_first_state():
    cfg = CONFIGS["debug"]
    torch.manual_seed(0)
    net = Seq2SeqNet(cfg).eval()
    audio = torch.rand(1, 1, 4 * cfg.spf) * 2 - 1
    v1, v2 = torch.rand(2, 1, 4, 3, cfg.frame_size, cfg.frame_size)
    with torch.no_grad():
        a, b = clip_log_likelihood(net, audio, v1), clip_log_likelihood(net, audio, v2)
        assert a.shape == (1,) and a.item() < 0 and not torch.equal(a, b)
        net.vid2h.weight.zero_()  # cut the only path from video to audio
        net.vid2h.bias.zero_()
        torch.testing.assert_close(clip_log_likelihood(net, audio, v1), clip_log_likelihood(net, audio, v2))
