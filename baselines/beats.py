"""BEATs audio encoder (Chen et al. 2022, "BEATs: Audio Pre-Training with Acoustic
Tokenizers", arXiv 2212.09058): our own network, written after reading microsoft/unilm
``beats/BEATs.py`` and ``beats/backbone.py``; no code is taken from there.

TempoTokens (issue 11) uses it frozen, and reads every transformer layer's output per
patch, concatenated (12 x 768 = 9216 channels per patch), with each patch's time so
``tempotokens_mapper.pool_to_frames`` maps patches to video frames by time.

Checkpoint format (upstream's): ``torch.save({"cfg": dict, "model": state_dict})``. The
state-dict key names are upstream's, so the published file loads with every key and shape
checked (:func:`foleybench.weights.load_strict`):

- ``patch_embedding.weight`` (Conv2d 1 -> ``embed_dim``, kernel = stride = patch size,
  bias only with ``conv_bias``), ``layer_norm.*`` (over ``embed_dim``),
  ``post_extract_proj.*`` (``embed_dim`` -> ``encoder_embed_dim``, only when they differ);
- ``encoder.pos_conv.0.{weight_g,weight_v,bias}``: the convolutional position embedding, a
  grouped Conv1d under weight normalisation over the kernel axis (``dim=2``), then
  "same" trimming and GELU; ``encoder.layer_norm.*``;
- ``encoder.layers.{i}.self_attn.{q,k,v,out}_proj.*``, ``...self_attn.relative_attention_
  bias.weight`` (one bucket table shared by every layer, stored under each layer's name as
  upstream's state dict does), ``...self_attn.grep_linear.*`` and ``...self_attn.grep_a``
  (the gated relative position bias), ``...self_attn_layer_norm.*``, ``...fc1.*``,
  ``...fc2.*``, ``...final_layer_norm.*``;
- ``predictor.*`` only in fine-tuned checkpoints (``finetuned_model``); TempoTokens drops
  the predictor after loading and so do we (:meth:`BEATs.layer_features` never uses it).

Preprocessing (upstream's): 16 kHz mono, scaled by 2^15, Kaldi log-mel filterbank (128 bins,
25 ms frames, 10 ms shift, torchaudio.compliance.kaldi defaults: povey window, 0.97
pre-emphasis, DC removal, no dither, snip_edges), normalised as ``(fbank - 15.41663) /
(2 * 6.55582)``. Patches of 16 x 16 (frames x bins) tile the filterbank; the token order
is time-major (8 frequency patches per 160 ms time step). A remainder of fewer than 16
frames at the end is dropped, as upstream's strided convolution drops it.

Patch time (ours; upstream maps patches to frames by a fixed reshape): the centre of the
audio a patch's frames span, ``(16 j * 0.01) + (15 * 0.01 + 0.025) / 2`` seconds for time
step j. A clip too short for one patch (under 0.175 s) is zero-padded at the end to one
patch, and says so through :attr:`BEATsFeatures.padded_s`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from foleybench.weights import WeightRecord, register

log = logging.getLogger("foleybench")

SAMPLE_RATE = 16000
N_MELS = 128
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
FBANK_MEAN = 15.41663
FBANK_STD = 6.55582
PAPER = "Chen et al. 2022, BEATs: Audio Pre-Training with Acoustic Tokenizers (arXiv 2212.09058)"

# The pre-trained iter3+ (AS2M) model, and the AudioSet fine-tuned one TempoTokens' README
# downloads (its train.py loads it and sets ``predictor = None``). Upstream publishes no
# checksum for either, and we could not download them here to record one: sha256 None.
BEATS_ITER3_PLUS_AS2M = register(WeightRecord(
    name="beats_iter3_plus_as2m",
    filename="BEATs_iter3_plus_AS2M.pt",
    url="https://1drv.ms/u/s!AqeByhGUtINrgcpke6_lRSZEKD5j2Q?e=A3FpOf",
    sha256=None,
    license="MIT (microsoft/unilm)",
    paper=PAPER,
    note="the pre-trained iter3+ AS2M model of microsoft/unilm beats/README.md (a OneDrive share link: "
         "download it in a browser); sha256 not verified by us",
))
BEATS_ITER3_PLUS_AS2M_CPT2 = register(WeightRecord(
    name="beats_iter3_plus_as2m_ft_cpt2",
    filename="BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
    url="https://valle.blob.core.windows.net/share/BEATs/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
        "?sv=2020-08-04&st=2023-03-01T07%3A51%3A05Z&se=2033-03-02T07%3A51%3A00Z&sr=c&sp=rl"
        "&sig=QJXmSJG9DbMKf48UDIU1MfzIro8HQOf3sqlNXiflY1I%3D",
    sha256=None,
    license="MIT (microsoft/unilm)",
    paper=PAPER,
    note="the AudioSet fine-tuned iter3+ model that guyyariv/TempoTokens downloads (README); "
         "sha256 not verified by us",
))


@dataclass(frozen=True)
class BEATsConfig:
    """Upstream's ``BEATsConfig`` fields and defaults (dropouts are kept for fidelity of
    the stored cfg; the encoder runs in eval mode, where they do nothing)."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any], source: str = "cfg") -> "BEATsConfig":
        """Upstream's ``cfg`` dict -> config. Keys we do not know are ignored as upstream's
        ``update`` keeps them unused (logged); a wrong type or value is an error naming
        ``source``."""
        if not isinstance(cfg, Mapping):
            raise ValueError(f"{source}: 'cfg' must be a dict, got {type(cfg).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        known, unknown = {}, sorted(k for k in cfg if k not in fields)
        for k, v in cfg.items():
            if k not in fields:
                continue
            want = type(getattr(cls(), k))
            if want is bool:
                ok = isinstance(v, (bool, int)) and v in (0, 1)
            elif want is int:
                ok = isinstance(v, int) and not isinstance(v, bool)
            elif want is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            else:
                ok = isinstance(v, str)
            if not ok:
                raise ValueError(f"{source}: cfg[{k!r}] = {v!r} is not a {want.__name__}")
            known[k] = want(v)
        if unknown:
            log.info("%s: BEATs cfg keys not used by the network: %s", source, unknown)
        out = cls(**known)
        out.validate(source)
        return out

    def validate(self, source: str = "cfg") -> None:
        if self.activation_fn not in _ACTIVATIONS:
            raise ValueError(f"{source}: activation_fn {self.activation_fn!r} is not supported "
                             f"(supported: {sorted(_ACTIVATIONS)})")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(f"{source}: encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                             f"encoder_attention_heads {self.encoder_attention_heads}")
        if self.deep_norm and self.layer_norm_first:
            raise ValueError(f"{source}: deep_norm and layer_norm_first cannot both be set (upstream asserts it)")
        if self.input_patch_size < 1 or N_MELS % self.input_patch_size:
            raise ValueError(f"{source}: input_patch_size {self.input_patch_size} must divide {N_MELS} mel bins")


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x.float()).type_as(x)  # upstream computes GELU in float32


def _gelu_accurate(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS = {"gelu": _gelu, "gelu_accurate": _gelu_accurate, "gelu_fast": _gelu_accurate,
                "relu": F.relu, "tanh": torch.tanh, "linear": lambda x: x}


class _WeightNormConv1d(nn.Module):
    """Conv1d whose weight is ``weight_v * weight_g / ||weight_v||``, the norm taken over
    every axis but the kernel axis (torch's ``weight_norm(..., dim=2)``; same names)."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel * channels)))
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_v * (self.weight_g / self.weight_v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt())
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class _TrimSame(nn.Module):
    """Drop the one extra output step an even kernel with ``padding = k // 2`` makes."""

    def __init__(self, kernel: int):
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : x.shape[-1] - self.remove] if self.remove else x


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5-style bidirectional buckets: half the buckets per sign; within a half, exact
    offsets below a quarter of ``num_buckets`` and log-spaced up to ``max_distance`` beyond."""
    half = num_buckets // 2
    bucket = (relative > 0).long() * half
    dist = relative.abs()
    exact = half // 2
    far = exact + (torch.log(dist.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return bucket + torch.where(dist < exact, dist, far)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with BEATs' (optionally gated) relative position bias."""

    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None):
        super().__init__()
        d, self.heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = d // self.heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)
        if bias_table is not None:
            self.relative_attention_bias = bias_table
        self.gated = cfg.gru_rel_pos
        if self.gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)   # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        mask = None
        if pos_bias is not None:                                                    # [H, T, T]
            mask = pos_bias[None]
            if self.gated:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., :1], gates[..., 1:]
                mask = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * mask       # [B, H, T, T]
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class _Layer(nn.Module):
    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = _SelfAttention(cfg, bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = _ACTIVATIONS[cfg.activation_fn]
        self.pre_norm = cfg.layer_norm_first
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: torch.Tensor, pos_bias: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.self_attn(self.self_attn_layer_norm(x), pos_bias)
            return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, pos_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(self.act(self.fc1(x))))


