"""``melstat``: a weight-free log-mel statistics embedder (the harness's own).

Not a paper metric: it needs no checkpoint, so ``fd_melstat`` works on a fresh machine
and gives a deterministic, non-learned sanity distance next to the proxy-weight FDs.
Each 0.25 s frame of 16 kHz audio -> the mean log-mel energy over its 64 bands
(25 ms Hann window, 10 ms hop, 64 mel bands 50-8000 Hz, log(mel + 1e-6)); frames are
the samples of the FD statistics (frames_level=True), D = 64.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from foleybench import media
from foleybench.api import Embedder, InputError, ScoreContext


class MelStat(Embedder):
    name = "melstat"
    version = "1"
    kind = "audio"
    rate = 16000
    dim = 64
    frames_level = True
    frame_s = 0.25

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.weights = "none"  # deterministic transform, no weights
        self.checkpoint_sha256 = None
        self._mel: Any = None

    @property
    def mel(self) -> Any:
        """torchaudio's MelSpectrogram, made on first use (torch and torchaudio are
        imported then: a fully cached re-score never embeds, so never imports them)."""
        if self._mel is None:
            import torchaudio

            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=self.rate, n_fft=400, win_length=400, hop_length=160, f_min=50.0,
                f_max=8000.0, n_mels=64, power=2.0)
        return self._mel

    @property
    def is_proxy(self) -> bool:
        return False

    def preprocess_id(self) -> str:
        return f"{self.rate}Hz|{media.RESAMPLER}|mono|dc|frame={self.frame_s}s"

    def load_input(self, path: str, ctx: ScoreContext) -> Any:
        """float32 ``[N]``; a long file (foleybench.media_long) as a LongAudio, read in
        runs of frames when embedded (:meth:`_embed_stream`)."""
        from foleybench.media_long import load_preprocessed

        wave = load_preprocessed(path, self.rate, ctx.clip_seconds, lazy=True)
        if wave.size < int(self.frame_s * self.rate):
            raise InputError(path, f"audio shorter than one {self.frame_s} s frame")
        return wave

    HOP, N_FFT = 160, 400
    RUN_FRAMES = 240  # embedding frames (60 s) per run of a long input

    def embed_inputs(self, inputs: Sequence[Any]) -> list[np.ndarray]:
        import torch

        out = []
        hop = int(self.frame_s * self.rate / self.HOP)  # mel frames per embedding frame
        with torch.inference_mode():
            for wave in inputs:
                if type(wave).__name__ == "LongAudio":
                    out.append(self._embed_stream(wave))
                    continue
                logmel = torch.log(self.mel(torch.as_tensor(wave, dtype=torch.float32)) + 1e-6)  # [64, T]
                n = logmel.shape[1] // hop
                frames = logmel[:, : n * hop].reshape(64, n, hop).mean(dim=2).T  # [n, 64]
                out.append(frames.numpy().astype(np.float32))
        return out

    def _embed_stream(self, wave: Any) -> np.ndarray:
        """The frames of a LongAudio, :data:`RUN_FRAMES` embedding frames per run: each run's
        STFT frames from their own samples (reflected past the signal's ends, as the centred
        STFT pads), so memory is one run whatever the length. Equal to the whole-signal route
        to float32 rounding (tests/test_long_inputs.py)."""
        import torch

        from foleybench.metrics.embedders.audio_base import reflect_window

        n = len(wave)
        hop = int(self.frame_s * self.rate / self.HOP)
        n_out = (n // self.HOP + 1) // hop
        spec_mod, mel_scale = self.mel.spectrogram, self.mel.mel_scale
        reader = wave.reader()
        out = np.empty((n_out, 64), np.float32)
        for e0 in range(0, n_out, self.RUN_FRAMES):
            e1 = min(n_out, e0 + self.RUN_FRAMES)
            t0, t1 = e0 * hop, e1 * hop  # STFT frames [t0, t1)
            seg = reflect_window(reader.get, t0 * self.HOP - self.N_FFT // 2, (t1 - 1) * self.HOP + self.N_FFT // 2, n)
            st = torch.stft(torch.from_numpy(np.ascontiguousarray(seg)), n_fft=self.N_FFT, hop_length=self.HOP,
                            win_length=self.N_FFT, window=spec_mod.window, center=False, return_complex=True)
            logmel = torch.log(mel_scale(st.abs().pow(2.0)) + 1e-6)             # [64, t1 - t0]
            out[e0:e1] = logmel.reshape(64, e1 - e0, hop).mean(dim=2).T.numpy()
        return out


def build(mode: str = "pretrained", checkpoint: str | None = None, device: str = "cpu", seed: int = 0,
          **_: Any) -> MelStat:
    """melstat has no weights: ``mode`` and ``seed`` do not change it."""
    return MelStat(device="cpu")
