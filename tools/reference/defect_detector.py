"""Reference of `ImageOps.detectDefects` (Sources/DarkroomPipeline/ImageOps/DefectDetector.swift), all in integers
so that the Swift port gives the same mask bit for bit. Imported by make_defect_eval.py; see the README in
Tests/Fixtures/defects/ for the measured numbers.

Input: the 8-bit luminance (PIL "L"). Three stages:

1. Lines (scratches, tears, creases): for 32 orientations, the digital lines of slope k/8 (k = -8..8, stepping
   in x) and k/8 (k = -7..7, stepping in y), and side distances a = 2 and 4 px (the unit normal times a, rounded
   by floor(v + 0.5)), per pixel p with the sides s1 = L(p + o), s2 = L(p - o) (clamped to the image):
       bright  m = min(L - s1, L - s2)      dark  m = min(s1 - L, s2 - L)      asymmetry  s1 - s2
   each summed along the 61 pixels of the line through p (2 * 30 + 1 steps; samples outside the image are 0).
   The line through (y, x) at slope k/8 is (y + r(x + j) - r(x), x + j), j = -30..30, r(x) = floor((k x + 4) / 8)
   (the sheared line, so that a running sum along the sheared rows gives it). A pixel is a line pixel if for some
   orientation, side distance and polarity
       2 * sum(m) - 3 * |sum(asymmetry)| > 2 * 61 * t      (mean contrast net of 1.5 x the mean side difference)
   and its own m > t / 2 (t: threshold in levels); it is a bright or a dark line pixel by the polarity that
   qualified (it can be both). Line pixels are grouped across gaps: a group is a connected component (8-
   neighbours) of the line pixels dilated by GROUP_GAP = 2 px (5 x 5), so pixels up to 5 px apart (Chebyshev)
   belong together (a scratch is one curve, but it vanishes where it crosses a part of the photo as light or as
   dark as itself, and its visible pieces are short). A group's line pixels are kept when their bounding box is
   at least 60 px long on one side (half the photo's longer side if that is less: a small photo's scratches), fewer than half of them are *paired*, and they number at most MESH = 24 per
   pixel of that extent (a scratch, or a few crossing, is a path; a mesh of lines, brick mortar or a grid, has
   many more pixels than its extent), then dilated by one pixel (3 x 3). A bright line pixel is paired when a
   dark line pixel lies within 3 px (Chebyshev), and the other way round: the photo's own thin structures are
   shaded (a rod, a tripod leg, a cable, a fold: a bright stripe beside a dark one), whereas a scratch adds or
   removes material of one polarity and has the photo itself on both sides.
2. Dust and spots: S = [1 2 1] x [1 2 1] sum of L (16 x the smoothed luminance, edges replicated); for rings of
   12 fixed offsets at radius 3 and 5 (RINGS), with hi, lo the ring's largest and smallest value, the contrast
   net of half the ring's own spread B = max(S(p) - hi, lo - S(p)) - (hi - lo) / 2, the best of the two rings: a
   dust spot is lighter or darker than everything around it, while a small structure of the photo (a crater, an
   eye, a highlight on a spoon) has bright and dark parts side by side, and a spot on an edge has a ring that
   differs more from itself. Pixel p is a spot pixel if 225 * B > 225 * 16 * tb + 4 * H(p), where H is the
   15 x 15 sum (edges replicated) of |16 L - S| (the local texture: textured surroundings need more contrast)
   and tb = 5/3 t. Connected spot pixels with at most 60 pixels and a bounding box of at most 10 px are spots;
   a spot is kept unless more than CROWD_MAX = 2 other spots have their first pixel (raster order) within its
   bounding box grown by CROWD_RADIUS = 32 px (a star field, a speckled texture: dust specks are few and apart),
   then dilated by two pixels (5 x 5).
3. Tears and creases: a path of paper white that winds (a random walk, not a line). Per direction o of the four
   (0, 1), (1, 0), (1, 1), (1, -1) the small-scale bright ridge R_o = max over a = 2, 3 of min(L - L(p + a o),
   L - L(p - a o)) (clamped to the image); p is a ridge-centre pixel if for some o, R_o(p) >= R_o(p + o) and
   R_o(p) >= R_o(p - o) (a local maximum across the ridge) and 3 R_o(p) > 5 t, and a seed if moreover
   R_o(p) > 2 t. Connected (8-neighbour) ridge-centre pixels holding a seed are kept when the bounding box's
   longer side E is at least 60 px and the component has at least 2 E pixels (a tear's white is 2-3 px wide
   and winds, so its centre is more than one pixel per pixel of extent; a highlight along an edge is a
   single-pixel chain), then dilated by two pixels (5 x 5): the white and its one-sided shadow.
4. The mask is the union.
"""
import math

