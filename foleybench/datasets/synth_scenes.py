"""Per-class renderers of the synthfoley dataset: pictures and sounds with known events.

Every renderer takes ``(rng, n_frames, size, fps, sample_rate)`` and returns
``(frames float32 [T, H, W, 3] in [0, 1], audio float64 [N], event frame indices, label)``
with ``N = T * sample_rate / fps`` samples. An event at frame ``k`` is shown in frame ``k``
and sounds at ``k / fps`` seconds.

Why events sit on frames and motion is shaped the way it is: AV-Align (METRICS.md) puts a
video peak at ``i / fps`` when the mean Farneback flow between frames ``i-1`` and ``i`` is a
strict local maximum >= 0.1. Impacts are therefore drawn with a fast approach that ends in
the event frame and a slower retreat (as real strikes do), so the flow curve peaks exactly
at the event frame; the pendulum crosses its centre half a frame before its tick frame, so
the symmetric swing still gives one strict maximum there. Event phases and tempi are drawn
per clip, so one clip's sound rarely lines up with another clip's picture.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.signal import butter, sosfilt

Scene = tuple[np.ndarray, np.ndarray, list[int], str]
Renderer = Callable[[np.random.Generator, int, int, float, int], Scene]


# --------------------------------------------------------------------------- drawing
class Canvas:
    """T frames of size x size RGB in [0, 1]; shapes are drawn anti-aliased (coverage), so
    sub-pixel motion changes pixels smoothly and optical flow follows it."""

    def __init__(self, n_frames: int, size: int, background: np.ndarray):
        self.size = size
        self.frames = np.empty((n_frames, size, size, 3), np.float32)
        self.frames[:] = background
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def _blend(self, t: int, alpha: np.ndarray, color: Sequence[float]) -> None:
        a = alpha[..., None]
        self.frames[t] += a * (np.asarray(color, np.float32) - self.frames[t])

    def disc(self, t: int, cx: float, cy: float, r: float, color: Sequence[float]) -> None:
        d = np.hypot(self.xx - cx, self.yy - cy)
        self._blend(t, np.clip(r + 0.5 - d, 0, 1), color)

    def ellipse(self, t: int, cx: float, cy: float, rx: float, ry: float, color: Sequence[float]) -> None:
        d = np.hypot((self.xx - cx) / rx, (self.yy - cy) / ry)
        self._blend(t, np.clip((1 - d) * min(rx, ry) + 0.5, 0, 1), color)

    def rect(self, t: int, x0: float, y0: float, x1: float, y1: float, color: Sequence[float]) -> None:
        ax = np.clip(np.minimum(self.xx - x0, x1 - self.xx) + 0.5, 0, 1)
        ay = np.clip(np.minimum(self.yy - y0, y1 - self.yy) + 0.5, 0, 1)
        self._blend(t, ax * ay, color)

    def segment(self, t: int, p0: tuple[float, float], p1: tuple[float, float], w: float,
                color: Sequence[float]) -> None:
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        u = np.clip(((self.xx - x0) * dx + (self.yy - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        d = np.hypot(self.xx - (x0 + u * dx), self.yy - (y0 + u * dy))
        self._blend(t, np.clip(w + 0.5 - d, 0, 1), color)


def _color(rng: np.random.Generator, lo: float = 0.55, hi: float = 1.0) -> np.ndarray:
    return rng.uniform(lo, hi, 3).astype(np.float32)


# --------------------------------------------------------------------------- timing
def event_frames(rng: np.random.Generator, n_frames: int, first: tuple[int, int],
                 gap: tuple[int, int]) -> list[int]:
    """Event frame indices: first in [first], then gaps drawn in [gap] (inclusive).

    Kept within 2 .. T-2 because AV-Align cannot place a video peak on the first or last
    frame (a strict maximum needs both neighbours)."""
    k, out = int(rng.integers(first[0], first[1] + 1)), []
    while k <= n_frames - 2:
        out.append(k)
        k += int(rng.integers(gap[0], gap[1] + 1))
    return out


def contact_profile(events: Sequence[int], n_frames: int, lead: int, retreat: float = 0.7) -> np.ndarray:
    """Opening p[T] in [0, 1] of a striker (0 = touching) with contacts at ``events``.

    Between contacts a gap g frames long is split: the first ``retreat`` of it opens with a
    decelerating ease (1 - (1-x)^3, speed 3/r per gap at the start), the rest closes
    accelerating (1 - u^2, speed 2/(1-r) at the end). So the approach into a contact is the
    largest per-frame displacement around it, and displacements fall off on both sides,
    which makes the contact frame a strict flow maximum. The first contact is preceded by
    the approach part of a ``lead``-frame gap from fully open; after the last one the
    striker opens and stays open."""
    p = np.ones(n_frames)
    if not events:
        return p
    contacts = [events[0] - lead, *events]          # a virtual contact before the first one
    for t in range(n_frames):
        j = int(np.searchsorted(contacts, t, side="right")) - 1
        if j < 0:
            continue
        last = j + 1 >= len(contacts)
        g = lead if last else contacts[j + 1] - contacts[j]
        s = (t - contacts[j]) / g
        if j == 0 and s < retreat:                   # fully open until the first approach
            continue
        if last or s < retreat:
            x = 1 - min(s / retreat, 1.0)
            p[t] = 1 - x ** 3
        else:
            u = (s - retreat) / (1 - retreat)
            p[t] = 1 - u * u
    return p


# --------------------------------------------------------------------------- sounds
def place(buf: np.ndarray, t_s: float, sr: int, sig: np.ndarray) -> None:
    """Add ``sig`` [n] into ``buf`` [N] starting at ``t_s`` seconds (truncated at the end)."""
    i = int(round(t_s * sr))
    n = min(len(sig), len(buf) - i)
    if n > 0:
        buf[i:i + n] += sig[:n]


def _fade(n: int) -> np.ndarray:
    """Raised-cosine fade over the last quarter of n samples: a tail cut off while still
    audible is a broadband click that onset detectors report as an event."""
    w = np.ones(n)
    m = n // 4
    w[n - m:] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, m))
    return w


def decaying_modes(sr: int, freqs: Sequence[float], amps: Sequence[float], tau: float,
                   dur: float, glide: float = 0.0) -> np.ndarray:
    """Sum of exponentially decaying sines (tau seconds), pitch falling by ``glide`` (ratio)."""
    t = np.arange(int(dur * sr)) / sr
    bend = 1 + glide * np.exp(-t / 0.03)               # a struck membrane starts sharp
    out = sum(a * np.sin(2 * np.pi * f * np.cumsum(bend) / sr) for f, a in zip(freqs, amps))
    return out * np.exp(-t / tau) * np.minimum(t / 5e-4, 1) * _fade(len(t))   # 0.5 ms attack: crisp


def noise_burst(rng: np.random.Generator, sr: int, band: tuple[float, float], tau: float,
                dur: float) -> np.ndarray:
    """Band-passed white noise (Hz) decaying with ``tau`` s, normalised to peak 1."""
    n = int(dur * sr)
    hi = min(band[1], 0.45 * sr)
    x = sosfilt(butter(2, (band[0], hi), "bandpass", fs=sr, output="sos"), rng.standard_normal(n))
    x *= np.exp(-np.arange(n) / sr / tau) * np.minimum(np.arange(n) / sr / 5e-4, 1) * _fade(n)
    return x / (np.abs(x).max() + 1e-12)


def filtered_noise(rng: np.random.Generator, sr: int, n: int, band: tuple[float, float]) -> np.ndarray:
    """Stationary band-passed noise [n], unit RMS."""
    x = sosfilt(butter(2, (band[0], min(band[1], 0.45 * sr)), "bandpass", fs=sr, output="sos"),
                rng.standard_normal(n + sr // 10))[sr // 10:]    # drop the filter's start-up
    return x / (x.std() + 1e-12)


# --------------------------------------------------------------------------- scenes
def mix(*sigs: np.ndarray) -> np.ndarray:
    """Sum of 1-D signals of different lengths (zero-padded to the longest)."""
    out = np.zeros(max(len(x) for x in sigs))
    for x in sigs:
        out[: len(x)] += x
    return out


def _thud(rng: np.random.Generator, sr: int, f0: float) -> np.ndarray:
    # low body (floor and ball) plus a short contact click that makes the onset crisp
    return mix(decaying_modes(sr, (f0, 2.3 * f0), (1.0, 0.4), tau=0.07, dur=0.35, glide=0.5),
               0.35 * noise_burst(rng, sr, (300, 3000), 0.004, 0.03))


def bouncing_ball(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """A ball dropped from rest bounces with restitution e; a thud at each floor contact,
    louder for faster impacts. Bounce durations shrink by e (constant gravity) until the
    arc is under 4 frames and the ball rests."""
    R, floor = 0.11 * S, 0.88 * S
    c = Canvas(T, S, np.array([0.14, 0.16, 0.22]))
    k1, e = int(rng.integers(4, 10)), rng.uniform(0.68, 0.85)
    drop = (floor - R - 0.06 * S) * rng.uniform(0.75, 1.0)     # px fallen before the first contact
    g = 2 * drop / k1 ** 2                                       # px / frame^2
    t = np.arange(T, dtype=float)
    height = np.zeros(T)
    height[: k1 + 1] = drop * (1 - (t[: min(k1 + 1, T)] / k1) ** 2)[: k1 + 1]
    events, speeds, k, d = [k1], [g * k1], k1, 2 * k1 * e
    while round(d) >= 4 and k < T - 1:
        dur = int(round(d))
        s = (t[k: k + dur + 1] - k) / dur
        height[k: k + dur + 1] = 2 * g * (dur / 2) ** 2 * s * (1 - s)    # 4 h s (1-s), h = g (dur/2)^2 / 2
        k += dur
        if k <= T - 2:
            events.append(k)
            speeds.append(g * dur / 2)
        d *= e
    events = [k for k in events if 2 <= k <= T - 2]
    x0, vx, col = rng.uniform(0.3, 0.7) * S, rng.uniform(-0.25, 0.25), _color(rng)
    audio, f0 = np.zeros(int(round(T * sr / fps))), rng.uniform(70, 130)
    for i in range(T):
        c.rect(i, -1, floor, S + 1, S + 1, (0.45, 0.38, 0.3))
        c.disc(i, x0 + vx * i, floor - R - height[i], R, col)
    for k, v in zip(events, speeds):
        place(audio, k / fps, sr, 0.75 * min(v / speeds[0], 1.0) * _thud(rng, sr, f0))
    return c.frames, audio, events, "a ball bouncing on the floor"


def clapping(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """Two hands close fast and meet at the centre (a clap burst at each contact), then open
    more slowly; tempo and phase drawn per clip, with +-1 frame human jitter."""
    c = Canvas(T, S, np.array([0.25, 0.22, 0.3]))
    g0 = int(rng.integers(5, 10))
    events = event_frames(rng, T, (3, 2 + g0), (g0 - 1, g0 + 1))
    p = contact_profile(events, T, lead=g0)
    skin = np.array([0.93, 0.72, 0.55]) * rng.uniform(0.7, 1.0)
    w, h, cx, cy, travel = 0.16 * S, 0.34 * S, S / 2, rng.uniform(0.42, 0.58) * S, 0.32 * S
    for i in range(T):
        half = 0.5 + p[i] * travel / 2                          # half the gap between the palms
        c.rect(i, cx - half - w, cy - h / 2, cx - half, cy + h / 2, skin)
        c.rect(i, cx + half, cy - h / 2, cx + half + w, cy + h / 2, skin)
    audio = np.zeros(int(round(T * sr / fps)))
    lo, tau = rng.uniform(600, 1200), rng.uniform(0.012, 0.025)
    for k in events:
        place(audio, k / fps, sr, rng.uniform(0.5, 0.8) * noise_burst(rng, sr, (lo, 4 * lo), tau, 0.15))
    return c.frames, audio, events, "hands clapping"


def metronome(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """An inverted pendulum swings sinusoidally and ticks as it passes the centre.

    The centre crossing falls half a frame before the tick frame k, so the frame pair
    (k-1, k) straddles the fastest point symmetrically and is the strict flow maximum."""
    c = Canvas(T, S, np.array([0.2, 0.18, 0.16]))
    half = int(rng.integers(5, 11))                              # frames per half period
    c0 = int(rng.integers(1, half + 1)) - 0.5                    # first centre crossing (frames)
    amp = rng.uniform(0.3, 0.45)                                 # radians
    events = [int(x + 0.5) for x in np.arange(c0, T, half) if 2 <= x + 0.5 <= T - 2]
    pivot, arm = (S / 2, 0.86 * S), 0.62 * S
    col = _color(rng)
    for i in range(T):
        sn = np.sin(np.pi * (i - c0) / half)
        th = amp * np.sign(sn) * np.abs(sn) ** 0.6       # snappier than a sine: see below
        tip = (pivot[0] + arm * np.sin(th), pivot[1] - arm * np.cos(th))
        c.rect(i, 0.3 * S, 0.84 * S, 0.7 * S, S, (0.5, 0.32, 0.18))          # the box
        c.segment(i, pivot, tip, 1.3, (0.85, 0.85, 0.8))
        c.disc(i, pivot[0] + 0.75 * arm * np.sin(th), pivot[1] - 0.75 * arm * np.cos(th), 0.09 * S, col)
    audio = np.zeros(int(round(T * sr / fps)))
    f = rng.uniform(1500, 2500)
    for j, k in enumerate(events):
        ff = f * (1.0 if j % 2 == 0 else 0.8)                    # tick / tock
        place(audio, k / fps, sr, mix(0.6 * decaying_modes(sr, (ff, 1.6 * ff), (1, 0.5), 0.01, 0.06),
                                      0.3 * noise_burst(rng, sr, (2000, 7000), 0.002, 0.02)))
    return c.frames, audio, events, "a metronome ticking"


def drum_hit(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """A stick swings down onto a drum head (fast down, slower rebound); a decaying membrane
    tone with a stick click at each hit."""
    c = Canvas(T, S, np.array([0.12, 0.12, 0.15]))
    # a thin stick moving >~10 px in one frame defeats Farneback, so strokes span >= 2 frames
    events = event_frames(rng, T, (3, 8), (6, 12))
    p = contact_profile(events, T, lead=int(rng.integers(7, 10)))
    cx, head_y = rng.uniform(0.4, 0.55) * S, 0.66 * S
    pivot = (cx + 0.42 * S, 0.3 * S)
    tip0 = (cx + 0.02 * S, head_y - 0.07 * S)     # touches the top rim of the head
    th0 = np.arctan2(tip0[1] - pivot[1], tip0[0] - pivot[0])
    length, swing = float(np.hypot(tip0[0] - pivot[0], tip0[1] - pivot[1])), rng.uniform(0.35, 0.5)
    shell = _color(rng, 0.3, 0.9)
    for i in range(T):
        c.rect(i, cx - 0.3 * S, head_y, cx + 0.3 * S, 0.92 * S, shell)
        c.ellipse(i, cx, head_y, 0.3 * S, 0.07 * S, (0.9, 0.88, 0.8))
        th = th0 + p[i] * swing                                  # the tip rises as the angle grows (y is down)
        c.segment(i, pivot, (pivot[0] + length * np.cos(th), pivot[1] + length * np.sin(th)), 2.6,
                  (0.8, 0.6, 0.35))
        c.disc(i, pivot[0], pivot[1], 0.07 * S, (0.93, 0.72, 0.55))
    audio = np.zeros(int(round(T * sr / fps)))
    f0 = rng.uniform(80, 160)
    for k in events:
        hit = mix(decaying_modes(sr, (f0, 1.59 * f0, 2.14 * f0), (1, 0.5, 0.3), 0.18, 0.6, 0.3),
                  0.4 * noise_burst(rng, sr, (500, 5000), 0.003, 0.02))
        place(audio, k / fps, sr, rng.uniform(0.45, 0.7) * hit)
    return c.frames, audio, events, "a stick hitting a drum"


def door_knock(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """A fist knocks on a door in groups of 2-3 quick knocks (4 frames apart), a woody
    knock at each contact."""
    c = Canvas(T, S, np.array([0.7, 0.68, 0.6]))
    events, k = [], int(rng.integers(3, 8))
    while k <= T - 2:
        for _ in range(int(rng.integers(2, 4))):
            if k <= T - 2:
                events.append(k)
            k += 4                                    # ~4 knocks per second
        k += int(rng.integers(5, 10))
    p = contact_profile(events, T, lead=4)
    door_x, r, y = 0.64 * S, 0.1 * S, rng.uniform(0.35, 0.55) * S
    wood = np.array([0.5, 0.3, 0.15]) * rng.uniform(0.8, 1.2)
    for i in range(T):
        c.rect(i, door_x, -1, S + 1, S + 1, wood)
        c.disc(i, door_x + 0.18 * S, 0.6 * S, 0.03 * S, (0.85, 0.75, 0.3))        # the handle
        x = door_x - r - p[i] * 0.28 * S
        c.segment(i, (x - 0.05 * S, y + 0.05 * S), (x - 0.6 * S, y + 0.45 * S), 0.07 * S, (0.3, 0.35, 0.6))
        c.disc(i, x, y, r, (0.93, 0.72, 0.55))
    audio = np.zeros(int(round(T * sr / fps)))
    f0 = rng.uniform(150, 260)
    for k in events:
        knock = mix(decaying_modes(sr, (f0, 2.7 * f0, 4.1 * f0), (1, 0.6, 0.3), 0.035, 0.2),
                    0.5 * noise_burst(rng, sr, (400, 3000), 0.004, 0.03))
        place(audio, k / fps, sr, rng.uniform(0.5, 0.75) * knock)
    return c.frames, audio, events, "knocking on a door"


def car_passing(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """A car drives across the frame, growing as it nears the camera and shrinking as it
    leaves; the engine (harmonic buzz with Doppler shift) is as loud as the car is large.
    No discrete events: this is the continuous-source class (M&W's "car chase")."""
    c = Canvas(T, S, np.array([0.55, 0.7, 0.9]))
    direction = 1.0 if rng.random() < 0.5 else -1.0
    tc, tau = rng.uniform(0.4, 0.6) * T, rng.uniform(0.15, 0.25) * T
    t = np.arange(T, dtype=float)
    scale = 1 / np.sqrt(1 + ((t - tc) / tau) ** 2)               # 1 / distance, 1 at closest
    x = S / 2 + direction * (t - tc) * 1.3 * S / T
    body = _color(rng, 0.2, 0.9)
    horizon = 0.45 * S
    for i in range(T):
        c.rect(i, -1, horizon, S + 1, S + 1, (0.35, 0.35, 0.37))                # the road
        L = 0.55 * S * scale[i]
        yb = horizon + (0.9 * S - horizon) * scale[i]                           # lower when nearer
        c.rect(i, x[i] - L / 2, yb - 0.32 * L, x[i] + L / 2, yb - 0.08 * L, body)
        c.rect(i, x[i] - 0.25 * L, yb - 0.5 * L, x[i] + 0.2 * L, yb - 0.3 * L, 0.8 * body)
        for wx in (-0.3, 0.3):
            c.disc(i, x[i] + wx * L, yb - 0.08 * L, 0.1 * L, (0.05, 0.05, 0.05))
    n = int(round(T * sr / fps))
    ft = np.arange(n) * fps / sr                                 # audio time in frames
    dist = 1 / scale
    radial = np.gradient(dist) / np.abs(np.gradient(dist)).max()  # -1 approaching .. +1 leaving
    f = rng.uniform(45, 75) * (1 - 0.05 * np.interp(ft, t, radial))   # Doppler
    phase = 2 * np.pi * np.cumsum(f) / sr
    engine = sum(np.sin(h * phase) / h for h in range(1, 9)) * (1 + 0.3 * np.sin(0.5 * phase))
    engine = 0.5 * engine / np.abs(engine).max() + 0.1 * filtered_noise(rng, sr, n, (200, 2000)) / 3
    return c.frames, engine * np.interp(ft, t, scale), [], "a car driving past"


def rain_nature(rng: np.random.Generator, T: int, S: int, fps: float, sr: int) -> Scene:
    """Rain falls on a pond (streaks over grass and water, a steady hiss); now and then a
    big drop falls into the pond with a "plink". The texture is
    the M&W "nature" stand-in; the drops are its only discrete events."""
    c = Canvas(T, S, np.array([0.45, 0.5, 0.55]))
    events = event_frames(rng, T, (9, 13), (10, 16))
    n_streaks, speed = 20, rng.uniform(2.5, 3.5)
    sx, sy = rng.uniform(0, S, n_streaks), rng.uniform(0, S, n_streaks)
    pond_x, pond_y = rng.uniform(0.35, 0.65) * S, 0.78 * S
    rain = (0.5, 0.55, 0.6)     # faint streaks: low contrast keeps their Farneback flow near zero
    for i in range(T):
        c.rect(i, -1, 0.62 * S, S + 1, S + 1, (0.2, 0.42, 0.2))
        c.ellipse(i, pond_x, pond_y, 0.3 * S, 0.1 * S, (0.15, 0.25, 0.45))
        for x0, y0 in zip(sx, sy):
            y = (y0 + speed * i) % (S + 6) - 3
            c.segment(i, (x0, y - 2), (x0, y + 2), 0.3, rain)
        for k in events:
            # the drop falls for 8 frames (<= ~6 px/frame, which Farneback follows) and
            # vanishes into the pond at frame k
            if k - 8 <= i <= k:
                u = (i - (k - 8)) / 8
                c.disc(i, pond_x, pond_y - 0.35 * S * (1 - u * u), 0.07 * S, (0.85, 0.9, 1.0))
    n = int(round(T * sr / fps))
    hiss = 0.04 * filtered_noise(rng, sr, n, (1500, 7000))
    audio = hiss * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * np.arange(n) / sr))
    for k in events:
        f = rng.uniform(1200, 2400)
        place(audio, k / fps, sr, mix(0.5 * decaying_modes(sr, (f,), (1,), 0.04, 0.2, glide=-0.4),
                                      0.3 * noise_burst(rng, sr, (500, 6000), 0.01, 0.05)))
    return c.frames, audio, events, "rain falling on a pond"


SCENES: dict[str, Renderer] = {
    "bouncing_ball": bouncing_ball, "clapping": clapping, "car_passing": car_passing,
    "rain_nature": rain_nature, "metronome": metronome, "drum_hit": drum_hit, "door_knock": door_knock,
}
