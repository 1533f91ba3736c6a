"""Synthetic talking-face videos that OpenCV's face detector finds, with the mouth's true position."""

from __future__ import annotations

import numpy as np

from clipwhisper.data.media import write_video, write_wav

SKIN, LIPS = (220, 180, 150), (150, 40, 50)


def face_frame(width: int, height: int, cx: float, cy: float, scale: float, mouth_open: float) -> np.ndarray:
    import cv2

    s = scale
    img = np.full((height, width, 3), 60, np.uint8)

    def ellipse(x, y, rx, ry, colour):
        cv2.ellipse(img, (round(cx + x * s), round(cy + y * s)), (round(rx * s), round(ry * s)), 0, 0, 360, colour, -1)

    ellipse(0, 0, 70, 92, SKIN)
    for side in (-28, 28):
        ellipse(side, -35, 18, 5, (70, 50, 40))  # brows
        ellipse(side, -20, 14, 8, (245, 245, 240))  # eyes: white, dark iris and pupil
        ellipse(side, -20, 6, 6, (60, 40, 30))
        ellipse(side, -20, 3, 3, (10, 10, 10))
    ellipse(0, 18, 10, 5, (170, 130, 110))  # nose
    ellipse(0, 48, 26, 4 + 14 * mouth_open, LIPS)
    return cv2.GaussianBlur(img, (5, 5), 0)


def face_video(path, seconds=2.0, width=320, height=240, sound=True, roll=0.0,
               absent: range = range(0)) -> list[tuple[float, float]]:
    """A face drifting across the frame, mouth opening and closing, head rolled by ``roll`` degrees
    (counter-clockwise on screen), gone (an empty background) in the frames of ``absent``, at 25 fps (with a
    tone unless not ``sound``); the mouth's centre in each frame."""
    import cv2

    frames, mouths = [], []
    count = round(seconds * 25)
    scale = min(width, height) / 260
    for t in range(count):
        cx = width / 2 + 0.12 * width * np.sin(t / 9)
        cy = height / 2 + 0.06 * height * np.cos(t / 11)
        frame = face_frame(width, height, cx, cy, scale, 0.5 + 0.5 * np.sin(t / 2))
        turn = cv2.getRotationMatrix2D((cx, cy), roll, 1.0)
        if t in absent:
            frame = np.full_like(frame, 60)
        frames.append(cv2.warpAffine(frame, turn, (width, height), borderMode=cv2.BORDER_REPLICATE))
        mouths.append(tuple(turn @ [cx, cy + 48 * scale, 1]))
    audio = None
    if sound:
        audio = path.with_suffix(".tone.wav")
        write_wav(audio, 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 16000)) / 16000).astype(np.float32))
    write_video(path, np.stack(frames), audio=audio)
    if audio:
        audio.unlink()
    return mouths


def lips_centre(frame: np.ndarray) -> tuple[float, float] | None:
    """Where the lip-coloured pixels of a crop are, ``(x, y)``."""
    red = (frame[..., 0] > 110) & (frame[..., 1] < 90) & (frame[..., 2] < 100)
    if red.sum() < 10:
        return None
    ys, xs = np.nonzero(red)
    return float(xs.mean()), float(ys.mean())


def as_shown(path) -> np.ndarray:
    """A crop video's RGB frames as a player shows them (libswscale's rgb24): the model's conversion rounds
    differently (within 3 levels, tests/test_frames.py), which moves pixels of the lips' outline across the
    colour thresholds below and tilts a small lip region by a degree or two (3.7 against 5.2 for a level head)."""
    from clipwhisper.data.media import local
    from clipwhisper.data.video_in_process import read_frames

    return read_frames(local(path), lambda first: [("format", "rgb24")])


def lips_angle(frame: np.ndarray) -> float:
    """The lips' long axis against the horizontal, in degrees."""
    red = (frame[..., 0] > 110) & (frame[..., 1] < 90) & (frame[..., 2] < 100)
    ys, xs = np.nonzero(red)
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs, ys])))
    x, y = vectors[:, np.argmax(values)]
    return float(np.degrees(np.arctan(y / x))) if x else 90.0


def two_faces_video(path, speaking: int, seconds: float = 3.0) -> tuple[float, float]:
    """Two faces side by side, each mouth opening and closing at its own pace; the sound is noise whose
    loudness follows the mouth of face ``speaking`` (0: left, 1: right). The faces' centres' x."""
    width, height, count = 480, 240, round(seconds * 25)
    centres = (width * 0.25, width * 0.75)
    openings = [[0.5 + 0.5 * np.sin(t / 2.0 + phase) for t in range(count)] for phase in (0.0, 2.0)]
    frames = []
    for t in range(count):
        frame = np.full((height, width, 3), 60, np.uint8)
        for x, opening in zip(centres, openings):
            half = slice(round(x - width / 4), round(x + width / 4))
            frame[:, half] = face_frame(width // 2, height, width / 4, height / 2, 0.9, opening[t])
        frames.append(frame)
    rng = np.random.default_rng(0)
    loudness = np.repeat(np.array(openings[speaking]), 16000 // 25)
    sound = path.with_suffix(".speech.wav")
    write_wav(sound, (0.3 * loudness * rng.standard_normal(len(loudness))).astype(np.float32))
    write_video(path, np.stack(frames), audio=sound)
    sound.unlink()
    return centres
