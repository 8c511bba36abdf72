"""Networks of the ``seq2seq`` family: a video encoder that starts a 3-tier SampleRNN.

Zhou et al. 2018 ("Visual to Sound: Generating Natural Sound for Videos in the Wild"),
their sequence-to-sequence variant: per-frame features go through an RNN and its final
state initialises the hidden state of the coarsest tier of a SampleRNN (Mehri et al.
2017). The tiers:

- top tier: a GRU over frames of ``top_frame`` samples (input: the previous frame's
  mu-law values scaled to [-1, 1]); each step's output is upsampled by a linear layer to
  ``top_frame // mid_frame`` conditioning vectors for the middle tier;
- middle tier: a GRU over frames of ``mid_frame`` samples (input: the previous
  ``mid_frame`` samples plus the top tier's vector), upsampled to one vector per sample;
- sample level: an MLP over the embeddings of the previous ``mid_frame`` classes plus
  the middle tier's vector, giving 256 mu-law logits.

Silence (mu-law class 128, amplitude 0) stands for the samples before the clip, in
training and in generation alike. Everything is causal: the logits of sample t depend
on classes < t and on the video only through the initial top-tier state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class FrameEncoder(nn.Module):
    """Frames [B, T, 3, S, S] in [-1, 1] -> per-frame features [B, T, d_frame].

    Zhou et al. used ImageNet VGG19 features per frame; a small 2D CNN trained end to end
    stands in for them here, so nothing pretrained is needed."""

    def __init__(self, ch: int, d_frame: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, ch, 3, 2, 1), nn.ReLU(), nn.Conv2d(ch, 2 * ch, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(2 * ch, 2 * ch, 3, 2, 1), nn.ReLU())
        self.proj = nn.Linear(2 * ch, d_frame)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        B, T = v.shape[:2]
        x = self.conv(v.flatten(0, 1)).mean((-1, -2))  # global average pool: [B*T, 2ch]
        return self.proj(x).view(B, T, -1)


@dataclass
class TierState:
    """Generation state of one batch: GRU states and the pending conditioning vectors.

    h_top, h_mid: [1, B, H]; hist: the last ``top_frame`` classes [B, top_frame] (long);
    top_cond: [B, top_frame // mid_frame, H]; mid_cond: [B, mid_frame, H]."""

    h_top: torch.Tensor
    h_mid: torch.Tensor
    hist: torch.Tensor
    top_cond: Any = None
    mid_cond: Any = None


class Seq2SeqNet(nn.Module):
    """Video encoder + 3-tier SampleRNN over mu-law classes (see the module docstring)."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        H, T, M, K = cfg.hidden, cfg.top_frame, cfg.mid_frame, cfg.n_classes
        if T % M:
            raise ValueError(f"top_frame {T} must be a multiple of mid_frame {M}")
        self.frames = FrameEncoder(cfg.frame_ch, cfg.d_frame)
        self.video_rnn = nn.GRU(cfg.d_frame, cfg.h_video, batch_first=True)
        self.vid2h = nn.Linear(cfg.h_video, H)  # final video state -> initial top-tier state
        self.top_in = nn.Linear(T, H)
        self.top_rnn = nn.GRU(H, H, batch_first=True)
        self.top_up = nn.Linear(H, (T // M) * H)
        self.mid_in = nn.Linear(M, H)
        self.mid_rnn = nn.GRU(H, H, batch_first=True)
        self.mid_up = nn.Linear(H, M * H)
        self.emb = nn.Embedding(K, cfg.emb)
        self.smp_in = nn.Linear(M * cfg.emb, H)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, K))

    @property
    def silence(self) -> int:
        """Mu-law class of amplitude 0 (what precedes a clip)."""
        return self.cfg.n_classes // 2

    def _real(self, q: torch.Tensor) -> torch.Tensor:
        """Classes -> mu-law values in [-1, 1] (tier inputs)."""
        return q.float() * (2.0 / (self.cfg.n_classes - 1)) - 1.0

    def init_hidden(self, video: torch.Tensor) -> torch.Tensor:
        """Frames [B, F, 3, S, S] -> initial top-tier state [1, B, H] (tanh of the video RNN's final state)."""
        _, h = self.video_rnn(self.frames(video))
        return torch.tanh(self.vid2h(h))

    def logits(self, classes: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, N, K] for classes [B, N] (long) given frames [B, F, 3, S, S].

        Output t predicts classes[:, t] from classes[:, < t] (silence before the clip)."""
        cfg = self.cfg
        T, M = cfg.top_frame, cfg.mid_frame
        B, N = classes.shape
        Np = -(-N // T) * T
        x = F.pad(classes, (T, Np - N), value=self.silence)  # [B, T + Np]: T silent samples first
        top_x = self._real(x[:, :Np]).view(B, Np // T, T)  # frame k sees the T samples before it
        h_top, _ = self.top_rnn(self.top_in(top_x), self.init_hidden(video))
        top_c = self.top_up(h_top).view(B, Np // M, -1)  # [B, Np/M, H]
        mid_x = self._real(x[:, T - M:T - M + Np]).view(B, Np // M, M)
        h_mid, _ = self.mid_rnn(self.mid_in(mid_x) + top_c, h_top.new_zeros(1, B, h_top.shape[-1]))
        mid_c = self.mid_up(h_mid).view(B, Np, -1)  # [B, Np, H]
        prev = x[:, T - M:T + Np - 1].unfold(1, M, 1)  # [B, Np, M]: the M classes before each sample
        out = self.mlp(self.smp_in(self.emb(prev).flatten(2)) + mid_c)
        return out[:, :N]

    # ------------------------------------------------------------------ generation
    def init_state(self, h0: torch.Tensor) -> TierState:
        """State before the first sample, from the initial top-tier state h0 [1, B, H]."""
        B = h0.shape[1]
        return TierState(h0, torch.zeros_like(h0), torch.full((B, self.cfg.top_frame), self.silence,
                                                               dtype=torch.long, device=h0.device))

    def step(self, st: TierState, t: int) -> torch.Tensor:
        """Logits [B, K] of sample t; the tiers advance when t crosses their frame edges.

        The caller appends the chosen class to ``st.hist`` (:meth:`push`) before step t + 1."""
        T, M = self.cfg.top_frame, self.cfg.mid_frame
        if t % T == 0:
            o, st.h_top = self.top_rnn(self.top_in(self._real(st.hist))[:, None], st.h_top)
            st.top_cond = self.top_up(o[:, 0]).view(o.shape[0], T // M, -1)
        if t % M == 0:
            inp = self.mid_in(self._real(st.hist[:, -M:])) + st.top_cond[:, (t % T) // M]
            o, st.h_mid = self.mid_rnn(inp[:, None], st.h_mid)
            st.mid_cond = self.mid_up(o[:, 0]).view(o.shape[0], M, -1)
        e = self.emb(st.hist[:, -M:]).flatten(1)
        return self.mlp(self.smp_in(e) + st.mid_cond[:, t % M])

    @staticmethod
    def push(st: TierState, q: torch.Tensor) -> None:
        """Append classes q [B] to the history window."""
        st.hist = torch.cat([st.hist[:, 1:], q[:, None]], 1)