import numpy as np
from scipy import ndimage as ndi

HALF = 30
G = 3
SIDES = (2, 4)
MIN_EXTENT = 60
GROUP_GAP = 2  # line pixels up to 2 * GROUP_GAP + 1 px apart (Chebyshev) are one group
MESH = 24  # a group with more line pixels than MESH per pixel of extent is a mesh (mortar, a grid), not a path
PAIR_DISTANCE = 3  # a line pixel with a line pixel of the other polarity this near (Chebyshev) is paired
RINGS = {
    3: [(0, 3), (2, 3), (3, 2), (3, 0), (3, -2), (2, -3), (0, -3), (-2, -3), (-3, -2), (-3, 0), (-3, 2), (-2, 3)],
    5: [(0, 5), (3, 4), (4, 3), (5, 0), (4, -3), (3, -4), (0, -5), (-3, -4), (-4, -3), (-5, 0), (-4, 3), (-3, 4)],
}
SPOT_MAX_AREA = 60
SPOT_MAX_EXTENT = 10
BOX = 15
CROWD_RADIUS = 32  # a spot with more than CROWD_MAX other spots this near (its box grown by it) is a field
CROWD_MAX = 2
TEAR_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
TEAR_SIDES = (2, 3)
TEAR_MIN_EXTENT = 60


def orientations():
    """(vertical, k, side offsets per a): stepping in x (vertical False) with slope k/8, or in y."""
    out = []
    for vertical, ks in ((False, range(-8, 9)), (True, range(-7, 8))):
        for k in ks:
            n = math.sqrt(64 + k * k)
            offs = []
            for a in SIDES:
                u, v = math.floor(a * 8 / n + 0.5), math.floor(-a * k / n + 0.5)
                offs.append((u, v) if not vertical else (v, u))
            out.append((vertical, k, offs))
    return out


def line_sum(f: np.ndarray, vertical: bool, k: int) -> np.ndarray:
    """Sum of f along the 61-pixel line of slope k/8 through every pixel (outside the image: 0). The line through
    (y, x) is (y + r(x + j) - r(x), x + j); with the sheared image G[i, x] = f[i - off + r(x), x] it is the sum of
    G over row y + off - r(x), columns x - HALF .. x + HALF: a running sum."""
    if vertical:
        return line_sum(f.T, False, k).T
    h, w = f.shape
    xs = np.arange(w)
    r = (k * xs + 4) // 8
    re = (k * np.arange(-HALF, w + HALF) + 4) // 8
    fx = np.zeros((h, w + 2 * HALF), np.int64)
    fx[:, HALF:HALF + w] = f
    off = int(np.abs(re).max()) + 1
    rows = np.arange(h + 2 * off)[:, None] - off + re[None, :]
    G = np.where((rows >= 0) & (rows < h), fx[np.clip(rows, 0, h - 1), np.arange(w + 2 * HALF)[None, :]], 0)
    c = np.concatenate([np.zeros((h + 2 * off, 1), np.int64), np.cumsum(G, 1)], 1)
    S = c[:, 2 * HALF + 1:] - c[:, :w]
    return S[np.arange(h)[:, None] + off - r[None, :], xs[None, :]]


