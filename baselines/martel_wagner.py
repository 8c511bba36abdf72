"""The three waveform models of Martel & Wagner (arXiv 2308.12408) behind VideoToAudio.

Three families, declared at the end of this module (``foleybench.family``): configs by
tag in ``mw_configs`` (``debug``, ``tiny``, ``paper`` and the AV transformer's
``strided_debug``/``strided_tiny``), the trainer in ``mw_train``, and one record per
shipped tiny checkpoint in baselines/checkpoints. ``paper`` weights have no public
release: their record says so and the missing-weights error says how to train them.
Audio runs at the config's own rate (the paper also downsampled) and is resampled to
the request's rate on output.

Generation follows the paper (Sec. III-D): sample by sample for ``wavenet_video`` and
``av_transformer`` (frame by frame for ``deepfusion``), the video context of each frame
held for that frame's samples, the model's own output fed back as audio context. The
cached path reuses past activations; ``cached=False`` recomputes the receptive field at
every sample and must give the same audio (tests/test_mw_models.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleybench.api import AudioOutput, V2ARequest, VideoToAudio, check_outputs
from foleybench.baselines.likelihood import mw_likelihood_scorer as likelihood_scorer  # retrieval hook
from foleybench.baselines.mulaw import gumbel_noise, mulaw_decode, sample_classes
from foleybench.baselines.mw_configs import FAMILIES, MWConfig, config_tags, get_config, recipe_config
from foleybench.baselines.mw_train import MWTrainer, loss_fn
from foleybench.baselines.video_context import context_windows, pad_context, prepare_frames
from foleybench.family import CheckpointRecord, Family, register_family

__all__ = ["FAMILIES", "MWConfig", "get_config", "loss_fn", "build_net", "generate_audio", "MWModel",
           "likelihood_scorer"]

# Bump when a change alters what training produces or what a checkpoint means; it is
# part of the recipe hash, so shipped checkpoints then show up as stale.
CODE_VERSION = "mw-2"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def build_net(cfg: MWConfig) -> nn.Module:
    """The network of ``cfg.family`` (torch's default init from the global seed)."""
    if cfg.family == "deepfusion":
        from foleybench.baselines.deepfusion import DeepFusion
        return DeepFusion(cfg)
    if cfg.family == "wavenet_video":
        from foleybench.baselines.wavenet_video import WaveNetVideo
        return WaveNetVideo(cfg)
    from foleybench.baselines.av_transformer import AVTransformer, StridedAVTransformer
    return StridedAVTransformer(cfg) if cfg.audio_frontend == "strided" else AVTransformer(cfg)


def n_params(net: nn.Module) -> int:
    """Number of weights."""
    return sum(p.numel() for p in net.parameters())


def _pick(out: torch.Tensor, noise: torch.Tensor | None, cfg: MWConfig) -> torch.Tensor:
    """Outputs [..., K] -> amplitudes [...]: a seeded mu-law draw, or the tanh value."""
    if cfg.output != "mulaw":
        return torch.tanh(out[..., 0])
    return mulaw_decode(sample_classes(out, noise, cfg.temperature), cfg.n_classes).to(out.dtype)


@torch.inference_mode()  # not no_grad: less per-op bookkeeping, and steps are tiny ops
def generate_audio(net: nn.Module, video: torch.Tensor, n_samples: int,
                   gens: Sequence[torch.Generator], cached: bool = True) -> torch.Tensor:
    """Autoregressive audio [B, C, n_samples] at cfg.sample_rate for frames [B, F, 3, S, S].

    gens: one generator per clip; each draws its clip's noise frame by frame, so a clip's
    audio does not depend on its batch neighbours. Frames past F repeat the last one.
    """
    cfg = net.cfg
    spf, n, C, B = cfg.spf, cfg.n_frames, cfg.channels, video.shape[0]
    n_fr = -(-n_samples // spf)
    if video.shape[1] < n_fr:
        video = torch.cat([video, video[:, -1:].expand(-1, n_fr - video.shape[1], -1, -1, -1)], 1)
    p = next(net.parameters())
    ctx = context_windows(pad_context(video[:, :n_fr].to(p), n), n)  # [B, F, 3, n, S, S]
    out = p.new_zeros(B, C, n_fr * spf)

    def noise() -> torch.Tensor | None:
        if cfg.output != "mulaw":
            return None
        return torch.stack([gumbel_noise(g, (spf, C, cfg.n_classes)) for g in gens])  # [B, spf, C, K]

    if cfg.family == "deepfusion":
        # One pass per frame; there are no activations to reuse, so cached == naive.
        padded = F.pad(out, (n * spf, 0))
        for f in range(n_fr):
            y = net.frame_logits(padded[..., f * spf:(f + n) * spf], ctx[:, f])  # [B, C, spf, K]
            z = noise()
            padded[..., (f + n) * spf:(f + n + 1) * spf] = _pick(y, None if z is None else z.transpose(1, 2), cfg)
        return padded[..., n * spf:n * spf + n_samples]

    x_prev = p.new_zeros(B, C)
    if cached:
        state = net.init_state(B)
    else:
        hx, hc = p.new_zeros(B, C, n_fr * spf), None
    for f in range(n_fr):
        emb = net.frame_embedding(ctx[:, f])  # [B, D, spf], held for the frame's samples
        z = noise()
        if not cached and hc is None:
            hc = p.new_zeros(B, emb.shape[1], n_fr * spf)
        for o in range(spf):
            s = f * spf + o
            if cached:
                y = net.step(state, x_prev, emb[:, :, o])
            else:
                hx[..., s], hc[..., s] = x_prev, emb[:, :, o]
                y = net.naive_step(hx[..., :s + 1], hc[..., :s + 1])
            x_prev = _pick(y, None if z is None else z[:, o], cfg)
            out[..., s] = x_prev
    return out[..., :n_samples]


def default_checkpoint(name: str) -> Path:
    """Where the shipped checkpoint of ``family.tag`` lives."""
    return CHECKPOINT_DIR / f"{name}.pt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors and plain data only), through the one reader."""
    from foleybench.weights import read_checkpoint

    return read_checkpoint(path)


class MWModel(VideoToAudio):
    """A Martel-Wagner network as a foleybench generator (mono or stereo, seeded)."""

    def __init__(self, cfg: MWConfig, name: str, checkpoint: str | Path | None = None,
                 device: str = "cpu", cached: bool = True):
        from foleybench.weights import load_strict, seeded_init, sha256_file

        self.cfg, self.name, self.device, self.cached = cfg, name, device, cached
        # The autoregressive two generate sample by sample: a step costs about the same for
        # 4 clips as for 32, so the runner batches 32 (outputs are per-clip seeded and
        # independent of batch neighbours: tests/test_model_conformance.py). Deep fusion is one pass.
        self.generation_batch = 32 if cfg.family in ("wavenet_video", "av_transformer") else None
        self.net = build_net(cfg)
        self.meta: dict[str, Any] = {"weights": "random-init", "checkpoint": None}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if ck.get("config") != recipe_config(cfg):
                raise ValueError(f"{checkpoint}: checkpoint was trained with another config of {name}")
            load_strict(self.net, ck["state_dict"], str(checkpoint))
            self.meta = {"weights": "trained", "checkpoint": str(checkpoint),
                         "checkpoint_sha256": sha256_file(checkpoint),
                         "recipe_hash": ck.get("recipe_hash"), "data_fingerprint": ck.get("data_fingerprint"),
                         "steps": ck.get("steps_done")}
        else:
            seeded_init(self.net, 0)
        self.net.to(device).eval()

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.cfg), "cached": self.cached,
                "n_params": n_params(self.net), **self.meta}

    def generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]:
        import torchaudio.functional as AF

        if not requests:
            return []
        cfg = self.cfg
        lengths = [max(1, int(round(r.duration_s * cfg.sample_rate))) for r in requests]
        n_fr = -(-max(lengths) // cfg.spf)
        video = torch.stack([prepare_frames(r.frames, r.fps, cfg.fps, cfg.frame_size, n_fr) for r in requests])
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        audio = generate_audio(self.net, video.to(self.device), max(lengths), gens, self.cached).float().cpu()
        outs = []
        for r, n, a in zip(requests, lengths, audio):
            a = a[:, :n]
            if r.sample_rate != cfg.sample_rate:
                a = AF.resample(a, cfg.sample_rate, int(r.sample_rate))
            want = max(1, int(round(r.duration_s * r.sample_rate)))
            a = F.pad(a, (0, max(0, want - a.shape[-1])))[:, :want]
            outs.append(AudioOutput(r.clip_id, np.ascontiguousarray(a.clamp(-1, 1).numpy(), dtype=np.float32),
                                    int(r.sample_rate)))
        check_outputs(requests, outs, self.name)
        return outs


def build_model(cfg: MWConfig, *, name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                cached: bool = True, **_unused: Any) -> MWModel:
    """Family builder (see ``foleybench.family.Family``): the weights of ``checkpoint``,
    or seeded random init when None. ``dataset`` and ``seed`` from the runner are unused:
    sampling seeds travel with each request (V2ARequest.seed)."""
    return MWModel(cfg, name, checkpoint, device=device, cached=cached)


# Shipped tiny checkpoints: trained with `python -m foleybench.train` on synthfoley (48
# clips, seed 0, train split: content fingerprint below). Retraining replaces a file and
# prints its new record for this table (and the goldens must be updated with it).
_TRAIN_FP = "0c3b4af89bd27350553e3fe74b326af66fa3fc65d2e2048d746a9771afd63bcf"
_SHIPPED = {
    "deepfusion": ("c2288bf2cf497938bc233b6678f49c20d35a9bc8523496d72e927161c9c258fb",
                   "7d96ac63d40f30c53015b7499371e73a84f1ebb827f6e375d89c543f17b776d3"),
    "wavenet_video": ("ad37a45e29eb9751a261422fe401e89a5610f96f33d5fab2fe046c119f3a9e44",
                      "fe74df43b349a0b6c772200f43588a9c57dee50f7e4cd7122ac3de6c13f6d89d"),
    "av_transformer": ("b746634c8f02879ae8180ac496afc0c1810f4231493c186c135585e098f67fb5",
                       "d7d7982d9b146d1d95679a16cba43e7c12bd42d20cfeb5ca3b15ce8723a15eda"),
}
PAPER = "Martel & Wagner, arXiv 2308.12408"
NO_RELEASE = "none: the authors released no weights (a GPU training run makes them)"

for _fam in FAMILIES:
    _sha, _recipe = _SHIPPED[_fam]
    register_family(Family(
        name=_fam, task="v2a", module=__name__, paper=PAPER,
        configs={t: get_config(_fam, t) for t in config_tags(_fam)},
        builder=build_model, load_checkpoint=load_checkpoint, checkpoint_dir=CHECKPOINT_DIR,
        trainer=MWTrainer(), recipe_config=recipe_config,
        checkpoints={"tiny": CheckpointRecord("tiny", f"{_fam}.tiny.pt", _sha, _recipe, _TRAIN_FP),
                     "paper": CheckpointRecord("paper", f"{_fam}.paper.pt", url=NO_RELEASE)}))
