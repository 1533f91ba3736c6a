"""Write clipwhisper/prepare/reference_face.json: the face `prepare --detector landmarks` aligns frames to.

The mean of dlib's 68 landmarks on the two face photographs that packages ship (scikit-image's astronaut,
matplotlib's Grace Hopper), each levelled on its outer eye corners and scaled to 80 units between them, placed
in a 256x256 frame as auto_avsr's mean face is (so a mouth crop 96 units wide matches theirs in kind). Needs
the landmarks extra and scikit-image: pip install 'clipwhisper[landmarks]' scikit-image

    python scripts/make_reference_face.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

from clipwhisper.prepare.alignment import STABLE
from clipwhisper.prepare.landmarks import find_faces

OUT = Path(__file__).resolve().parents[1] / "clipwhisper" / "prepare" / "reference_face.json"
EYE_UNITS = 80.0  # between the outer eye corners (points 36 and 45)
CENTRE = (128.0, 112.0)  # where the stable points' mean lies in the 256x256 frame


def photographs() -> list[np.ndarray]:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = np.array(Image.open(file).convert("RGB"))
    return [skimage.data.astronaut(), hopper]


def levelled(points: np.ndarray) -> np.ndarray:
    """``points`` turned so the outer eye corners are level, EYE_UNITS apart, the stable points' mean at 0."""
    across = points[45] - points[36]
    angle = -np.arctan2(across[1], across[0])
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points - points[STABLE].mean(0)) @ turn.T * (EYE_UNITS / np.hypot(*across))


def main() -> None:
    faces = []
    for photo in photographs():
        found = find_faces(photo)
        faces.append(levelled(max(found, key=lambda face: np.prod(face[0][2:] - face[0][:2]))[1]))
    mean = levelled(np.mean(faces, axis=0)) + CENTRE
    OUT.write_text(json.dumps({"about": __doc__.split("\n\n")[1].replace("\n", " "),
                               "points": np.round(mean, 2).tolist()}) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
