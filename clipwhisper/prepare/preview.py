"""A contact sheet per prepared video (``prepare --preview``): frames spread over the video, each with the crop's
square drawn where it was cut (and the landmarks that placed it) and the crop beside it, so a person can check a
thousand videos by eye."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .tracking import Region

TILES = 12
COLUMNS = 3
THUMB = 240  # a tile: the frame fitted into THUMB x THUMB, then its crop at THUMB x THUMB
BOX = (0, 255, 0)  # RGB: the crop's square
LANDMARK = (255, 64, 255)  # RGB: the landmarks the crop was placed by


def sample_indices(frames: int, tiles: int = TILES) -> list[int]:
    """The frames a sheet shows: spread evenly from the first to the last."""
    return sorted({round(i) for i in np.linspace(0, frames - 1, min(tiles, frames))}) if frames else []


def corners(where: Region) -> np.ndarray:
    """The crop's square in frame pixels: its sides run along the levelled axes (``where.angle``)."""
    theta = np.radians(where.angle)
    across, down = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    half = where.side / 2
    centre = np.array([where.cx, where.cy])
    return np.stack([centre + half * (sx * across + sy * down) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def thumb_scale(width: int, height: int) -> float:
    return THUMB / max(width, height)


def tile_origin(index: int) -> tuple[int, int]:
    """``(x, y)`` of the ``index``-th tile's top-left corner on the sheet."""
    return (index % COLUMNS) * 2 * THUMB, (index // COLUMNS) * THUMB


class ContactSheet:
    """Collects the sampled frames while the crops are written (``see``), then writes one PNG."""

    def __init__(self, regions: list[Region]):
        self.regions = regions
        self.wanted = set(sample_indices(len(regions)))
        self.tiles: list[np.ndarray] = []

    def see(self, index: int, frame: np.ndarray, crop: np.ndarray) -> None:
        if index in self.wanted:
            self.tiles.append(_tile(frame, self.regions[index], crop, index))

    def write(self, path: Path) -> None:
        """The sheet as ``path`` (written under a temporary name, then renamed)."""
        import cv2

        rows = -(-len(self.tiles) // COLUMNS)
        sheet = np.full((rows * THUMB, COLUMNS * 2 * THUMB, 3), 32, np.uint8)
        for index, tile in enumerate(self.tiles):
            x, y = tile_origin(index)
            sheet[y:y + THUMB, x:x + 2 * THUMB] = tile
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.png")
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {tmp}")
        os.replace(tmp, path)


def _tile(frame: np.ndarray, where: Region, crop: np.ndarray, index: int) -> np.ndarray:
    import cv2

    height, width = frame.shape[:2]
    scale = thumb_scale(width, height)
    tile = np.full((THUMB, 2 * THUMB, 3), 32, np.uint8)
    small = cv2.resize(frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    tile[: small.shape[0], : small.shape[1]] = small
    if where.points is not None:
        for x, y in np.round(where.points * scale).astype(np.int32):
            cv2.circle(tile, (int(x), int(y)), 1, LANDMARK, -1)
    square = np.round(corners(where) * scale).astype(np.int32)
    cv2.polylines(tile, [square], isClosed=True, color=BOX, thickness=1)
    tile[:, THUMB:] = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_NEAREST)
    cv2.putText(tile, f"{index}", (4, THUMB - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
