"""C3D fine-tuned on UCF-101 (TGANv2's weights): the classifier behind video IS (``is_c3d``).

Checkpoint routes:
- ``c3d_ucf101.pt``: StyleGAN-V's TorchScript port of TGANv2's chainer model. StyleGAN-V
  calls it on uint8 ``[B, 3, 16, H, W]`` with no options and reads **softmax
  probabilities**; we do the same and return ``log(p)`` as logits (softmax(log p) = p).
- a state_dict in our layout (``conv1a.weight`` ... ``fc8.bias`` plus the ``mean`` buffer
  ``[3, 16, 112, 112]``), e.g. made by :func:`state_dict_from_chainer` from TGANv2's
  ``conv3d_deepnetA_ucf.npz`` and ``mean2.npz``; it loads strictly into :class:`C3D`.

Preprocessing "as TGANv2" (tgan2/models/c3d/c3d_ucf101.py, f892bc4): frames in [-1, 1]
are mapped RGB->BGR and x128, the *whole frame* is resized to 112x112 (chainer
resize_images, bilinear with aligned corners), then ``128 - mean[:, :, 8:120, 8:120]`` is
added (the per-pixel Sports-1M/UCF mean, BGR 0..255). Net effect: BGR pixel x (128/127.5)
minus the mean crop. METRICS.md (the project's spec) asks for "resize to 128, centre crop
112", the original C3D Caffe protocol: that is the default, ``spatial="c3d"``. TGANv2's
own code resizes straight to 112; ``spatial="tgan2"`` is that variant. The two disagree
(docs/PROTOCOL.md); the TorchScript route keeps the port's own preprocessing either way.
Pooling uses ``ceil_mode=True`` because chainer's max_pooling_nd defaults to
cover_all=True (that is why fc6 takes 512x4x4).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from foleybench import weights as W
from foleybench.api import InputError, ScoreContext
from foleybench.metrics.embedders.base import Factory, build_net, strict_loader
from foleybench.metrics.embedders.video_base import VideoEmbedder, read_frames
from foleybench.metrics.functional import video_preprocess as vp
from foleybench.weights import WeightRecord, register

register(WeightRecord(
    name="c3d", filename="c3d_ucf101.pt",
    url="https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt?dl=1", sha256=None,
    license="MIT (TGANv2 code); C3D weights from Tran et al., research use",
    paper="Tran et al. 2015 (C3D); Saito et al. 2020 (TGANv2); Skorokhodov et al. 2022 (StyleGAN-V)",
    note="no published sha256; TorchScript archive (StyleGAN-V) run via torch.jit.load"))

_CONVS = [("conv1a", 64), ("conv2a", 128), ("conv3a", 256), ("conv3b", 256), ("conv4a", 512),
          ("conv4b", 512), ("conv5a", 512), ("conv5b", 512)]
_POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2),
               "conv5b": (2, 2, 2)}
PROXY_CONFIGS = {"full": 1, "small": 8}  # channel divisor
# Per-channel BGR mean quoted in TGANv2's c3d_ucf101.py; proxy nets use it in place of mean2.npz.
_PROXY_MEAN_BGR = (90.25164795, 97.65701294, 101.4083252)


class C3D(nn.Module):
    """C3D "version 1" for UCF-101. forward: float ``[B, 3, 16, 112, 112]`` RGB in [-1, 1]
    (already resized) -> (fc7 features ``[B, 4096 / div]``, fc8 logits ``[B, 101]``)."""

    def __init__(self, n_classes: int = 101, div: int = 1):
        super().__init__()
        cin = 3
        for name, cout in _CONVS:
            self.add_module(name, nn.Conv3d(cin, cout // div, 3, 1, 1))
            cin = cout // div
        self.fc6 = nn.Linear(cin * 4 * 4, 4096 // div)
        self.fc7 = nn.Linear(4096 // div, 4096 // div)
        self.fc8 = nn.Linear(4096 // div, n_classes)
        self.register_buffer("mean", torch.zeros(3, 16, 112, 112))  # BGR, 0..255 scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x[:, [2, 1, 0]] * 128.0 + (128.0 - self.mean)  # TGANv2 "pre" conv + Bias link
        for name, _ in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                x = F.max_pool3d(x, _POOL_AFTER[name], ceil_mode=True)
        h = F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))
        return h, self.fc8(h)


def state_dict_from_chainer(weights: Mapping[str, np.ndarray], mean: np.ndarray) -> dict[str, torch.Tensor]:
    """Our state_dict from TGANv2's chainer npz arrays (``conv1a/W``, ``conv1a/b``...; same
    axis order as torch) and ``mean2.npz['mean']`` ``[3, 16, 128, 128]`` (centre 112 kept)."""
    sd = {}
    for name in [n for n, _ in _CONVS] + ["fc6", "fc7", "fc8"]:
        sd[f"{name}.weight"] = torch.as_tensor(np.asarray(weights[f"{name}/W"]), dtype=torch.float32)
        sd[f"{name}.bias"] = torch.as_tensor(np.asarray(weights[f"{name}/b"]), dtype=torch.float32)
    sd["mean"] = torch.as_tensor(np.asarray(mean)[:, :, 8:120, 8:120].copy(), dtype=torch.float32)
    return sd


class C3DEmbedder(VideoEmbedder):
    name = "c3d"
    version = "1"
    rows_batch_free = True
    PAD_BATCH = 8  # every forward pass holds this many clips (see _outputs)
    rate = 0.0  # 16 consecutive frames at the file's own rate
    dim = 4096

    def __init__(self, net: Any, *, weights: str, sha256: str, device: str = "cpu", scripted: bool = False,
                 spatial: str = "c3d", start_s: float = 0.0, amp: bool = True, proxy_config: str | None = None):
        if spatial not in ("tgan2", "c3d"):
            raise ValueError(f"spatial must be 'tgan2' or 'c3d', not {spatial!r}")
        super().__init__(net, weights=weights, checkpoint_sha256=sha256, device=device, amp=amp)
        self.scripted, self.spatial, self.start_s = scripted, spatial, start_s
        self.proxy_config = proxy_config
        if not scripted:
            self.dim = int(net.fc7.out_features)  # type: ignore[misc]

    def preprocess_id(self) -> str:
        if self.scripted:
            return f"c3d|16f from {self.start_s}s|torchscript(own preprocessing){self.precision_id()}|batch8"
        sp = ("resize112x112" if self.spatial == "tgan2" else "short128+centercrop112")
        return (f"c3d|16f from {self.start_s}s|{sp}:{vp.RESIZE_METHODS['bilinear_ac']}|[-1,1]|BGRx128+128-mean"
                f"{self.precision_id()}|batch8")

    def load_input(self, path: str, ctx: ScoreContext) -> np.ndarray:
        """-> uint8 ``[3, 16, H, W]`` (TorchScript) or float32 ``[3, 16, 112, 112]`` in [-1, 1]."""
        clip = read_frames(path, start_s=self.start_s, max_frames=16)
        try:
            idx = vp.sample_consecutive(len(clip.frames), 16, clip.fps)
        except ValueError as exc:
            raise InputError(path, f"too short for C3D: {exc}") from None
        x = vp.frames_to_tensor(clip.frames[idx])
        if not self.scripted:
            if self.spatial == "c3d":
                h, w = vp.short_side_size(*x.shape[-2:], 128)
                x = vp.center_crop(vp.resize(x, (h, w), "bilinear_ac"), 112)
            else:
                x = vp.resize(x, (112, 112), "bilinear_ac")
            x = vp.scale_to_unit(x)
        return x.permute(1, 0, 2, 3).contiguous().numpy()

    def _outputs(self, inputs: Sequence[np.ndarray], which: int) -> list[np.ndarray]:
        """The network on batches of exactly ``PAD_BATCH`` clips (a short one filled with
        zero clips): a clip's rows then do not depend on its neighbours or its position
        (oneDNN picks its conv3d kernel by batch shape; at a fixed shape each sample is
        computed alike: tested), so C3D needs no one-clip forward pass for batch-free rows,
        which at this input (3 channels, 16x112x112) costs four times a batched clip."""
        res: list[np.ndarray | None] = [None] * len(inputs)
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx_all in groups.values():
            for start in range(0, len(idx_all), self.PAD_BATCH):
                idx = idx_all[start:start + self.PAD_BATCH]
                batch = [inputs[i] for i in idx]
                batch += [np.zeros_like(batch[0])] * (self.PAD_BATCH - len(batch))
                if self.scripted:
                    # float64 log keeps tiny probabilities finite relative to each other
                    y = self._run(lambda x: self.net(x), batch).double().clamp_min(1e-30).log().float()
                else:
                    y = self._run(lambda x: self.net(x)[which], batch)
                for j, i in enumerate(idx):
                    res[i] = y[j].numpy().astype(np.float32)
        return res  # type: ignore[return-value]

    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """fc7 features ``[1, 4096]`` per clip (TGANv2's ``get_feature``)."""
        if self.scripted:
            raise NotImplementedError("the TorchScript C3D port returns class probabilities only")
        return [v[None] for v in self._outputs(inputs, 0)]

    def logits_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        """101 UCF-101 logits ``[101]`` per clip (log-probabilities for the TorchScript port)."""
        return self._outputs(inputs, 1)


def _proxy_init(net: nn.Module) -> None:
    """He-normal convs/linears (see i3d.kaiming_convs) and TGANv2's constant BGR mean."""
    from foleybench.metrics.embedders.i3d import kaiming_convs

    kaiming_convs(net)
    net.mean.copy_(torch.tensor(_PROXY_MEAN_BGR).view(3, 1, 1, 1).expand(3, 16, 112, 112))


def _load(path: Path, make: Factory) -> tuple[nn.Module, dict[str, Any]]:
    """StyleGAN-V's TorchScript port as is, or a state_dict in our layout strictly."""
    if W.is_torchscript_archive(path):
        return W.read_torchscript(path), {"scripted": True}
    return strict_loader(path, make)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          proxy_config: str = "small", **opts: Any) -> C3DEmbedder:
    """mode "pretrained": the TorchScript port, or a state_dict in our layout (strict; a
    user's file that is not the registered one is labelled custom);
    mode "proxy": seeded random init ("small": widths / 8; "full"), constant BGR mean."""
    if mode == "proxy" and proxy_config not in PROXY_CONFIGS:
        raise ValueError(f"proxy_config must be one of {sorted(PROXY_CONFIGS)}")
    div = PROXY_CONFIGS[proxy_config] if mode == "proxy" else 1
    b = build_net("c3d", lambda: C3D(101, div), mode=mode, checkpoint=checkpoint, seed=seed, load=_load,
                  proxy_init=_proxy_init)
    extras = {"proxy_config": proxy_config} if mode == "proxy" else b.extras
    return C3DEmbedder(b.net, weights=b.weights, sha256=b.sha256, device=device, **extras, **opts)
