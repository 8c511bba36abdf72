"""Does tempotokens.tiny follow per-frame context? The diagnosis behind its session-22 recipe.

Two questions, on the synthfoley test clips (the embedded default set), each clip
generated once with the bench's clip seed and scored by AV-Align against its own audio:

- ``generate``: paired AV-Align differences between ways of conditioning the same
  checkpoint. Modes: ``oracle`` (stage 1: label + the clip's own event context from its
  known event times: one token per frame, or the six tokens of ``event_context: "six"``), ``partner`` (label + the event tokens of the clip the `shuffled`
  baseline pairs it with), ``textonly`` (label alone), ``audio`` (the audio context of
  the clip's own audio), ``apartner`` (the partner's audio), ``ta`` / ``tapartner``
  (label + audio), ``sonly`` / ``spartner`` (the frame token s_f alone, no window or
  global tokens: not a generation tag, a diagnosis). oracle - partner asks whether stage 1 reads its per-frame tokens;
  audio - apartner whether the audio context carries it through.
- ``tokens``: how close the stage-2 mapper's frame tokens are to the stage-1 event
  tokens of each frame's true code (nearest-token agreement, cosine, and how much the
  tokens change at event frames against frames far from any event).

- ``train``: trains a variant of the tiny recipe (``--set FIELD=VALUE``, e.g.
  ``event_context=six``) with ``foleybench.train`` to the checkpoint path given (the
  shipped checkpoint and the family's configs are untouched; the checkpoint carries the
  variant's recipe hash, so it ships as is if the variant becomes the tiny default).

Usage (from the repository root; minutes on 2 cores, one thread)::

    python benchmarks/tempotokens_diag.py generate baselines/checkpoints/tempotokens.tiny.pt \
        --clips 27 --modes oracle,partner,audio,apartner
    python benchmarks/tempotokens_diag.py tokens baselines/checkpoints/tempotokens.tiny.pt
    python benchmarks/tempotokens_diag.py train runs/tt/six.pt --set event_context=six

Videos and per-clip scores go under ``--out`` (default runs/tempotokens-diag).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

PAIRS = [("oracle", "partner"), ("audio", "apartner"), ("oracle", "textonly"), ("ta", "tapartner"),
         ("sonly", "spartner")]
OWN = ("oracle", "audio", "textonly", "ta", "sonly")


def _net(path: str):
    from foleybench.baselines import tempotokens as T
    from foleybench.baselines.tempotokens_tiny import TempoTinyConfig, TempoTokensNet

    ck = T.load_checkpoint(path)
    c = dict(ck["config"])
    c["widths"] = tuple(c["widths"])
    cfg = TempoTinyConfig(**c)
    net = TempoTokensNet(cfg)
    net.load_state_dict(ck["state_dict"])
    return cfg, net.eval()


def _test_clips(limit: int | None = None) -> list:
    from foleybench.train import default_data, read_manifest

    recs = list(read_manifest(default_data()).split("test"))
    return recs[:limit] if limit else recs


def _frame_codes(cfg, rec, n: int) -> list[int]:
    from foleybench.baselines.tempotokens_tiny import event_codes

    return event_codes(tuple(int(round(e * cfg.fps)) for e in (rec.events or ())), range(n))


def generate(ckpt: str, clips: int, modes: list[str], out: Path) -> dict[str, dict[str, float]]:
    from foleybench import media
    from foleybench.api import A2VRequest
    from foleybench.baselines import tempotokens as T
    from foleybench.baselines.reference import derangement
    from foleybench.baselines.tempotokens_controls import paired_difference
    from foleybench.baselines.tempotokens_tiny import sample
    from foleybench.media_write import write_mp4
    from foleybench.metrics.functional.av_align import av_align_many
    from foleybench.runner import clip_seed

    cfg, net = _net(ckpt)
    recs = _test_clips(clips)
    by = {r.clip_id: r for r in recs}
    partner = derangement([r.clip_id for r in recs], 0)
    out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, dict[str, float]] = {}
    for mode in modes:
        jobs, t0 = [], time.time()
        for r in recs:
            n = T.model_frames(r.duration_s, cfg.fps)
            src = r if mode in OWN else by[partner[r.clip_id]]
            a = media.read_audio(src.audio_source, sample_rate=16000)
            req = A2VRequest(r.clip_id, a.samples, a.sample_rate, r.label, r.duration_s, 16.0, (64, 64),
                             clip_seed(0, r.clip_id))
            with torch.no_grad():
                if mode in ("oracle", "partner", "textonly"):
                    ctx, mask = net.text_context([r.label], n)
                    if mode != "textonly":
                        # the checkpoint's stage-1 event context (one token, or the six of event_context "six")
                        et = net.event_context(torch.tensor([_frame_codes(cfg, src, n)]))
                        ctx = torch.cat([ctx, et], 2)
                        mask = torch.cat([mask, torch.ones(1, n, et.shape[2], dtype=torch.bool)], 2)
                elif mode in ("sonly", "spartner"):  # the mapper's frame token s_f alone (no w_k, no g)
                    _, _, s = net.context("audio", [r.label], T.prepare_audio(req, cfg.sample_rate)[None], n, cfg.fps)
                    ctx, mask = s[:, :, None], torch.ones(1, n, 1, dtype=torch.bool)
                else:
                    audio = T.prepare_audio(req, cfg.sample_rate)[None]
                    kind = "text_audio" if mode in ("ta", "tapartner") else "audio"
                    ctx, mask, _ = net.context(kind, [r.label], audio, n, cfg.fps)
                x = sample(net, ctx, mask, n, torch.Generator().manual_seed(int(req.seed)), cfg.sample_steps,
                           cfg.guidance)
            path = out / f"{mode}_{r.clip_id}.mp4"
            write_mp4(str(path), T.to_request_frames(x, cfg.fps, 16.0, r.duration_s, (64, 64)), 16)
            jobs.append((str(path), r.audio))
        res = av_align_many(jobs, 2)
        scores[mode] = {r.clip_id: float(s.score) for r, s in zip(recs, res) if s.score is not None}
        print(f"{mode}: mean AV-Align {np.mean(list(scores[mode].values())):.3f} over {len(scores[mode])} clips "
              f"({time.time() - t0:.0f} s)", flush=True)
    (out / "scores.json").write_text(json.dumps(scores, indent=1))
    for a, b in PAIRS:
        if a in scores and b in scores:
            d = paired_difference(scores[a], scores[b])
            print(f"{a} - {b}: {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] over {d['n']} clips")
    return scores


def tokens(ckpt: str) -> dict[str, float]:
    from foleybench import media
    from foleybench.api import A2VRequest
    from foleybench.baselines import tempotokens as T
    from foleybench.baselines.tempotokens_tiny import EVENT_REACH

    cfg, net = _net(ckpt)
    none_code = 2 * EVENT_REACH + 1
    with torch.no_grad():
        E = net.text.event_tokens(torch.arange(none_code + 1)[None])[0, :, 0]  # [codes, D]
        hit = total = 0
        per_code = np.zeros((none_code + 1, 2))           # per true code: [right, frames]
        cos, jump_ev, jump_far, norms, tok_cos, tok_rel = [], [], [], [], [], []
        for r in _test_clips():
            n = T.model_frames(r.duration_s, cfg.fps)
            a = media.read_audio(r.audio_source, sample_rate=16000)
            req = A2VRequest(r.clip_id, a.samples, 16000, r.label, r.duration_s, 16.0, (64, 64), 0)
            ctx, _, s = net.context("audio", [r.label], T.prepare_audio(req, 16000)[None], n, cfg.fps)
            s = s[0]
            codes = torch.tensor(_frame_codes(cfg, r, n))
            # every context token against its stage-1 counterpart of the true codes (s_f, w1..w8, g
            # for event_context "six"; s_f alone for "frame")
            ev = net.event_context(codes[None])[0]
            k = ev.shape[1]
            tok_cos.append(torch.nn.functional.cosine_similarity(ctx[0, :, :k], ev, dim=-1))
            tok_rel.append((ctx[0, :, :k] - ev).norm(dim=-1) / ev.norm(dim=-1))
            right = torch.cdist(s, E).argmin(1) == codes
            hit += int(right.sum())
            np.add.at(per_code, (codes.numpy(), 0), right.numpy().astype(float))
            np.add.at(per_code, (codes.numpy(), 1), 1.0)
            total += n
            cos.append(torch.nn.functional.cosine_similarity(s, E[codes], dim=-1))
            jump = (s[1:] - s[:-1]).norm(dim=1)
            jump_ev += jump[codes[1:] == EVENT_REACH].tolist()
            jump_far += jump[codes[1:] == none_code].tolist()
            norms.append(s.norm(dim=1))
    out = {"nearest_token_is_true_code": hit / total, "mean_cosine_to_true_code_token": float(torch.cat(cos).mean()),
           "token_change_at_event_frames": float(np.mean(jump_ev)),
           "token_change_far_from_events": float(np.mean(jump_far)),
           "mapper_token_norm": float(torch.cat(norms).mean()), "event_token_norm": float(E.norm(dim=1).mean()),
           # nearest = true code per true code (offsets -2..2 frames, then "no event near")
           "nearest_is_true_by_code": [round(float(r / max(n, 1)), 3) for r, n in per_code],
           "frames_by_code": [int(n) for _, n in per_code],
           # per context token (s_f, then w1, w2, w4, w8, g with event_context "six"): mean cosine and
           # mean |token - stage-1 token| / |stage-1 token| against the stage-1 event context
           "context_token_cosine": [round(float(v), 3) for v in torch.cat(tok_cos).mean(0)],
           "context_token_relative_error": [round(float(v), 3) for v in torch.cat(tok_rel).mean(0)]}
    print(json.dumps(out, indent=1))
    return out


def train_variant(out: str, sets: list[str]) -> dict:
    import dataclasses

    from foleybench import family as fams
    from foleybench import train as T

    fam, _ = fams.split_name("tempotokens.tiny")
    base = fam.configs["tiny"]
    over = {}
    for kv in sets:
        k, v = kv.split("=", 1)
        if not hasattr(base, k):
            raise SystemExit(f"--set {kv}: TempoTinyConfig has no field {k!r}")
        old = getattr(base, k)
        if isinstance(old, bool):
            over[k] = v.lower() in ("1", "true", "yes")
        elif isinstance(old, tuple):
            over[k] = tuple(int(x) for x in v.split(",") if x)
        else:
            over[k] = type(old)(v)
    cfg = dataclasses.replace(base, **over)
    fam.configs["tiny"] = cfg  # this process only: foleybench.train reads the config by name
    print(f"overrides {over}", flush=True)
    info = T.train("tempotokens.tiny", T.data_for("tempotokens.tiny"), out, progress=False)
    print(json.dumps(info, indent=1))
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["generate", "tokens", "train"])
    ap.add_argument("checkpoint", help="the checkpoint to read (generate, tokens) or write (train)")
    ap.add_argument("--set", action="append", default=[], help="train: recipe override FIELD=VALUE")
    ap.add_argument("--clips", type=int, default=27)
    ap.add_argument("--modes", default="oracle,partner,audio,apartner")
    ap.add_argument("--out", default="runs/tempotokens-diag")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == "train":
        train_variant(args.checkpoint, args.set)
    elif args.what == "generate":
        generate(args.checkpoint, args.clips, args.modes.split(","), Path(args.out))
    else:
        tokens(args.checkpoint)


if __name__ == "__main__":
    main()
