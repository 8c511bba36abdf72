"""FoleyGen (Mei et al., arXiv 2309.10537): codec tokens from a visually conditioned LM.

Two families, declared at the end of this module: ``foleygen_c`` (visual features by
cross-attention) and ``foleygen_p`` (visual features prepended). Two families rather
than one with the variant in the tag because the variants are two networks with their
own checkpoints, while tags already name sizes and generation settings
(foleygen_configs.py); ``foleygen_c.tiny`` vs ``foleygen_p.tiny`` reads as the paper's
"FoleyGen-C" and "FoleyGen-P". The parts: codec.py / codec_small.py (tokens),
codebook_pattern.py (delay pattern), foleygen_lm.py (LM, masks), foleygen_sample.py
(guidance, sampling, KV cache), foleygen_visual.py (visual encoders), foleygen_train.py
(trainer). The attention mechanism, guidance and sampling settings are generation
parameters: :meth:`FoleyGenModel.params` records them with every result.

Also here: ``codec_resynthesis``, a reference model (registered like the reference
baselines) that passes the ground-truth audio through the small codec, the ceiling of
every model that generates that codec's tokens.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from foleybench.api import AudioOutput, FoleybenchError, V2ARequest, VideoToAudio, check_outputs
from foleybench.baselines.foleygen_configs import (
    FoleyGenConfig,
    config_tags,
    generation_params,
    get_config,
    recipe_config,
)
from foleybench.baselines.foleygen_train import FoleyGenNet, FoleyGenTrainer
from foleybench.baselines.reference import ReferenceBaseline
from foleybench.family import CheckpointRecord, Family, register_family

# Bump when a change alters what training produces or what a checkpoint means.
CODE_VERSION = "foleygen-1"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
PAPER = "Mei et al., FoleyGen: Visually-Guided Audio Generation, arXiv 2309.10537"
NO_RELEASE = "none: the authors released no weights (a GPU training run makes them)"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` through the one reader."""
    from foleybench.weights import read_checkpoint

    return read_checkpoint(path)


def _resample(a: torch.Tensor, sr_in: int, sr_out: int, n_out: int) -> np.ndarray:
    """[1, N] at sr_in -> float32 [1, n_out] at sr_out, cut or zero-padded, in [-1, 1]."""
    import torchaudio.functional as AF

    if sr_in != sr_out:
        a = AF.resample(a, sr_in, sr_out)
    a = F.pad(a, (0, max(0, n_out - a.shape[-1])))[:, :n_out]
    return np.ascontiguousarray(a.clamp(-1, 1).numpy(), dtype=np.float32)


@contextlib.contextmanager
def small_cpu_threads(device: Any, d_model: int) -> Iterator[None]:
    """One intra-op thread while a tiny-sized model works on a CPU (its operations are
    small: threads only add synchronisation; on the loaded 2-core machine 2 threads made a
    4-clip generation 64 s instead of 4 s, and retrieval scoring 67 s instead of 7.5 s);
    the caller's setting is restored after. Larger models keep the caller's threads."""
    one = torch.device(device).type == "cpu" and d_model <= 256
    prev = torch.get_num_threads()
    if one:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if one:
            torch.set_num_threads(prev)


