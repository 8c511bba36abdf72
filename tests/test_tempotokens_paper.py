"""TempoTokens paper path on tiny random-init modules of the same diffusers/transformers
classes, saved in zeroscope's file layout and loaded back strictly through the registry:
output contract for odd durations, seeding, guidance off, per-frame routing."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from foleybench import weights as W  # noqa: E402
from foleybench.api import A2VRequest  # noqa: E402
from foleybench.baselines import tempotokens_paper as TP  # noqa: E402
from foleybench.baselines.beats import BEATS_ITER3_PLUS_AS2M_CPT2, BEATs, BEATsConfig, save_checkpoint  # noqa: E402
from foleybench.baselines.tempotokens_mapper import AudioMapper  # noqa: E402

# diffusers' DPM scheduler builds sigmas with np.array(tensor), which numpy 2 flags
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

D = 24  # text width = mapper output
CFG = TP.TempoTokensPaperConfig(audio_dim=2 * 16, hidden=16, context_dim=D, fps=6.0, height=16, width=16,
                                sample_steps=3)


def write_weights(root: Path) -> Path:
    """Tiny zeroscope + BEATs + mapper files in the upstream layouts; -> the mapper file."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    z = root / TP.ZEROSCOPE
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (z / sub).mkdir(parents=True, exist_ok=True)
    unet = UNet3DConditionModel(sample_size=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(16, 32),
                                layers_per_block=1, norm_num_groups=8, cross_attention_dim=D, attention_head_dim=8)
    unet.save_config(z / "unet")
    torch.save(unet.state_dict(), z / "unet" / "diffusion_pytorch_model.bin")
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1,
                        sample_size=16)
    vae.save_config(z / "vae")
    torch.save(vae.state_dict(), z / "vae" / "diffusion_pytorch_model.bin")
    tcfg = CLIPTextConfig(hidden_size=D, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                          vocab_size=8, max_position_embeddings=77, bos_token_id=3, eos_token_id=4, pad_token_id=0)
    text = CLIPTextModel(tcfg)
    (z / "text_encoder" / "config.json").write_text(tcfg.to_json_string())
    # transformers < 5 layout, as zeroscope's file: "text_model." prefix and the position_ids buffer
    old = {f"text_model.{k}": v for k, v in text.state_dict().items()}
    old["text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save(old, z / "text_encoder" / "pytorch_model.bin")
    tok = z / "tokenizer"
    (tok / "vocab.json").write_text(json.dumps({"!": 0, "a</w>": 1, "b</w>": 2, "<|startoftext|>": 3,
                                                "<|endoftext|>": 4}))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    special = {"pad_token": "!", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    (tok / "tokenizer_config.json").write_text(json.dumps({**special, "model_max_length": 77,
                                                           "tokenizer_class": "CLIPTokenizer"}))
    (tok / "special_tokens_map.json").write_text(json.dumps(special))
    (z / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False,
        "steps_offset": 1}))
    beats = BEATs(BEATsConfig(embed_dim=16, encoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=24,
                              encoder_attention_heads=2, conv_pos=4, conv_pos_groups=2,
                              relative_position_embedding=True, num_buckets=16, max_distance=40, gru_rel_pos=True,
                              deep_norm=True, finetuned_model=True, predictor_class=5))
    save_checkpoint(beats, root / BEATS_ITER3_PLUS_AS2M_CPT2.filename)
    mapper = AudioMapper(CFG.audio_dim, CFG.hidden, CFG.context_dim, CFG.windows)
    torch.save({"state_dict": mapper.state_dict(), "config": dataclasses.asdict(CFG)}, root / "mapper.pt")
    return root / "mapper.pt"


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory: pytest.TempPathFactory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny modules: threads only add overhead on a shared machine
    root = tmp_path_factory.mktemp("weights")
    mapper = write_weights(root)
    W.set_weights_dir(root)
    yield root, mapper
    W.set_weights_dir(None)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(weights_root):
    _, mapper = weights_root
    return TP.build_paper(CFG, name="tempotokens.paper", checkpoint=mapper)


def req(seconds: float, fps: float = 8.0, size=(20, 28), seed: int = 1, audio_seed: int = 0, sr: int = 22050):
    rng = np.random.default_rng(audio_seed)
    audio = (rng.standard_normal((2, int(round(seconds * sr)))) * 0.2).astype(np.float32)
    return A2VRequest("c", audio, sr, "dog", seconds, fps, size, seed)