def clamp_shift(L: np.ndarray, oy: int, ox: int) -> np.ndarray:
    h, w = L.shape
    yy = np.clip(np.arange(h) + oy, 0, h - 1)
    xx = np.clip(np.arange(w) + ox, 0, w - 1)
    return L[yy][:, xx]


def components(mask: np.ndarray, keep) -> np.ndarray:
    lab, n = ndi.label(mask, np.ones((3, 3)))
    if n == 0:
        return mask
    area = ndi.sum(mask, lab, np.arange(1, n + 1))
    ok = np.zeros(n + 1, bool)
    for i, s in enumerate(ndi.find_objects(lab)):
        ok[i + 1] = keep(s[0].stop - s[0].start, s[1].stop - s[1].start, int(area[i]))
    return ok[lab]


def line_pixels(L: np.ndarray, t: int) -> tuple:
    """(bright, dark) line pixels of stage 1, before the component filter."""
    L = L.astype(np.int64)
    found = [np.zeros(L.shape, bool), np.zeros(L.shape, bool)]
    need = 2 * (2 * HALF + 1) * t
    for vertical, k, offs in orientations():
        for oy, ox in offs:
            s1, s2 = clamp_shift(L, oy, ox), clamp_shift(L, -oy, -ox)
            asym = np.abs(line_sum(s1 - s2, vertical, k))
            for polarity, m in enumerate((np.minimum(L - s1, L - s2), np.minimum(s1 - L, s2 - L))):
                found[polarity] |= (2 * line_sum(m, vertical, k) - G * asym > need) & (2 * m > t)
    return found[0], found[1]


