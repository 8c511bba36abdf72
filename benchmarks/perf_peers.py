"""Our VGGish and PANNs embedders against their reference packages, same clips, same weights.

Peers (test-only dependencies, pinned in requirements.lock): torchvggish 0.2 (log-mel
examples with ``vggish_input.waveform_to_examples``, then the VGG network, no PCA) and
panns-inference 0.1.1 (``Cnn14`` at 16 kHz, waveform in). Both sides load one shared
random state_dict (ours strictly, as a custom checkpoint), get the same ``N_CLIPS``
float32 clips of 8 s at 16 kHz held in memory (decoding is not timed on either side)
and run on CPU under torch.inference_mode / no_grad at the process's thread count.
Ours goes through ``embed_inputs`` (batching, preprocessing, precision policy; for PANNs
the default fast CPU route of metrics/embedders/panns.py, batch norm folded and per-conv
layouts, within 1e-6 relative of the peer rather than bit-identical); the
peer is called as its README does, clip by clip for torchvggish (its input function
takes one waveform) and as one batch for panns-inference.

Figures: ``embedding.vggish.ratio_vs_torchvggish`` and
``embedding.panns.ratio_vs_panns_inference`` = peer seconds / our seconds (medians of
interleaved repeats after a warm-up); goal >= 1.5 each. Skipped, with a message, when
a peer package is not installed.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
N_CLIPS = 8
SECONDS = 8.0


def _peers():
    sys.path.insert(0, str(ROOT))
    try:
        from tests.peers import panns_models, torchvggish_modules
    finally:
        sys.path.remove(str(ROOT))
    return torchvggish_modules(), panns_models()


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def run(repeats: int = 3, panns_too: bool = True) -> dict[str, float]:
    from foleybench.metrics.embedders import panns, vggish

    tvmods, pm = _peers()
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, int(SECONDS * 16000)).astype(np.float32) for _ in range(N_CLIPS)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        if tvmods is None:
            print("  torchvggish not installed: VGGish ratio skipped")
        else:
            tv, vi = tvmods
            torch.manual_seed(1)
            peer = tv._vgg(postprocess=False).eval()
            ckpt = Path(d) / "vggish-peer.pth"
            torch.save(peer.state_dict(), ckpt)
            peer.embeddings = torch.nn.Sequential(*list(peer.embeddings.children())[:-1])
            ours = vggish.build(mode="pretrained", checkpoint=str(ckpt))

            def peer_vggish() -> list[np.ndarray]:
                res = []
                with torch.no_grad():
                    for x in clips:
                        ex = vi.waveform_to_examples(x.astype(np.float64), 16000, return_tensor=False)
                        res.append(peer(torch.from_numpy(ex)[:, None].float()).numpy())
                return res

            t = _interleaved({"ours": lambda: ours.embed_inputs(clips), "peer": peer_vggish}, repeats)
            a, b = ours.embed_inputs(clips), peer_vggish()
            err = max(float(np.abs(x - y).max() / (np.abs(y).max() + 1e-12)) for x, y in zip(a, b))
            out.update({"embedding.vggish.ours_s": t["ours"], "embedding.vggish.torchvggish_s": t["peer"],
                        "embedding.vggish.ratio_vs_torchvggish": t["peer"] / t["ours"],
                        "embedding.vggish.max_rel_diff_vs_torchvggish": err})
            print(f"  vggish: ours {t['ours']:.2f} s, torchvggish {t['peer']:.2f} s, rel diff {err:.1e}")
        if not panns_too:
            pass
        elif pm is None:
            print("  panns_inference not installed: PANNs ratio skipped")
        else:
            torch.manual_seed(2)
            peer_p = pm.Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50,
                              fmax=8000, classes_num=527).eval()
            ckpt = Path(d) / "Cnn14_16k_peer.pth"
            torch.save({"model": peer_p.state_dict(), "iteration": 0}, ckpt)
            ours_p = panns.build(mode="pretrained", checkpoint=str(ckpt))
            batch = torch.from_numpy(np.stack(clips))

            def peer_panns() -> np.ndarray:
                with torch.no_grad():
                    return peer_p(batch)["embedding"].numpy()

            t = _interleaved({"ours": lambda: ours_p.embed_inputs(clips), "peer": peer_panns}, repeats)
            a2 = np.concatenate(ours_p.embed_inputs(clips))
            b2 = peer_panns()
            err = float(np.abs(a2 - b2).max() / (np.abs(b2).max() + 1e-12))
            out.update({"embedding.panns.ours_s": t["ours"], "embedding.panns.panns_inference_s": t["peer"],
                        "embedding.panns.ratio_vs_panns_inference": t["peer"] / t["ours"],
                        "embedding.panns.max_rel_diff_vs_panns_inference": err})
            print(f"  panns: ours {t['ours']:.2f} s, panns-inference {t['peer']:.2f} s, rel diff {err:.1e}")
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
