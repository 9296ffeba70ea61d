"""The fixation type, and what a data set's files leave for the user to state (`ReadOptions`).

Points outside their image are counted on reading and rejected
(`ReadOptions.outside`), never moved to the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from salclass.errors import UserError


@dataclass
class ReadOptions:
    """What a data set's files leave open, stated by the user."""

    points: Literal["xy", "yx"] = "xy"            # column order of point files: (x, y) or (row, column)
    outside: Literal["error", "drop"] = "error"   # points outside their image
    ppd: float | None = None                      # pixels per degree at the image's own size; None: the data's default

    def __post_init__(self):
        if self.ppd is not None and not self.ppd > 0:
            raise ValueError(f"ppd must be positive, got {self.ppd}")


def read_options(given: dict | None) -> ReadOptions:
    """ReadOptions from command-line values; a bad one is a one-line UserError."""
    try:
        return ReadOptions(**(given or {}))
    except ValueError as e:
        raise UserError(str(e)) from None


@dataclass(frozen=True)
class Fixations:
    """Fixation points of one image, 0-based continuous pixel coordinates
    (the centre of pixel column c is x = c), with the subject of each point."""

    x: np.ndarray        # (K,) float64
    y: np.ndarray        # (K,) float64
    subject: np.ndarray  # (K,) int64, -1 where unknown

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def inside(self, native: tuple[int, int]) -> np.ndarray:
        """bool (K,): the point lies on a pixel of an image of `native` (H, W) size."""
        h, w = native
        return (self.x >= -0.5) & (self.x < w - 0.5) & (self.y >= -0.5) & (self.y < h - 0.5)

    def pixels(self, shape: tuple[int, int], native: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) int64 of every fixation in a map of `shape` (h, w) made
        from an image of `native` (H, W) size; points rescale with the image."""
        h, w = shape
        H, W = native
        cols = np.floor((self.x + 0.5) * (w / W)).astype(np.int64)
        rows = np.floor((self.y + 0.5) * (h / H)).astype(np.int64)
        # Readers keep only points inside the image; the clip only absorbs rounding at the far edge.
        return np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)

    def of_subjects(self, subjects: np.ndarray | list[int]) -> "Fixations":
        keep = np.isin(self.subject, np.asarray(subjects))
        return Fixations(self.x[keep], self.y[keep], self.subject[keep])

    def where(self, keep: np.ndarray) -> "Fixations":
        return Fixations(self.x[keep], self.y[keep], self.subject[keep])


def fixations_from(columns: np.ndarray, order: str, where: Path | str, subject: int = -1) -> Fixations:
    """Fixations from an (N, 2+) array whose first two columns are a point in
    `order` ("xy" or "yx"); later columns (times, durations) are ignored."""
    a = np.asarray(columns, dtype=np.float64)
    if a.size == 0:
        a = a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] < 2:
        raise UserError(f"{where}: expected an (N, 2) array of points, got shape {a.shape}")
    first, second = a[:, 0], a[:, 1]
    x, y = (first, second) if order == "xy" else (second, first)
    return Fixations(x.copy(), y.copy(), np.full(x.shape, subject, dtype=np.int64))