def lines(L: np.ndarray, t: int) -> np.ndarray:
    """Stage 1: line pixels in groups (GROUP_GAP) at least MIN_EXTENT long (or half the longer side), fewer than
    half paired, not a mesh."""
    bright, dark = line_pixels(L, t)
    near = np.ones((2 * PAIR_DISTANCE + 1, 2 * PAIR_DISTANCE + 1), bool)
    paired = (bright & ndi.binary_dilation(dark, near)) | (dark & ndi.binary_dilation(bright, near))
    found = bright | dark
    grouped = ndi.binary_dilation(found, np.ones((2 * GROUP_GAP + 1, 2 * GROUP_GAP + 1), bool))
    lab, n = ndi.label(grouped, np.ones((3, 3)))
    if n == 0:
        return found
    lab = lab * found  # each line pixel labelled with its group; boxes and counts over line pixels only
    area = ndi.sum(found, lab, np.arange(1, n + 1))
    pairs = ndi.sum(paired, lab, np.arange(1, n + 1))
    min_extent = min(MIN_EXTENT, max(L.shape) // 2)
    ok = np.zeros(n + 1, bool)
    for i, s in enumerate(ndi.find_objects(lab, n)):
        if s is None:
            continue
        extent = max(s[0].stop - s[0].start, s[1].stop - s[1].start)
        ok[i + 1] = extent >= min_extent and 2 * pairs[i] < area[i] and area[i] <= MESH * extent
    return ok[lab] & found


def smooth16(L: np.ndarray) -> np.ndarray:
    Lp = np.pad(L.astype(np.int64), 1, mode="edge")
    v = Lp[:-2] + 2 * Lp[1:-1] + Lp[2:]
    return v[:, :-2] + 2 * v[:, 1:-1] + v[:, 2:]


def spot_pixels(L: np.ndarray, t: int) -> np.ndarray:
    S = smooth16(L)
    h, w = L.shape
    best = np.full(L.shape, -(1 << 30), np.int64)  # 2 B
    for r, ring in RINGS.items():
        samples = [clamp_shift(S, dy, dx) for dy, dx in ring]
        hi, lo = np.max(samples, axis=0), np.min(samples, axis=0)
        best = np.maximum(best, 2 * np.maximum(S - hi, lo - S) - (hi - lo))
    hp = np.abs(16 * L.astype(np.int64) - S)
    hpp = np.pad(hp, BOX // 2, mode="edge")
    c = np.cumsum(np.cumsum(np.pad(hpp, ((1, 0), (1, 0))), 0), 1)
    H = c[BOX:, BOX:] - c[:-BOX, BOX:] - c[BOX:, :-BOX] + c[:-BOX, :-BOX]
    tb16 = 16 * 5 * t  # 225 * 16 * (5/3) t  ==  225 * (80 t / 3): compare 3 * 225 * 2B > 2 (225 * 80 t + 12 H)
    return 3 * 225 * best > 2 * (225 * tb16 + 12 * H)


def uncrowded(spots: np.ndarray) -> np.ndarray:
    """The spots with at most CROWD_MAX other spots whose first pixel lies in their box grown by CROWD_RADIUS."""
    lab, n = ndi.label(spots, np.ones((3, 3)))
    if n == 0:
        return spots
    first = np.zeros(spots.shape, np.int64)
    for y, x in ndi.minimum_position(np.arange(spots.size).reshape(spots.shape), lab, np.arange(1, n + 1)):
        first[y, x] = 1
    c = np.pad(np.cumsum(np.cumsum(first, 0), 1), ((1, 0), (1, 0)))
    h, w = spots.shape
    ok = np.zeros(n + 1, bool)
    for i, s in enumerate(ndi.find_objects(lab)):
        y0, y1 = max(s[0].start - CROWD_RADIUS, 0), min(s[0].stop + CROWD_RADIUS, h)
        x0, x1 = max(s[1].start - CROWD_RADIUS, 0), min(s[1].stop + CROWD_RADIUS, w)
        ok[i + 1] = c[y1, x1] - c[y0, x1] - c[y1, x0] + c[y0, x0] - 1 <= CROWD_MAX
    return ok[lab]


def tear_pixels(L: np.ndarray, t: int) -> tuple:
    """(ridge-centre pixels, seeds) of stage 3, before the component filter."""
    L = L.astype(np.int64)
    centre = np.zeros(L.shape, bool)
    seeds = np.zeros(L.shape, bool)
    for oy, ox in TEAR_DIRECTIONS:
        R = np.full(L.shape, -(1 << 30), np.int64)
        for a in TEAR_SIDES:
            R = np.maximum(R, np.minimum(L - clamp_shift(L, a * oy, a * ox), L - clamp_shift(L, -a * oy, -a * ox)))
        peak = (R >= clamp_shift(R, oy, ox)) & (R >= clamp_shift(R, -oy, -ox))
        centre |= peak & (3 * R > 5 * t)
        seeds |= peak & (R > 2 * t)
    return centre, seeds


def tears(L: np.ndarray, t: int) -> np.ndarray:
    centre, seeds = tear_pixels(L, t)
    lab, n = ndi.label(centre, np.ones((3, 3)))
    if n == 0:
        return centre
    area = ndi.sum(centre, lab, np.arange(1, n + 1))
    seeded = ndi.sum(seeds, lab, np.arange(1, n + 1))
    ok = np.zeros(n + 1, bool)
    for i, s in enumerate(ndi.find_objects(lab)):
        extent = max(s[0].stop - s[0].start, s[1].stop - s[1].start)
        ok[i + 1] = seeded[i] > 0 and extent >= TEAR_MIN_EXTENT and area[i] >= 2 * extent
    return ok[lab]


def detect(L: np.ndarray, t: int = 15) -> np.ndarray:
    """The defect mask (bool) of an 8-bit luminance `L`; `t` in levels (15 = 0.06 of the range)."""
    found = lines(L, t)
    spots = uncrowded(components(spot_pixels(L, t), lambda h, w, a: a <= SPOT_MAX_AREA and max(h, w) <= SPOT_MAX_EXTENT))
    torn = tears(L, t)
    return (ndi.binary_dilation(found, np.ones((3, 3), bool)) | ndi.binary_dilation(spots, np.ones((5, 5), bool))
            | ndi.binary_dilation(torn, np.ones((5, 5), bool)))