@pytest.mark.parametrize("seconds,fps", [(2.37, 8.0), (10.0, 25.0)])
def test_output_shape_dtype_fps_for_odd_durations(model, seconds: float, fps: float) -> None:
    (out,) = model.generate([req(seconds, fps)])
    assert out.clip_id == "c" and out.fps == fps
    assert out.frames.dtype == np.uint8 and out.frames.shape == (int(round(seconds * fps)), 20, 28, 3)
    assert out.frames.std() > 0  # decoded, not a constant fill


def test_frames_map_to_requested_fps_by_time() -> None:
    # 2.37 s: 15 native frames at 6 fps; at 25 fps, frame i shows native floor(i / 25 * 6)
    idx = TP.frame_map(59, 25.0, TP.native_frames(2.37, 6.0), 6.0)
    assert TP.native_frames(2.37, 6.0) == 15 and idx[0] == 0 and idx[-1] == 13
    assert idx.tolist() == [int(np.floor(i / 25 * 6 + 1e-6)) for i in range(59)]
    assert TP.frame_map(3, 1.0, 2, 6.0).tolist() == [0, 1, 1]  # past the last native frame: the last


def test_same_seed_bit_identical_other_seed_differs(model) -> None:
    a = model.generate([req(1.3, seed=5)])[0].frames
    b = model.generate([req(1.3, seed=5)])[0].frames
    c = model.generate([req(1.3, seed=6)])[0].frames
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_guidance_off_ignores_the_audio_and_guidance_on_does_not(weights_root, model) -> None:
    _, mapper = weights_root
    off = TP.build_paper(CFG, name="tempotokens.paper", checkpoint=mapper, guidance_scale=0.0)
    a = off.generate([req(1.3, audio_seed=0)])[0].frames
    b = off.generate([req(1.3, audio_seed=1)])[0].frames
    assert np.array_equal(a, b)
    on_a = model.generate([req(1.3, audio_seed=0)])[0].frames
    on_b = model.generate([req(1.3, audio_seed=1)])[0].frames
    assert not np.array_equal(on_a, on_b)


def test_each_frame_spatial_cross_attention_sees_only_its_own_context(model) -> None:
    r = req(1.0)
    n = TP.native_frames(1.0, CFG.fps)
    tokens = model.audio_tokens(r.audio, r.sample_rate, r.duration_s, n)
    assert tokens.shape == (n, 6, D)
    per_frame = model.frame_contexts(tokens)                                       # [F, 77, D]
    null = model.null_context()[0]
    # the six tokens differ between frames, so a mixed-up row would show
    assert not torch.allclose(per_frame[0], per_frame[1])
    model.route.log = []
    try:
        model.generate([r])
        log = model.route.log
    finally:
        model.route.log = None
    kinds = TP.processor_kinds(model.bb.unet)
    assert kinds["spatial"] and kinds["temporal"]
    assert all(".attentions." in k and ".attn2." in k for k in kinds["spatial"])
    assert any(k.startswith("transformer_in.") for k in kinds["temporal"])
    assert any(".temp_attentions." in k and ".attn2." in k for k in kinds["temporal"])
    spatial = [ctx for _, kind, ctx in log if kind == "spatial"]
    assert len(spatial) == len(kinds["spatial"]) * CFG.sample_steps
    for ctx in spatial:
        assert ctx.shape == (2 * n, 77, D)                                           # [uncond; cond] x frames
        for f in range(n):
            assert torch.equal(ctx[f], null)                                         # row b*F + f, b = 0: null
            assert torch.equal(ctx[n + f], per_frame[f])                             # b = 1: frame f's own
    temporal = [ctx for _, kind, ctx in log if kind == "temporal"]
    assert temporal and all(ctx is None for ctx in temporal)


def test_context_tokens_replace_positions_one_to_six(model) -> None:
    tokens = torch.randn(2, 6, D)
    a = model.frame_contexts(tokens)
    b = tokens.clone()
    b[1, 3] += 1.0                       # frame 1, fourth token (w4)
    c = model.frame_contexts(b)
    assert torch.equal(a[0], c[0])       # frame 0's context is untouched
    assert torch.equal(a[1, :4], c[1, :4]) and not torch.equal(a[1, 4:], c[1, 4:])  # causal text encoder


def test_missing_weights_name_file_and_url(tmp_path: Path, weights_root) -> None:
    _, mapper = weights_root
    W.set_weights_dir(tmp_path)
    try:
        with pytest.raises(W.MissingWeightsError) as exc:
            TP.build_paper(CFG, name="tempotokens.paper", checkpoint=mapper)
    finally:
        W.set_weights_dir(weights_root[0])
    assert "zeroscope_v2_576w/unet/config.json" in str(exc.value)
    assert "huggingface.co/cerspense/zeroscope_v2_576w" in str(exc.value)
    with pytest.raises(W.FoleybenchError, match="trained mapper"):
        TP.build_paper(CFG, name="tempotokens.paper", checkpoint=None)


