"""The ``seq2seq`` family: Zhou et al. 2018's video encoder starting a SampleRNN.

Networks in ``seq2seq_net``. Configs by tag: ``debug`` (random init, seconds on CPU),
``tiny`` (trained on the synthfoley train split on a CPU: 4 kHz, the shipped checkpoint)
and ``paper`` (16 kHz, sizes our guess at the published scale: Zhou et al. give the
SampleRNN recipe, not every width). Training is teacher-forced mu-law cross-entropy on
random crops (the crop's frames start the top tier); generation is incremental, carrying
the three tiers' states sample by sample, with one seeded generator per clip so a clip's
audio does not depend on its batch neighbours. ``likelihood_scorer`` is the family's
retrieval hook (``foleybench.baselines.likelihood``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from foleybench.api import AudioOutput, V2ARequest, VideoToAudio, check_outputs
from foleybench.baselines.mulaw import gumbel_noise, mulaw_decode, mulaw_encode, sample_classes
from foleybench.family import CheckpointRecord, Family, Trainer, register_family

CODE_VERSION = "seq2seq-1"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
PAPER = "Zhou et al. 2018, Visual to Sound (CVPR), seq-to-seq variant; SampleRNN (Mehri et al. 2017)"


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Rates in Hz and fps; frames resized to frame_size x frame_size; sizes in units."""

    sample_rate: int = 4000
    fps: float = 16.0
    frame_size: int = 32
    frame_ch: int = 16           # per-frame CNN channels
    d_frame: int = 32            # per-frame feature size
    h_video: int = 64            # video RNN state
    hidden: int = 64             # tier GRU / MLP width
    emb: int = 16                # class embedding at the sample level
    top_frame: int = 16          # samples per top-tier step
    mid_frame: int = 4           # samples per middle-tier step (= sample-level input window)
    n_classes: int = 256
    steps: int = 500
    batch_size: int = 8
    crop_frames: int = 16        # training crop (video frames; 1 s at 16 fps)
    lr: float = 3e-3
    temperature: float = 1.0
    # fields the shared clip loader (mw_train.load_clips / crops) reads
    channels: int = 1
    output: str = "mulaw"
    n_frames: int = 1            # no context padding: the video encoder sees the crop's own frames

    @property
    def spf(self) -> int:
        """Audio samples per video frame."""
        spf = self.sample_rate / self.fps
        if spf != int(spf):
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of fps {self.fps}")
        return int(spf)


CONFIGS: dict[str, Seq2SeqConfig] = {
    "debug": Seq2SeqConfig(sample_rate=800, frame_size=16, frame_ch=4, d_frame=8, h_video=8, hidden=8, emb=4,
                           top_frame=8, mid_frame=2, steps=20, batch_size=2, crop_frames=4),
    "tiny": Seq2SeqConfig(),
    "paper": Seq2SeqConfig(sample_rate=16000, frame_size=112, frame_ch=64, d_frame=512, h_video=512, hidden=1024,
                           emb=256, top_frame=16, mid_frame=4, steps=100000, batch_size=64, crop_frames=32,
                           lr=1e-3),
}


def build_net(cfg: Seq2SeqConfig) -> torch.nn.Module:
    from foleybench.baselines.seq2seq_net import Seq2SeqNet

    return Seq2SeqNet(cfg)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    from foleybench.weights import read_checkpoint

    return read_checkpoint(path)