class _Encoder(nn.Module):
    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(_WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups),
                                      _TrimSame(cfg.conv_pos), nn.GELU())
        table = nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads) if cfg.relative_position_embedding \
            else None
        self.layers = nn.ModuleList([_Layer(cfg, table) for _ in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(d)
        self.cfg = cfg
        self._table = [table]  # not a submodule of its own: the layers hold it (upstream's names)

    def position_bias(self, t: int, device: torch.device) -> torch.Tensor | None:
        table = self._table[0]
        if table is None:
            return None
        pos = torch.arange(t, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.cfg.num_buckets,
                                           self.cfg.max_distance)
        return table(buckets).permute(2, 0, 1)                                    # [H, T, T]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        bias = self.position_bias(x.shape[1], x.device)
        outs = []
        for layer in self.layers:
            x = layer(x, bias)
            outs.append(x)
        if self.cfg.layer_norm_first:
            x = self.layer_norm(x)
        return x, outs


@dataclass
class BEATsFeatures:
    """``layers``: ``[B, P, L * D]`` every layer's output per patch, concatenated in layer
    order (TempoTokens' input); ``times``: ``[P]`` patch times in seconds (centres);
    ``last``: ``[B, P, D]`` the encoder output; ``padded_s``: seconds of zeros appended to a
    clip too short for one patch (0 otherwise)."""

    layers: torch.Tensor
    times: torch.Tensor
    last: torch.Tensor
    padded_s: float = 0.0


def patch_times(n_time_steps: int, patch: int = 16) -> torch.Tensor:
    """Centre time (s) of each patch's audio, repeated per frequency patch (time-major)."""
    shift, length = FRAME_SHIFT_MS / 1000.0, FRAME_LENGTH_MS / 1000.0
    j = torch.arange(n_time_steps, dtype=torch.float64)
    centres = j * patch * shift + ((patch - 1) * shift + length) / 2.0
    return centres.repeat_interleave(N_MELS // patch)


def min_samples(patch: int = 16) -> int:
    """Samples for one patch of ``patch`` fbank frames (snip_edges framing)."""
    return int(round(((patch - 1) * FRAME_SHIFT_MS + FRAME_LENGTH_MS) * SAMPLE_RATE / 1000.0))


class BEATs(nn.Module):
    """The BEATs network (upstream's module names). Use :meth:`layer_features`."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.post_extract_proj = nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim) \
            if cfg.embed_dim != cfg.encoder_embed_dim else None
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.encoder = _Encoder(cfg)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class) if cfg.finetuned_model else None

    @staticmethod
    def fbank(wave: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` 16 kHz waveforms in [-1, 1] -> ``[B, frames, 128]`` normalised fbank."""
        import torchaudio.compliance.kaldi as kaldi

        banks = [kaldi.fbank(w[None].float() * 2 ** 15, num_mel_bins=N_MELS, sample_frequency=SAMPLE_RATE,
                             frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS) for w in wave]
        return (torch.stack(banks) - FBANK_MEAN) / (2 * FBANK_STD)

    def layer_features(self, wave: torch.Tensor) -> BEATsFeatures:
        """``[B, N]`` (or ``[N]``) mono 16 kHz audio -> :class:`BEATsFeatures`."""
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2 or wave.shape[-1] == 0:
            raise ValueError(f"BEATs wants [B, N] mono 16 kHz audio with N > 0, got shape {tuple(wave.shape)}")
        if not torch.isfinite(wave).all():
            raise ValueError("BEATs input audio has NaN or infinite samples")
        p = self.cfg.input_patch_size
        need = min_samples(p)
        padded = 0.0
        if wave.shape[-1] < need:
            padded = (need - wave.shape[-1]) / SAMPLE_RATE
            wave = F.pad(wave, (0, need - wave.shape[-1]))
        dev = self.patch_embedding.weight.device
        fb = self.fbank(wave.cpu()).to(dev, self.patch_embedding.weight.dtype)    # [B, T, 128]
        x = self.patch_embedding(fb[:, None])                                     # [B, E, T/p, 128/p]
        steps = x.shape[2]
        x = self.layer_norm(x.flatten(2).transpose(1, 2))                         # [B, P, E], time-major
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        last, outs = self.encoder(x)
        return BEATsFeatures(torch.cat(outs, dim=-1), patch_times(steps, p), last, padded)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.layer_features(wave).layers


def save_checkpoint(model: BEATs, path: str | Path) -> None:
    """Write ``model`` in upstream's format: ``{"cfg": dict, "model": state_dict}``."""
    torch.save({"cfg": dataclasses.asdict(model.cfg), "model": model.state_dict()}, path)


def load_beats(path: str | Path, device: str | torch.device = "cpu") -> BEATs:
    """Read an upstream-format BEATs checkpoint and load it strictly (every key and shape
    must match); errors name the file."""
    from foleybench.weights import CheckpointError, load_strict, read_checkpoint

    ckpt = read_checkpoint(path)
    if "cfg" not in ckpt or "model" not in ckpt:
        raise CheckpointError(str(path), "not a BEATs checkpoint: upstream's format is a dict with 'cfg' and "
                              f"'model'; this file has keys {sorted(ckpt)[:10]}")
    sd = ckpt["model"]
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(str(path), "'model' is not a state dict of tensors")
    try:
        cfg = BEATsConfig.from_dict(ckpt["cfg"], source=str(path))
    except ValueError as exc:
        raise CheckpointError(str(path), f"bad BEATs cfg: {exc}") from None
    model = BEATs(cfg)
    load_strict(model, sd, str(path))
    return model.eval().to(device)


def load_registered(name: str = BEATS_ITER3_PLUS_AS2M_CPT2.name, checkpoint: str | Path | None = None,
                    device: str | torch.device = "cpu") -> tuple[BEATs, str]:
    """The registered checkpoint ``name`` (or the file ``checkpoint``) -> (model, sha256).
    A missing file raises :class:`foleybench.weights.MissingWeightsError` naming file and URL."""
    from foleybench.weights import resolve

    path, digest = resolve(name, checkpoint)
    return load_beats(path, device), digest