class FoleyGenModel(VideoToAudio):
    """A FoleyGen network with its codec (and frozen visual tower) as a generator."""

    def __init__(self, cfg: FoleyGenConfig, name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                 use_cache: bool = True, dataset: Any = None, seed: int = 0):
        from foleybench.baselines.codec import get_codec
        from foleybench.baselines.foleygen_visual import build_visual
        from foleybench.weights import load_strict, seeded_init, sha256_file

        self.cfg, self.name, self.device, self.use_cache = cfg, name, device, use_cache
        self.dataset, self.seed = dataset, int(seed)
        # a cached step of the tiny LM costs about the same for 8 guided rows as for 64 (its
        # operations are a few hundred numbers each): the runner batches 32 clips. Tokens are
        # per-clip seeded and do not depend on batch neighbours (test_foleygen: alone vs in a
        # batch; 32 vs 8 x 4 checked bit-identical on the shipped checkpoints).
        self.generation_batch = 32 if cfg.d_model <= 256 else None
        self._others: dict[str, str] | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = FoleyGenNet(cfg)
        self.meta: dict[str, Any] = {"weights": "random-init", "checkpoint": None}
        if checkpoint is not None:
            ck = load_checkpoint(checkpoint)
            if ck.get("config") != recipe_config(cfg):
                raise FoleybenchError(f"{checkpoint}: checkpoint was trained with another recipe than {name}")
            load_strict(self.net, ck["state_dict"], str(checkpoint))
            self.meta = {"weights": "trained", "checkpoint": str(checkpoint),
                         "checkpoint_sha256": sha256_file(checkpoint), "recipe_hash": ck.get("recipe_hash"),
                         "data_fingerprint": ck.get("data_fingerprint"), "steps": ck.get("steps_done")}
        else:
            seeded_init(self.net, 0)
        self.net.to(device).eval()
        opts = {"bandwidth": cfg.bandwidth} if cfg.codec == "encodec_24khz" else {}
        self.codec = get_codec(cfg.codec, mode=cfg.codec_mode, **opts).to(device)
        self.frozen = None if cfg.visual == "tiny_cnn" else \
            build_visual(cfg.visual, mode="proxy" if cfg.codec_mode == "proxy" else "pretrained").to(device)

    def _shown(self, r: V2ARequest) -> tuple[np.ndarray, float]:
        """The frames the model sees for ``r``: its own, or (``video="shuffled"``) those of
        the clip the `shuffled` baseline pairs it with (same derangement, same seed)."""
        if self.cfg.video == "own":
            return r.frames, r.fps
        from foleybench import media
        from foleybench.baselines.reference import derangement

        if self.dataset is None:
            raise FoleybenchError(f"{self.name}: the shuffled-video control needs the dataset (run it through "
                                  "foleybench run/bench)")
        if self._others is None:
            self._others = derangement(self.dataset.ids(), self.seed)
        if r.clip_id not in self._others:
            raise FoleybenchError(f"{self.name}: clip {r.clip_id!r} is not in the dataset it was built with")
        v = media.read_video(self.dataset[self._others[r.clip_id]].video, duration_s=r.duration_s)
        return v.frames, v.fps

    def params(self) -> dict[str, Any]:
        return {"model": self.name, "config": dataclasses.asdict(self.cfg), "generation": generation_params(self.cfg),
                "use_cache": self.use_cache, "codec": self.codec.describe(),
                "n_params": sum(p.numel() for p in self.net.parameters()), "step_kernels": _kernels_label(),
                **self.meta}

    @torch.inference_mode()
    def _features(self, r: V2ARequest, n_fr: int) -> torch.Tensor:
        """One clip's visual features [n_fr, Dv] (clips one at a time: no batch effects)."""
        from foleybench.baselines.video_context import prepare_frames

        size = self.cfg.frame_size if self.frozen is None else 64
        frames, fps = self._shown(r)
        x = prepare_frames(frames, fps, self.cfg.visual_fps, size, n_fr)[None].to(self.device)
        return (self.frozen(x) if self.frozen is not None else self.net.features(x))[0]

    def generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]:
        if not requests:
            return []
        with small_cpu_threads(self.device, self.cfg.d_model):
            return self._generate(requests)

    def _generate(self, requests: Sequence[V2ARequest]) -> list[AudioOutput]:
        from foleybench.baselines.foleygen_sample import generate_codes

        cfg, codec = self.cfg, self.codec
        n_fr = [max(1, math.ceil(r.duration_s * cfg.visual_fps - 1e-9)) for r in requests]
        n_steps = [codec.n_steps(int(math.ceil(r.duration_s * codec.sample_rate))) for r in requests]
        feats = [self._features(r, n) for r, n in zip(requests, n_fr)]
        vis = torch.stack([F.pad(f, (0, 0, 0, max(n_fr) - f.shape[0])) for f in feats])
        gens = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        codes = generate_codes(self.net.lm, vis, torch.tensor(n_fr, device=vis.device), n_steps, gens,
                               mechanism=cfg.attention, cfg_coef=cfg.cfg_coef, temperature=cfg.temperature,
                               top_k=cfg.top_k, top_p=cfg.top_p, use_cache=self.use_cache)
        outs = []
        with torch.inference_mode():
            for r, t, c in zip(requests, n_steps, codes):
                a = codec.decode(c[None, :, :t])[0].float().cpu()  # one clip at a time
                want = max(1, int(round(r.duration_s * r.sample_rate)))
                outs.append(AudioOutput(r.clip_id, _resample(a, codec.sample_rate, int(r.sample_rate), want),
                                        int(r.sample_rate)))
        check_outputs(requests, outs, self.name)
        return outs


