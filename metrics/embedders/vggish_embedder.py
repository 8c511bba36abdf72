"""VGGish's embedder without its network: what a cached re-score needs (no torch import).

The weights record, the front end's constants, the :class:`VGGish` embedder (name,
version, rate, dim, preprocess id) and :func:`build`. The network (``VGGishNet``) and the
log-mel front end live in :mod:`foleybench.metrics.embedders.vggish` (which re-exports
everything here), imported on the first cache miss. See that module for the method.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foleybench import weights as W
from foleybench.device import full_precision
from foleybench.metrics.embedders.audio_base import AudioEmbedder
from foleybench.metrics.embedders.base import Deferred, build_net

if TYPE_CHECKING:
    import torch

RECORD = W.register(W.WeightRecord(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    sha256=None,
    license="Apache-2.0 (tensorflow/models VGGish; torchvggish port)",
    paper="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
    note=("upstream publishes no full sha256; the file name carries the torch.hub sha256 prefix "
          "10086976, which decides pretrained vs custom. A third-party record gives sha256 "
          "10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b (288,567,937 bytes), "
          "not verified here"),
    sha256_prefix="10086976",
))

SAMPLE_RATE = 16000
WIN = 400           # 25 ms at 16 kHz
HOP = 160           # 10 ms
N_FFT = 512         # next power of two >= WIN, as upstream
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames, hop = window (no overlap)


class VGGish(AudioEmbedder):
    name = "vggish"
    rate = SAMPLE_RATE
    dim = 128
    frames_level = True
    # one full example needs 400 + 95 * 160 samples
    min_seconds = (WIN + (EXAMPLE_FRAMES - 1) * HOP) / SAMPLE_RATE

    # Long inputs go through in runs of this many examples (memory bounded by the run, not
    # the input: 10 minutes took 2.8 GB whole). Examples do not overlap, so each run's
    # examples are exactly the full pass's; a run takes 240 samples past its last example.
    chunk_examples: int = 32

    streams_long = True  # a long file is read run by run, never held whole

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` -> ``[B, E, 128]`` (E = complete 0.96 s examples)."""
        span = EXAMPLE_FRAMES * HOP * self.chunk_examples
        if x.shape[-1] <= span + WIN:
            return self._embed_whole(x)
        import torch

        return torch.stack([self._embed_runs(lambda lo, hi, row=row: row[None, lo:hi], x.shape[-1])[0] for row in x])

    def _embed_long(self, x: Any) -> torch.Tensor:
        """A LongAudio in the same runs as :meth:`_embed`, each read when it is needed."""
        get = self._window_getter(x)
        if len(x) <= EXAMPLE_FRAMES * HOP * self.chunk_examples + WIN:
            return self._embed_whole(get(0, len(x)))
        return self._embed_runs(get, len(x))

    def _embed_runs(self, get: Any, n: int) -> torch.Tensor:
        """``[1, E, 128]`` of one signal of ``n`` samples read as ``get(lo, hi)`` ``[1, hi - lo]``,
        ``chunk_examples`` examples per run."""
        import torch

        span = EXAMPLE_FRAMES * HOP * self.chunk_examples
        need = WIN + (EXAMPLE_FRAMES - 1) * HOP  # samples of one complete example
        # A run that would start less than one example before the end holds none: skipped
        # (the network cannot take an empty batch; a 31 s clip used to fail here).
        parts = [self._embed_whole(get(s, s + span + WIN - HOP)) for s in range(0, n - need + 1, span)]
        return torch.cat(parts, dim=1)

    def _embed_whole(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        from foleybench.metrics.embedders.vggish import log_mel_examples

        with full_precision(str(self.device)):  # front end in float64, always
            ex = log_mel_examples(x)
        b, e = ex.shape[:2]
        y = self.net(ex.reshape(b * e, 1, EXAMPLE_FRAMES, N_MELS).to(torch.float32))
        return y.reshape(b, e, -1)


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu",
          seed: int = 0, verify: bool = True) -> VGGish:
    """VGGish embedder (torchvggish state_dict, loaded strictly). A ``checkpoint`` whose
    sha256 lacks the upstream prefix is labelled custom; ``verify=False`` skips the check
    of the weights directory's file (tests only)."""
    b = build_net("vggish", Deferred("foleybench.metrics.embedders.vggish:VGGishNet"), mode=mode,
                  checkpoint=checkpoint, seed=seed, verify=verify,
                  proxy_init=W.he_normal_init, lazy=True)
    return VGGish(b.net, weights=b.weights, checkpoint_sha256=b.sha256, device=device)
