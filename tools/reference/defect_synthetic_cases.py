#!/usr/bin/env python3
"""Expected counts of DefectDetectorTests' synthetic cases (issue 15): the images are built here exactly as the
tests build them (integers), and tools/reference/defect_detector.py `detect(L, 18)` (the default threshold 0.07)
gives the counts the tests assert. Run from the repo root: ~/venv/bin/python tools/reference/defect_synthetic_cases.py
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import defect_detector  # noqa: E402


def dashed_scratch() -> np.ndarray:
    """A dark one-pixel scratch at column 100, rows 10..149, visible in 26-px pieces with 4-px gaps (rows with
    y % 30 < 4 untouched), across a horizontal gradient."""
    h, w = 160, 200
    L = np.zeros((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            L[y, x] = 100 + x // 4
    for y in range(10, 150):
        if y % 30 >= 4:
            L[y, 100] = 40
    return L


def brick_wall() -> np.ndarray:
    """Dark mortar (2 px, level 40) between bricks of level 110: a course every 24 rows, joints every 32 columns,
    offset by 16 on every other course."""
    h, w = 200, 240
    L = np.full((h, w), 110, np.int64)
    for y in range(h):
        for x in range(w):
            course = y // 24
            if y % 24 < 2 or (x + 16 * (course % 2)) % 32 < 2:
                L[y, x] = 40
    return L


def star_field() -> np.ndarray:
    """3 x 3 stars of level 200 on a level-30 sky every 12 px (jittered by (i * 7 + j * 3) % 5) in columns < 120,
    and one dust speck of the same kind at (row 60, column 200), far from the field."""
    h, w = 120, 240
    L = np.full((h, w), 30, np.int64)
    for i in range(9):
        for j in range(9):
            y, x = 6 + 12 * i + (i * 7 + j * 3) % 5, 6 + 12 * j + (j * 5 + i) % 5
            L[y - 1:y + 2, x - 1:x + 2] = 200
    L[59:62, 199:202] = 200
    return L


def small_photo() -> np.ndarray:
    """A 64 x 64 photo (a diagonal gradient) with a dark one-pixel scratch at column 32, rows 5..58 (54 px)."""
    L = np.zeros((64, 64), np.int64)
    for y in range(64):
        for x in range(64):
            L[y, x] = 90 + x + y // 2
    L[5:59, 32] = 30
    return L


def main() -> None:
    L = dashed_scratch()
    m = defect_detector.detect(L, 18)
    print("dashed scratch: column 100, rows 10..149 marked", int(m[10:150, 100].sum()), "of 140; all", int(m.sum()))
    L = brick_wall()
    m = defect_detector.detect(L, 18)
    print("brick wall: marked", int(m.sum()), "of", m.size)
    L = star_field()
    m = defect_detector.detect(L, 18)
    print("star field: columns < 120 marked", int(m[:, :120].sum()), "; the speck (rows 55..65, columns 195..205)",
          int(m[55:66, 195:206].sum()), "; all", int(m.sum()))
    L = small_photo()
    m = defect_detector.detect(L, 18)
    print("small photo: column 32, rows 5..58 marked", int(m[5:59, 32].sum()), "of 54; all", int(m.sum()))


if __name__ == "__main__":
    main()