def test_broken_unet_file_is_refused_naming_it(tmp_path: Path, weights_root) -> None:
    import shutil

    root, mapper = weights_root
    copy = tmp_path / "w"
    shutil.copytree(root, copy)
    path = copy / TP.ZEROSCOPE / "unet" / "diffusion_pytorch_model.bin"
    sd = torch.load(path, weights_only=True)
    sd.pop(next(k for k in sd if ".attn2.to_k." in k))
    torch.save(sd, path)
    W.set_weights_dir(copy)
    try:
        with pytest.raises(W.StrictLoadError, match="missing keys") as exc:
            TP.build_paper(CFG, name="tempotokens.paper", checkpoint=mapper)
    finally:
        W.set_weights_dir(root)
    assert str(path) in str(exc.value)


def test_paper_config_is_the_published_recipe() -> None:
    c = TP.PAPER_CONFIG
    assert (c.sample_steps, c.guidance_scale, c.fps, c.height, c.width) == (25, 25.0, 12.0, 384, 384)
    assert (c.audio_dim, c.hidden, c.context_dim, c.windows) == (9216, 2304, 1024, (1, 2, 4, 8))
    assert TP.PAPER_CHECKPOINT_URL == TP.NO_RELEASE
    recipe = TP.recipe_config(c)
    assert "guidance_scale" not in recipe and recipe["steps"] == 100000 and recipe["l1_weight"] == 0.01
    json.dumps(recipe)  # plain data: the family record hashes it
    assert W.record(f"{TP.ZEROSCOPE}/unet/diffusion_pytorch_model.bin").url.startswith("https://huggingface.co/")


def test_routed_cross_attention_row_depends_on_its_own_context_only(model) -> None:
    name = TP.processor_kinds(model.bb.unet)["spatial"][0]
    attn = model.bb.unet.get_submodule(name.rsplit(".processor", 1)[0])
    proc = model.bb.unet.attn_processors[name]
    hidden = torch.randn(3, 5, attn.query_dim)
    ctx = torch.randn(3, 77, D)
    model.route.context = ctx
    try:
        a = proc(attn, hidden, encoder_hidden_states=torch.zeros(3, 77, D))
        ctx2 = ctx.clone()
        ctx2[1] += 1.0
        model.route.context = ctx2
        b = proc(attn, hidden, encoder_hidden_states=torch.zeros(3, 77, D))
        model.route.context = ctx[:2]
        with pytest.raises(W.FoleybenchError, match="no per-frame context"):
            proc(attn, hidden)
    finally:
        model.route.context = None
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and not torch.allclose(a[1], b[1])


def test_sampling_loop_matches_diffusers_text_to_video_pipeline(model) -> None:
    """With the same context for every frame, our routed sampler is diffusers' own
    TextToVideoSDPipeline (DPM-Solver++, CFG, latent scaling) on the same seeded latents."""
    from diffusers import DPMSolverMultistepScheduler
    from diffusers.pipelines import TextToVideoSDPipeline

    n, seed = 5, 11
    torch.manual_seed(3)
    prompt = torch.randn(1, 77, D)
    null = model.null_context()
    ours = model.sample_latents(prompt.expand(n, -1, -1), n, seed)
    bb = model.bb
    pipe = TextToVideoSDPipeline(vae=bb.vae, text_encoder=bb.text_encoder, tokenizer=bb.tokenizer, unet=bb.unet,
                                 scheduler=DPMSolverMultistepScheduler.from_config(bb.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    h, w = CFG.height // model.vae_factor, CFG.width // model.vae_factor
    latents = torch.randn((1, bb.unet.config.in_channels, n, h, w), generator=torch.Generator("cpu").manual_seed(seed))
    model.route.context = torch.cat([null.expand(n, -1, -1), prompt.expand(n, -1, -1)])  # [uncond; cond] per frame
    try:
        ref = pipe(prompt_embeds=prompt, negative_prompt_embeds=null, num_frames=n, height=CFG.height,
                   width=CFG.width, num_inference_steps=CFG.sample_steps, guidance_scale=CFG.guidance_scale,
                   latents=latents, output_type="latent").frames
    finally:
        model.route.context = None
    assert ref.shape == ours.shape
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0), (ours - ref).abs().max()