def _kernels_label() -> str:
    """How the cached generation steps ran: "torchscript", or "eager: why" (same tokens)."""
    from foleybench.baselines.foleygen_kernels import kernels

    k = kernels()
    return "torchscript" if k.scripted else f"eager: {k.why}"


def build_model(cfg: FoleyGenConfig, *, name: str, checkpoint: str | Path | None = None, device: str = "cpu",
                use_cache: bool = True, dataset: Any = None, seed: int = 0, **_unused: Any) -> FoleyGenModel:
    """Family builder: ``checkpoint``'s weights or seeded random init (debug). ``dataset``
    and ``seed`` (the runner's) serve the shuffled-video control only."""
    return FoleyGenModel(cfg, name, checkpoint, device=device, use_cache=use_cache, dataset=dataset, seed=seed)


class FoleyGenLikelihood:
    """Likelihood-retrieval hook (baselines/likelihood.py): the teacher-forced log-likelihood
    of a candidate audio's codec tokens under the conditional LM (no guidance: coefficient 1,
    the model's own distribution), summed over the valid cells of the delay pattern, in nats
    per clip. ``prepare`` encodes each clip's audio once (the candidates' tokens are then
    reused by every query) and samples its frames; ``log_likelihood`` takes tokens
    ``[B, K, T]`` and frames ``[B, F, 3, S, S]``. The attention mechanism is the config's."""

    def __init__(self, model: FoleyGenModel):
        from foleybench.baselines.codebook_pattern import DelayPattern

        self.model, self.cfg = model, model.cfg
        self.pat = DelayPattern(model.net.lm.cfg.n_q, model.net.lm.cfg.card)
        self.meta = {"model": model.name, "attention": self.cfg.attention, "guidance": "none (conditional LM)",
                     **model.meta}

    def prepare(self, manifest: Any, seconds: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with small_cpu_threads(self.model.device, self.cfg.d_model):
            return self._prepare(manifest, seconds)

    def log_likelihood(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """tokens [B, K, T] and frames [B, F, 3, S, S] -> nats per clip [B] (float64)."""
        with small_cpu_threads(self.model.device, self.cfg.d_model):
            return self._log_likelihood(audio, video)

    @torch.inference_mode()
    def _prepare(self, manifest: Any, seconds: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        from foleybench import media
        from foleybench.baselines.video_context import prepare_frames

        cfg, codec = self.cfg, self.model.codec
        n_smp = int(math.ceil(seconds * codec.sample_rate))
        n_tok, n_fr = codec.n_steps(n_smp), max(1, math.ceil(seconds * cfg.visual_fps - 1e-9))
        size = cfg.frame_size if self.model.frozen is None else 64
        out = []
        for r in manifest:
            a = media.read_audio(r.audio_source, sample_rate=codec.sample_rate).samples.mean(0)
            a = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
            a = F.pad(a, (0, max(0, n_smp - a.shape[0])))  # a short clip: silence after it
            # the whole clip encoded (as in training), its first n_tok steps kept
            codes = codec.encode(a[None, None].to(self.model.device))[0, :, :n_tok].cpu()
            v = media.read_video(r.video)
            out.append((codes, prepare_frames(v.frames, v.fps, cfg.visual_fps, size, n_fr)))
        return out

    @torch.inference_mode()
    def _log_likelihood(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        m, lm = self.model, self.model.net.lm
        codes, frames = audio.to(m.device), video.to(m.device)
        B, F_ = codes.shape[0], frames.shape[1]
        # one query's video repeated over the candidates (retrieval's layout): encode it once
        same = frames.shape[0] > 1 and frames.stride(0) == 0
        x = frames[:1] if same else frames
        vis = m.frozen(x) if m.frozen is not None else m.net.features(x)
        vis = vis.expand(B, *vis.shape[1:]) if same else vis
        seq = self.pat.build(codes)
        logits = lm(self.pat.lm_input(seq), vis, torch.full((B,), F_, device=m.device), self.cfg.attention)
        logp = torch.log_softmax(logits.double(), -1)
        valid = self.pat.valid(codes.shape[-1], m.device)[None]  # [1, K, S]
        cell = logp.gather(-1, seq.clamp_max(lm.cfg.card - 1)[..., None])[..., 0]  # special cells: masked out
        return torch.where(valid, cell, torch.zeros_like(cell)).sum((1, 2)).cpu()

    def zeroed(self, video: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(video)


def likelihood_scorer(name: str, checkpoint: str | Path | None = None, device: str = "cpu") -> FoleyGenLikelihood:
    """The family's retrieval hook (foleygen_c and foleygen_p)."""
    from foleybench.family import build_model as build

    return FoleyGenLikelihood(build(name, checkpoint=checkpoint, device=device, use_cache=False))


class CodecResynthesis(ReferenceBaseline):
    """Ground-truth audio through the small codec (encode, decode): the codec's ceiling.
    V2A only; needs the dataset like ``oracle``."""

    name = "codec_resynthesis"

    def __init__(self, task: str = "v2a", dataset: Any = None, seed: int = 0, **kw: Any):
        if task != "v2a":
            raise FoleybenchError("codec_resynthesis is a video-to-audio reference only")
        super().__init__(task, dataset, seed, **kw)
        from foleybench.baselines.codec import get_codec

        self.codec = get_codec("foleycodec_16khz")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "codec": self.codec.describe()}

    @torch.inference_mode()
    def audio(self, req: V2ARequest) -> np.ndarray:
        rec = self._need_dataset()[req.clip_id]
        from foleybench import media

        x = media.read_audio(rec.audio_source, sample_rate=self.codec.sample_rate).samples.mean(0)
        y = self.codec.decode(self.codec.encode(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None]))
        want = int(round(req.duration_s * req.sample_rate))
        return _resample(y[0, :, :len(x)].float(), self.codec.sample_rate, int(req.sample_rate), want)


def _register() -> None:
    from foleybench.registry import MODELS

    if "codec_resynthesis" not in MODELS:
        MODELS.add("codec_resynthesis", "foleybench.baselines.foleygen:CodecResynthesis", tasks=("v2a",), family="reference")


# Shipped tiny checkpoints: `python -m foleybench.train --model foleygen_X.tiny` on the
# config's own train-only synthfoley set (train_data: 256 clips, seed 1; 2500 steps, about
# 14.5 min per variant with both variants at once on the shared 2-core machine). The
# generation-only tiny tags share the file.
_TRAIN_FP = "dafb538d66a5961f4b375006425c2e02db95704ddac0499e19ecbb8d80a97ae4"
_SHIPPED: dict[str, tuple[str, str]] = {  # variant -> (sha256, recipe hash)
    "c": ("3d37cac4f9d0f8355150c2b0b0b94062eace9f7796a030e1c6100273995cf969",
          "27cd1e7a1f35b21efcbdeab27d7a375bb78de83f906cbc52b07a76eb125ed7e3"),
    "p": ("cb7326598801b1c0b8c3c90e7fbfdd95962cc484021bef346f3832d7ff055d1f",
          "6f76c1db0a070b931b20dd8643ea1637c0ee9761d1953627ad68eff39695a83b"),
}

for _v in ("c", "p"):
    _fam = f"foleygen_{_v}"
    _recs = {"paper": CheckpointRecord("paper", f"{_fam}.paper.pt", url=NO_RELEASE)}
    if _v in _SHIPPED:
        _sha, _recipe = _SHIPPED[_v]
        _recs.update({t: CheckpointRecord(t, f"{_fam}.tiny.pt", _sha, _recipe, _TRAIN_FP)
                      for t in config_tags() if t.endswith("tiny")})
    register_family(Family(
        name=_fam, task="v2a", module=__name__, paper=PAPER,
        configs={t: get_config(_v, t) for t in config_tags()},
        builder=build_model, load_checkpoint=load_checkpoint, checkpoint_dir=CHECKPOINT_DIR,
        trainer=FoleyGenTrainer(), recipe_config=recipe_config, checkpoints=_recs))
_register()
