"""PANNs Cnn14_16k's embedder without its network: what a cached re-score needs (no torch).

The weights record, the front end's constants, the :class:`PANNs` embedder (name,
version, rate, dim, classes, preprocess id) and :func:`build`. The network (``Cnn14``
and its front-end layers) lives in :mod:`foleybench.metrics.embedders.panns` (which
re-exports everything here), imported on the first cache miss. See that module for
the method.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foleybench import weights as W
from foleybench.metrics.embedders.audio_base import AudioEmbedder
from foleybench.metrics.embedders.base import Deferred, build_net

if TYPE_CHECKING:
    import torch

UPSTREAM_MD5 = "362fc5ff18f1d6ad2f6d464b45893f2c"  # published by Zenodo record 3987831

RECORD = W.register(W.WeightRecord(
    name="panns",
    filename="Cnn14_16k_mAP=0.438.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
    sha256=None,
    license="MIT (qiuqiangkong/audioset_tagging_cnn); weights CC-BY-4.0 (Zenodo)",
    paper="Kong et al., PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern "
          "Recognition, IEEE/ACM TASLP 2020",
    note=(f"Zenodo publishes md5 {UPSTREAM_MD5}, not sha256; it decides pretrained vs custom. A "
          "third-party record gives sha256 eee61e89d4ef120bfe0e900f0fb9e4814a2597bbd1f3bf8e149868a7d508bc10, "
          "not verified here. Tensors are the checkpoint's 'model' entry"),
    md5=UPSTREAM_MD5,
))

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 160
N_MELS = 64
F_MIN, F_MAX = 50.0, 8000.0
AMIN = 1e-10
N_CLASSES = 527


class PANNs(AudioEmbedder):
    name = "panns"
    rate = SAMPLE_RATE
    dim = 2048
    frames_level = False
    n_classes = N_CLASSES
    # five 2x2 average pools need >= 32 STFT frames: (32 - 1) * 160 samples
    min_seconds = 31 * HOP / SAMPLE_RATE
    fast = True  # the fast conv route on CPU (panns.Cnn14); False: the direct convolutions

    def _extra_id(self) -> str:
        return "" if self.fast else "|direct-conv"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, fast=self.fast)[0][:, None, :]           # [B, 1, 2048]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, fast=self.fast)[1]                       # [B, 527], pre-sigmoid

    streams_long = True  # a long file is read chunk by chunk (Cnn14.forward_stream), never held whole

    def _long(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.net.long_input(len(x)):
            return self.net(self._window_getter(x)(0, len(x)), fast=self.fast)
        from foleybench.metrics.embedders.audio_base import reflect_window

        r = x.reader()
        import numpy as np
        import torch

        def window(lo: int, hi: int) -> torch.Tensor:
            w = reflect_window(r.get, lo, hi, len(x))
            return torch.from_numpy(np.ascontiguousarray(w))[None].to(self.device)

        return self.net.forward_stream(window, len(x), fast=self.fast)

    def _embed_long(self, x: Any) -> torch.Tensor:
        return self._long(x)[0][:, None, :]

    def _logits_long(self, x: Any) -> torch.Tensor:
        return self._long(x)[1]


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True, fast: bool = True) -> PANNs:
    """PANNs Cnn14_16k embedder: the file's ``model`` entry (the unwrap rule), strictly; a
    ``checkpoint`` whose md5 is not Zenodo's is labelled custom. ``fast=False``: the direct
    convolutions instead of the fast route (on CPU)."""
    b = build_net("panns", Deferred("foleybench.metrics.embedders.panns:Cnn14"), mode=mode, checkpoint=checkpoint, seed=seed, verify=verify,
                  proxy_init=lambda m: (W.he_normal_init(m), m.fill_frontend()),  # type: ignore[operator]
                  lazy=True)
    emb = PANNs(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
    emb.fast = fast
    return emb
