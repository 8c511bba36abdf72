"""TempoTokens ``paper`` path: our BEATs + the TempoTokens mapper on zeroscope_v2_576w.

The published design (Yariv et al. 2023, arXiv 2309.16429) on its real text-to-video
backbone, through diffusers (the library guyyariv/TempoTokens builds on): zeroscope_v2_576w
is a ``UNet3DConditionModel``, an ``AutoencoderKL``, an OpenCLIP-H text encoder
(``CLIPTextModel``) with its tokenizer, and a scheduler config. Written from a reading of
guyyariv/TempoTokens (inference.py, train.py, modules/text_encoder, modules/unet); no code
is taken from there.

How a clip is made (upstream's choices unless "ours"):

- audio: mono, 16 kHz, fitted to the requested duration; BEATs (``baselines/beats.py``,
  the AudioSet fine-tuned iter3+ checkpoint TempoTokens downloads, predictor unused): all
  12 layer outputs per patch, concatenated (9216 channels), with each patch's time;
- mapper (``baselines/tempotokens_mapper.py``): per-frame context ``[s_f, w1_f, w2_f,
  w4_f, w8_f, g]`` of 1024-d tokens; frames by time (ours; upstream reshapes into 24 groups);
- the six tokens take the places of upstream's six placeholder words in the prompt
  ``"<temp> <local1> <local2> <local3> <local4> <class>"``: the text encoder runs once per
  frame on ``[BOS, 6 tokens, EOS, pad...]`` (77 positions) with the token embeddings of
  positions 1..6 replaced by frame f's context, and its last hidden state is frame f's
  cross-attention context ``[77, 1024]`` (upstream adds six tokens to the tokenizer and
  overwrites their embeddings; ours writes the same embeddings without growing the vocab);
- routing (ours, an attention processor): the UNet gets a ``[B, 77, D]`` placeholder that
  it repeats per frame as usual; every *spatial* cross-attention (``attentions.*.attn2``)
  replaces it with the ``[B * F, 77, D]`` per-frame contexts, row ``b * F + f`` for frame f
  of clip b (diffusers' frame-major layout), so frame f's spatial cross-attention sees only
  frame f's context; temporal attentions (``transformer_in``, ``temp_attentions``) get no
  encoder states at all (checked at every call);
- sampling: ``DPMSolverMultistepScheduler`` from zeroscope's scheduler config, 25 steps,
  classifier-free guidance 25 against the empty prompt (the text encoder on ``""``, the
  same for every frame); latents from one CPU generator seeded with the request's seed;
  ``guidance_scale = 0`` gives the empty-prompt video (the audio is never read);
- video: 24 frames at 12 fps per 2 s (upstream's ``num_frames = seconds * fps``; ours rounds
  up, ``ceil(duration * 12)`` frames, for any duration in one pass), 384 x 384, decoded by
  the VAE; then mapped to the requested fps by time (output frame i shows the native frame
  at ``i / fps``) and resized to the requested size (bilinear, antialiased).

Weights, all through :mod:`foleybench.weights` (a missing file names itself and its URL):
the zeroscope files under ``zeroscope_v2_576w/`` in the weights directory (upstream's repo
layout), the BEATs file, and the trained mapper (``checkpoint``). Every network is built
from its config and loaded strictly (key names and shapes); the two renames upstream files
need are applied first and said here: diffusers' own deprecated-attention renames (a no-op
for current files) and transformers' ``text_model.`` base prefix (CLIPTextModel files saved
before transformers 5), whose non-learned ``position_ids`` buffer is dropped only when it
is exactly ``arange``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from foleybench.api import A2VRequest, AudioToVideo, FoleybenchError, VideoOutput, check_outputs
from foleybench.family import NO_RELEASE
from foleybench.weights import WeightRecord, register

CODE_VERSION = "tempotokens-paper-1"
PAPER = ("Yariv et al. 2023, Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model "
         "Adaptation (arXiv 2309.16429)")

# The trained mapper. Upstream released its mapper weights (learned_embeds.pth, a Google
# Drive folder linked from guyyariv/TempoTokens' README), but for upstream's module layout:
# its attention pooling embeds the frame tokens twice for the self-interaction (embed_X,
# embed_Y) where tempotokens_mapper.AttentionPool has one pair_embed, so that file cannot
# load strictly into our mapper. Ours has to be trained (`foleybench train`).
PAPER_CHECKPOINT_FILE = "tempotokens.paper.pt"
PAPER_CHECKPOINT_URL = NO_RELEASE
UPSTREAM_MAPPER_NOTE = ("upstream's learned_embeds.pth (https://drive.google.com/drive/folders/"
                        "10pRWoq0m5torvMXILmIQd7j9fLPEeHtS) does not fit our mapper's layout")

ZEROSCOPE = "zeroscope_v2_576w"
ZEROSCOPE_URL = "https://huggingface.co/cerspense/zeroscope_v2_576w/resolve/main/"
# assumed: the repo's files as diffusers 0.18-era pipelines saved them (.bin weights).
ZEROSCOPE_FILES = (
    "unet/config.json", "unet/diffusion_pytorch_model.bin",
    "vae/config.json", "vae/diffusion_pytorch_model.bin",
    "text_encoder/config.json", "text_encoder/pytorch_model.bin",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "scheduler/scheduler_config.json",
)


def zeroscope_record_name(backbone: str, rel: str) -> str:
    return f"{backbone}/{rel}"


for _rel in ZEROSCOPE_FILES:
    register(WeightRecord(
        name=zeroscope_record_name(ZEROSCOPE, _rel), filename=f"{ZEROSCOPE}/{_rel}", url=ZEROSCOPE_URL + _rel,
        sha256=None, license="CC-BY-NC-4.0 (cerspense/zeroscope_v2_576w model card; not verified here)",
        paper="zeroscope_v2_576w (cerspense), a fine-tune of ModelScope text-to-video (Wang et al. 2023)",
        note="sha256 not verified by us (no network here)"))

# upstream's placeholder words, in prompt order; the mapper's context has the same order
PLACEHOLDERS = ("<temp>", "<local1>", "<local2>", "<local3>", "<local4>", "<class>")


@dataclass(frozen=True)
class TempoTokensPaperConfig:
    """Published values (guyyariv/TempoTokens configs/v2/vggsound.yaml, inference.py)."""

    backbone: str = ZEROSCOPE                       # weights-record prefix of the text-to-video files
    beats: str = "beats_iter3_plus_as2m_ft_cpt2"    # weights record of the BEATs file
    audio_dim: int = 9216                           # 12 BEATs layers x 768, per patch
    hidden: int = 2304                              # mapper MLP width
    context_dim: int = 1024                         # text-encoder width (OpenCLIP-H)
    windows: tuple[int, ...] = (1, 2, 4, 8)
    fps: float = 12.0                               # native frame rate (inference.py --fps)
    height: int = 384
    width: int = 384
    sample_steps: int = 25                          # DPM-Solver++ steps
    guidance_scale: float = 25.0                    # CFG against the empty prompt
    vae_batch: int = 8                              # frames per VAE decode call
    sample_rate: int = 16000                        # BEATs input rate
    # training recipe (hashed by the family record; only the mapper trains)
    steps: int = 100000
    lr: float = 1e-5
    batch_size: int = 1
    train_frames: int = 24
    l1_weight: float = 0.01


PAPER_CONFIG = TempoTokensPaperConfig()
GENERATION_FIELDS = ("sample_steps", "guidance_scale", "vae_batch")


def recipe_config(cfg: TempoTokensPaperConfig) -> dict[str, Any]:
    """The training recipe of ``cfg`` as plain data (for the family record's hash): the
    config less its generation-only fields, so changing the sampler does not stale a
    trained mapper."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in GENERATION_FIELDS}


# ----------------------------------------------------------------------------- loading
def _resolve(name: str) -> tuple[Path, str]:
    from foleybench.weights import resolve

    return resolve(name)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FoleybenchError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(data, dict):
        raise FoleybenchError(f"{path}: a config must be a JSON object")
    return data


def _load_diffusers(cls: Any, config_path: Path, weights_path: Path) -> Any:
    from foleybench.weights import load_strict, read_state_dict

    cfg = _read_json(config_path)
    want = cls.__name__
    if cfg.get("_class_name", want) != want:
        raise FoleybenchError(f"{config_path}: config is for {cfg['_class_name']}, expected {want}")
    try:
        model = cls.from_config(cfg)
    except (TypeError, ValueError) as exc:
        raise FoleybenchError(f"{config_path}: cannot build {want} from it ({exc})") from None
    sd = dict(read_state_dict(weights_path))
    sd = model._fix_state_dict_keys_on_load(sd) or sd   # diffusers' deprecated-attention renames
    load_strict(model, sd, str(weights_path))
    return model.eval()


def _clip_state_dict(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """transformers < 5 saved CLIPTextModel under ``text_model.`` with a persistent
    ``position_ids`` buffer; transformers 5 has neither (module doc)."""
    if sd and all(k.startswith("text_model.") for k in sd):
        sd = {k[len("text_model."):]: v for k, v in sd.items()}
    pos = sd.pop("embeddings.position_ids", None)
    if pos is not None and not torch.equal(pos.reshape(-1).long(), torch.arange(pos.numel())):
        raise FoleybenchError(f"{path}: embeddings.position_ids is not arange: not a CLIP text encoder file")
    return sd


def _load_clip(config_path: Path, weights_path: Path) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    from foleybench.weights import load_strict, read_state_dict

    cfg = _read_json(config_path)
    try:
        model = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")}))
    except (TypeError, ValueError) as exc:
        raise FoleybenchError(f"{config_path}: cannot build CLIPTextModel from it ({exc})") from None
    load_strict(model, _clip_state_dict(dict(read_state_dict(weights_path)), weights_path), str(weights_path))
    return model.eval()


@dataclass
class Backbone:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict[str, Any]
    sha256: dict[str, str]


def load_backbone(cfg: TempoTokensPaperConfig) -> Backbone:
    """Every zeroscope file through the weights registry, each network loaded strictly."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTokenizer

    paths, digests = {}, {}
    for rel in ZEROSCOPE_FILES:
        paths[rel], digests[rel] = _resolve(zeroscope_record_name(cfg.backbone, rel))
    unet = _load_diffusers(UNet3DConditionModel, paths["unet/config.json"], paths["unet/diffusion_pytorch_model.bin"])
    vae = _load_diffusers(AutoencoderKL, paths["vae/config.json"], paths["vae/diffusion_pytorch_model.bin"])
    text = _load_clip(paths["text_encoder/config.json"], paths["text_encoder/pytorch_model.bin"])
    tok_dir = paths["tokenizer/vocab.json"].parent
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    except (OSError, ValueError) as exc:
        raise FoleybenchError(f"{tok_dir}: cannot read the CLIP tokenizer ({exc})") from None
    sched = _read_json(paths["scheduler/scheduler_config.json"])
    if unet.config.cross_attention_dim != text.config.hidden_size:
        raise FoleybenchError(f"{paths['unet/config.json']}: cross_attention_dim {unet.config.cross_attention_dim} "
                              f"!= the text encoder's width {text.config.hidden_size}")
    return Backbone(unet, vae, text, tokenizer, sched, digests)


def load_mapper(cfg: TempoTokensPaperConfig, path: str | Path) -> tuple[torch.nn.Module, str]:
    """Our trained mapper: a family checkpoint (``state_dict`` + ``config``), loaded strictly."""
    from foleybench.baselines.tempotokens_mapper import AudioMapper
    from foleybench.weights import load_strict, read_checkpoint, sha256_file, state_dict_of

    path = Path(path)
    sd = state_dict_of(read_checkpoint(path), str(path))
    mapper = AudioMapper(cfg.audio_dim, cfg.hidden, cfg.context_dim, cfg.windows)
    load_strict(mapper, sd, str(path))
    return mapper.eval(), sha256_file(path)


# ----------------------------------------------------------------------------- routing
SPATIAL_CROSS = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.attn2\.processor$")
TEMPORAL = re.compile(r"(^transformer_in\.|\.temp_attentions\.)")


class FrameRoute:
    """What the processors read at a UNet call: ``context`` ``[B * F, L, D]`` (row ``b * F
    + f``); ``log``, when a list, gets ``(processor name, kind, encoder states seen)``."""

    def __init__(self) -> None:
        self.context: torch.Tensor | None = None
        self.log: list[tuple[str, str, torch.Tensor | None]] | None = None


class FrameContextProcessor:
    """Spatial cross-attention: attend to this row's own frame context."""

    def __init__(self, route: FrameRoute, name: str):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.route, self.name, self.base = route, name, AttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kw: Any) -> Any:
        ctx = self.route.context
        if ctx is None or ctx.shape[0] != hidden_states.shape[0]:
            raise FoleybenchError(f"{self.name}: no per-frame context for {hidden_states.shape[0]} frames")
        if self.route.log is not None:
            self.route.log.append((self.name, "spatial", ctx))
        return self.base(attn, hidden_states, encoder_hidden_states=ctx.to(hidden_states.dtype),
                         attention_mask=attention_mask, temb=temb)


class NoContextProcessor:
    """Temporal (and spatial self-) attention: must receive no encoder states."""

    def __init__(self, route: FrameRoute, name: str, kind: str):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.route, self.name, self.kind, self.base = route, name, kind, AttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kw: Any) -> Any:
        if self.route.log is not None:
            self.route.log.append((self.name, self.kind, encoder_hidden_states))
        if encoder_hidden_states is not None:
            raise FoleybenchError(f"{self.name}: a {self.kind} attention was given encoder states")
        return self.base(attn, hidden_states, attention_mask=attention_mask, temb=temb)