def clip_log_likelihood(net: torch.nn.Module, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log-likelihood in nats per clip [B], summed over samples.

    audio [B, 1, N] mu-law quantised amplitudes; video [B, F, 3, S, S] in [-1, 1]."""
    q = mulaw_encode(audio[:, 0], net.cfg.n_classes)
    logp = torch.log_softmax(net.logits(q, video).float(), -1)
    return logp.gather(-1, q[..., None])[..., 0].sum(-1)


class Seq2SeqTrainer(Trainer):
    """Teacher-forced cross-entropy (nats per sample) on random crops of the train split."""

    def build_net(self, cfg: Seq2SeqConfig) -> torch.nn.Module:
        return build_net(cfg)

    def load_data(self, train_split: Any, cfg: Seq2SeqConfig) -> list[Any]:
        from foleybench.baselines.mw_train import load_clips

        return load_clips(train_split, cfg)  # type: ignore[arg-type]  (it reads the same fields)

    def batch(self, data: Sequence[Any], cfg: Seq2SeqConfig, rng: np.random.Generator) -> Any:
        from foleybench.baselines.mw_train import crops

        return crops(data, cfg, rng)  # type: ignore[arg-type]

    def loss(self, net: torch.nn.Module, batch: Any, cfg: Seq2SeqConfig) -> torch.Tensor:
        audio, video = batch  # [B, 1, N], [B, F, 3, S, S]
        return -clip_log_likelihood(net, audio, video).sum() / audio[:, 0].numel()

    def loss_label(self, cfg: Seq2SeqConfig) -> str:
        return "training loss (nats/sample)"


@torch.inference_mode()
def generate_audio(net: torch.nn.Module, videos: Sequence[torch.Tensor], n_samples: int,
                   gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Amplitudes [B, n_samples] at cfg.sample_rate, sample by sample.

    videos: per clip, its own frames [F_i, 3, S, S] (encoded one clip at a time, so the
    initial state does not depend on how long the batch's other clips are); gens: one
    generator per clip, drawing its noise one top-tier frame at a time."""
    cfg = net.cfg
    h0 = torch.cat([net.init_hidden(v[None]) for v in videos], 1)  # [1, B, H]
    st = net.init_state(h0)
    out = torch.empty(len(videos), n_samples)
    noise = None
    for t in range(n_samples):
        if t % cfg.top_frame == 0:
            noise = torch.stack([gumbel_noise(g, (cfg.top_frame, cfg.n_classes)) for g in gens])  # [B, T, K]
        q = sample_classes(net.step(st, t), noise[:, t % cfg.top_frame], cfg.temperature)
        net.push(st, q)
        out[:, t] = mulaw_decode(q, cfg.n_classes)
    return out


class Seq2SeqModel(VideoToAudio):
    """A seq2seq network as a foleybench generator (mono, seeded per clip)."""

    def __init__(self, cfg: Seq2SeqConfig, name: str, checkpoint: str | Path | None = None, device: str = "cpu"):
        from foleybench.weights import load_strict, seeded_init, sha256_file

        self.cfg, self.name, self.device = cfg, name, device
        # sample by sample: the runner batches 32 clips (a step costs about the same for 4 as
        # for 32; per-clip seeded, independent of batch neighbours: tests/test_model_conformance.py)
        self.generation_batch = 32
        self.net = build_net(cfg)
        self.meta: dict[str, Any] = {"weights": "random-init", "checkpoint": None}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if ck.get("config") != dataclasses.asdict(cfg):
                raise ValueError(f"{checkpoint}: checkpoint was trained with another config of {name}")
            load_strict(self.net, ck["state_dict"], str(checkpoint))
            self.meta = {"weights": "trained", "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
                         "recipe_hash": ck.get("recipe_hash"), "data_fingerprint": ck.get("data_fingerprint"),
                         "steps": ck.get("steps_done")}
        else:
            seeded_init(self.net, 0)
        self.net.to(device).eval()

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.cfg),
                "n_params": sum(p.numel() for p in self.net.parameters()), **self.meta}

    def generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]:
        import torchaudio.functional as AF

        from foleybench.baselines.video_context import prepare_frames

        if not requests:
            return []
        cfg = self.cfg
        lengths = [max(1, int(round(r.duration_s * cfg.sample_rate))) for r in requests]
        videos = [prepare_frames(r.frames, r.fps, cfg.fps, cfg.frame_size, -(-n // cfg.spf)).to(self.device)
                  for r, n in zip(requests, lengths)]
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        audio = generate_audio(self.net, videos, max(lengths), gens).float().cpu()
        outs = []
        for r, n, a in zip(requests, lengths, audio):
            a = a[None, :n]
            if r.sample_rate != cfg.sample_rate:
                a = AF.resample(a, cfg.sample_rate, int(r.sample_rate))
            want = max(1, int(round(r.duration_s * r.sample_rate)))
            a = F.pad(a, (0, max(0, want - a.shape[-1])))[:, :want]
            outs.append(AudioOutput(r.clip_id, np.ascontiguousarray(a.clamp(-1, 1).numpy(), dtype=np.float32),
                                    int(r.sample_rate)))
        check_outputs(requests, outs, self.name)
        return outs


def build_model(cfg: Seq2SeqConfig, *, name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                **_unused: Any) -> Seq2SeqModel:
    """Family builder: ``checkpoint``'s weights, or seeded random init when None."""
    return Seq2SeqModel(cfg, name, checkpoint, device=device)


def likelihood_scorer(name: str, checkpoint: str | Path | None = None, device: str = "cpu") -> Any:
    """Retrieval hook (``foleybench.baselines.likelihood``): teacher-forced nats per clip."""
    from foleybench.baselines.likelihood import NetLikelihood
    from foleybench.family import build_model as build

    model = build(name, checkpoint=checkpoint, device=device)
    return NetLikelihood(model, lambda a, v: clip_log_likelihood(model.net, a, v), context_frames=1)


# Shipped tiny checkpoint: `foleybench train --model seq2seq.tiny` on synthfoley (48 clips,
# seed 0; train split fingerprint below), 500 steps, 764 s on a shared 2-core CPU.
_RECORDS = {"tiny": CheckpointRecord("tiny", "seq2seq.tiny.pt",
                                     "37781128397a6909e9c6320310b04d709f83192e00e624e022ef0dd550414844",
                                     "06090d2171f8d745505c6c6aa3f6c432df9f830bb14625ded5e55374b68ed36a",
                                     "0c3b4af89bd27350553e3fe74b326af66fa3fc65d2e2048d746a9771afd63bcf"),
            "paper": CheckpointRecord("paper", "seq2seq.paper.pt",
                                      url="none: no public release (a GPU training run makes them)")}
register_family(Family(name="seq2seq", task="v2a", module=__name__, paper=PAPER, configs=CONFIGS,
                       builder=build_model, load_checkpoint=load_checkpoint, checkpoint_dir=CHECKPOINT_DIR,
                       checkpoints=_RECORDS, trainer=Seq2SeqTrainer()))