def install_routing(unet: Any) -> FrameRoute:
    """Set our processors on every attention of ``unet``; -> the shared :class:`FrameRoute`."""
    route, procs = FrameRoute(), {}
    n_spatial = 0
    for name in unet.attn_processors:
        if SPATIAL_CROSS.search(name):
            procs[name] = FrameContextProcessor(route, name)
            n_spatial += 1
        else:
            procs[name] = NoContextProcessor(route, name, "temporal" if TEMPORAL.search(name) else "self")
    if not n_spatial:
        raise FoleybenchError("the UNet has no spatial cross-attention to route audio contexts to")
    unet.set_attn_processor(procs)
    return route


# ----------------------------------------------------------------------------- the model
def native_frames(duration_s: float, fps: float) -> int:
    return max(1, math.ceil(duration_s * fps - 1e-9))


def frame_map(n_out: int, out_fps: float, n_native: int, native_fps: float) -> np.ndarray:
    """Output frame i shows the native frame at time ``i / out_fps`` (floor, clipped)."""
    t = np.arange(n_out, dtype=np.float64) / float(out_fps)
    return np.clip(np.floor(t * native_fps + 1e-6).astype(np.int64), 0, n_native - 1)


class TempoTokensPaper(AudioToVideo):
    def __init__(self, cfg: TempoTokensPaperConfig, backbone: Backbone, beats: Any, beats_sha256: str,
                 mapper: torch.nn.Module, mapper_sha256: str, name: str, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, guidance_scale: float | None = None,
                 sample_steps: int | None = None):
        self.cfg, self.bb, self.name = cfg, backbone, name
        self.device, self.dtype = torch.device(device), dtype
        self.guidance = float(cfg.guidance_scale if guidance_scale is None else guidance_scale)
        self.sample_steps = int(cfg.sample_steps if sample_steps is None else sample_steps)
        if not math.isfinite(self.guidance) or self.guidance < 0 or self.sample_steps < 1:
            raise FoleybenchError(f"{name}: need guidance_scale >= 0 and sample_steps >= 1, got "
                                  f"{self.guidance}, {self.sample_steps}")
        if mapper.fc4.out_features != backbone.text_encoder.config.hidden_size:
            raise FoleybenchError(f"{name}: mapper width {mapper.fc4.out_features} != text encoder width "
                                  f"{backbone.text_encoder.config.hidden_size}")
        self.beats, self.beats_sha256 = beats.to(self.device), beats_sha256
        self.mapper, self.mapper_sha256 = mapper.to(self.device), mapper_sha256
        for m in (backbone.unet, backbone.vae, backbone.text_encoder):
            m.to(self.device, dtype)
            m.requires_grad_(False)
        self.route = install_routing(backbone.unet)
        self.vae_factor = 2 ** (len(backbone.vae.config.block_out_channels) - 1)
        if cfg.height % self.vae_factor or cfg.width % self.vae_factor:
            raise FoleybenchError(f"{name}: {cfg.height}x{cfg.width} is not a multiple of the VAE factor "
                                  f"{self.vae_factor}")
        self._null: torch.Tensor | None = None

    # -- conditioning
    def _ids(self, n_tokens: int) -> torch.Tensor:
        tok = self.bb.tokenizer
        length = tok.model_max_length
        if n_tokens + 2 > length:
            raise FoleybenchError(f"{self.name}: {n_tokens} context tokens do not fit {length} positions")
        ids = [tok.bos_token_id] + [tok.eos_token_id] * n_tokens + [tok.eos_token_id]
        ids += [tok.pad_token_id] * (length - len(ids))
        return torch.tensor([ids], device=self.device)

    def null_context(self) -> torch.Tensor:
        """The text encoder on the empty prompt: ``[1, L, D]``."""
        if self._null is None:
            tok = self.bb.tokenizer
            ids = tok([""], padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids.to(self.device)
            with torch.no_grad():
                self._null = self.bb.text_encoder(ids).last_hidden_state
        return self._null

    def frame_contexts(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[F, T, D]`` mapper tokens -> ``[F, L, D]``: the text encoder per frame with the
        embeddings of positions 1..T replaced by the frame's tokens (module doc)."""
        n_frames, t, _ = tokens.shape
        ids = self._ids(t).expand(n_frames, -1)
        emb = self.bb.text_encoder.get_input_embeddings()

        def put(_m: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            out = out.clone()
            out[:, 1:1 + t] = tokens.to(out.dtype)
            return out

        handle = emb.register_forward_hook(put)
        try:
            with torch.no_grad():
                return self.bb.text_encoder(ids).last_hidden_state
        finally:
            handle.remove()

    def audio_tokens(self, audio: np.ndarray, sr: int, duration_s: float, n_frames: int) -> torch.Tensor:
        """Request audio -> mapper tokens ``[F, 6, D]`` at the native fps."""
        from foleybench.media import resample, to_mono

        mono = to_mono(np.asarray(audio, np.float32))
        wav = resample(mono, sr, self.cfg.sample_rate)[0] if sr != self.cfg.sample_rate else mono[0]
        n = max(1, int(round(duration_s * self.cfg.sample_rate)))
        wav = np.pad(wav[:n], (0, max(0, n - len(wav[:n]))))
        with torch.no_grad():
            feats = self.beats.layer_features(torch.from_numpy(np.ascontiguousarray(wav))[None])
            ctx, _ = self.mapper(feats.layers.float(), feats.times, n_frames, self.cfg.fps)
        return ctx[0]

    # -- sampling
    def _scheduler(self) -> Any:
        from diffusers import DPMSolverMultistepScheduler

        sched = DPMSolverMultistepScheduler.from_config(self.bb.scheduler_config)
        sched.set_timesteps(self.sample_steps, device=self.device)
        return sched

    def _unet(self, latents: torch.Tensor, t: Any, context: torch.Tensor) -> torch.Tensor:
        b, f = latents.shape[0], latents.shape[2]
        if context.shape[0] != b * f:
            raise FoleybenchError(f"{self.name}: {context.shape[0]} frame contexts for {b} x {f} frames")
        self.route.context = context
        try:
            placeholder = context[::f]                       # [B, L, D]; the processors replace it
            return self.bb.unet(latents, t, encoder_hidden_states=placeholder).sample
        finally:
            self.route.context = None

    def sample_latents(self, frame_ctx: torch.Tensor | None, n_frames: int, seed: int) -> torch.Tensor:
        """Seeded DPM-Solver++ sampling; ``frame_ctx`` ``[F, L, D]`` (None: empty prompt only)."""
        h, w = self.cfg.height // self.vae_factor, self.cfg.width // self.vae_factor
        c = self.bb.unet.config.in_channels
        gen = torch.Generator("cpu").manual_seed(int(seed))
        latents = torch.randn((1, c, n_frames, h, w), generator=gen, dtype=torch.float32)
        latents = latents.to(self.device, self.dtype)
        sched = self._scheduler()
        latents = latents * sched.init_noise_sigma
        null = self.null_context().expand(n_frames, -1, -1)
        s = self.guidance
        for t in sched.timesteps:
            x = sched.scale_model_input(latents, t)
            with torch.no_grad():
                if frame_ctx is None or s == 0:
                    eps = self._unet(x, t, null)
                elif s == 1:
                    eps = self._unet(x, t, frame_ctx)
                else:
                    both = self._unet(torch.cat([x, x]), t, torch.cat([null, frame_ctx]))
                    u, cnd = both.chunk(2)
                    eps = u + s * (cnd - u)
            latents = sched.step(eps, t, latents).prev_sample
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[1, C, F, h, w]`` -> ``[F, 3, H, W]`` in [-1, 1] (float32)."""
        z = latents[0].permute(1, 0, 2, 3) / self.bb.vae.config.scaling_factor
        out = []
        with torch.no_grad():
            for i in range(0, z.shape[0], self.cfg.vae_batch):
                out.append(self.bb.vae.decode(z[i:i + self.cfg.vae_batch]).sample.float())
        return torch.cat(out).clamp(-1, 1)

    def video(self, req: A2VRequest) -> np.ndarray:
        if not (req.duration_s > 0 and math.isfinite(req.duration_s)):
            raise FoleybenchError(f"{req.clip_id}: duration_s must be > 0, got {req.duration_s}")
        if not (req.fps > 0 and math.isfinite(req.fps)):
            raise FoleybenchError(f"{req.clip_id}: fps must be > 0, got {req.fps}")
        n_native = native_frames(req.duration_s, self.cfg.fps)
        frame_ctx = None
        if self.guidance != 0:
            frame_ctx = self.frame_contexts(self.audio_tokens(req.audio, req.sample_rate, req.duration_s,
                                                              n_native).to(self.dtype))
        frames = self.decode(self.sample_latents(frame_ctx, n_native, req.seed))   # [F, 3, H, W]
        n_out = max(1, int(round(req.duration_s * req.fps)))
        idx = torch.from_numpy(frame_map(n_out, req.fps, n_native, self.cfg.fps)).to(frames.device)
        frames = frames[idx]
        h, w = req.size
        if tuple(frames.shape[-2:]) != (h, w):
            frames = F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False,
                                   antialias=(h < frames.shape[-2] or w < frames.shape[-1])).clamp(-1, 1)
        out = ((frames + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def generate(self, requests: Sequence[A2VRequest]) -> list[VideoOutput]:
        outs = [VideoOutput(r.clip_id, self.video(r), float(r.fps)) for r in requests]
        check_outputs(requests, outs, self.name)
        return outs

    def params(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.cfg), "code_version": CODE_VERSION,
                "guidance_scale": self.guidance, "sample_steps": self.sample_steps,
                "dtype": str(self.dtype).replace("torch.", ""), "weights": "pretrained",
                "mapper_sha256": self.mapper_sha256, "beats_sha256": self.beats_sha256,
                "backbone_sha256": dict(self.bb.sha256),
                "routing": "per-frame context to spatial cross-attention only"}


def build_paper(cfg: TempoTokensPaperConfig, *, name: str, checkpoint: str | Path | None, device: str = "cpu",
                **options: Any) -> TempoTokensPaper:
    """The family builder for ``tempotokens.paper``. ``checkpoint``: the trained mapper file
    (required: the paper path has no random-init mode). Options: ``guidance_scale``,
    ``sample_steps``, ``dtype`` (``"float32"``, ``"float16"``; default float16 on CUDA as
    upstream, float32 elsewhere)."""
    from foleybench.baselines.beats import load_registered

    if checkpoint is None:
        raise FoleybenchError(f"{name}: the paper path needs the trained mapper checkpoint "
                              f"({PAPER_CHECKPOINT_FILE}; {UPSTREAM_MAPPER_NOTE})")
    unknown = set(options) - {"guidance_scale", "sample_steps", "dtype"}
    if unknown:
        raise FoleybenchError(f"{name}: unknown options {sorted(unknown)} (guidance_scale, sample_steps, dtype)")
    dtype_name = options.get("dtype") or ("float16" if str(device).startswith("cuda") else "float32")
    dtypes: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16,
                                      "bfloat16": torch.bfloat16}
    if dtype_name not in dtypes:
        raise FoleybenchError(f"{name}: dtype {dtype_name!r} is not one of {sorted(dtypes)}")
    backbone = load_backbone(cfg)
    beats, beats_sha = load_registered(cfg.beats)
    if beats.cfg.encoder_layers * beats.cfg.encoder_embed_dim != cfg.audio_dim:
        raise FoleybenchError(f"{name}: BEATs gives {beats.cfg.encoder_layers} x {beats.cfg.encoder_embed_dim} "
                              f"channels per patch, the config expects {cfg.audio_dim}")
    mapper, mapper_sha = load_mapper(cfg, checkpoint)
    return TempoTokensPaper(cfg, backbone, beats, beats_sha, mapper, mapper_sha, name, device=device,
                            dtype=dtypes[dtype_name], guidance_scale=options.get("guidance_scale"),
                            sample_steps=options.get("sample_steps"))


# hook for tests and tools: the names of the processors of each kind on a routed UNet
def processor_kinds(unet: Any) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"spatial": [], "temporal": [], "self": []}
    for name, proc in unet.attn_processors.items():
        kind = "spatial" if isinstance(proc, FrameContextProcessor) else getattr(proc, "kind", "other")
        kinds.setdefault(kind, []).append(name)
    return kinds

