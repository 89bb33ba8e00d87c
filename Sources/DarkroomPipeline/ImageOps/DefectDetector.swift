import DarkroomTensor
import Foundation

// Restoration's defect mask (issue 15): scratches, tears and dust, told apart from the photo's own detail.
// This implementation matches: tools/reference/defect_detector.py (integers throughout, so the masks are equal
// bit for bit; DefectDetectorTests checks it on the evaluation set of Tests/Fixtures/defects).
//
// 1. Lines. A scratch is lighter or darker than both of its sides, all along a long, nearly straight path, and it
//    crosses the photo's edges rather than running beside one. For 32 orientations (the digital lines of slope
//    k/8 stepping in x, k = -8…8, and stepping in y, k = -7…7) and side distances 2 and 4 px, per pixel p with
//    the sides s1 = L(p + o), s2 = L(p - o) (o the unit normal times the distance, clamped to the image):
//        bright m = min(L - s1, L - s2), dark m = min(s1 - L, s2 - L), asymmetry s1 - s2,
//    each summed along the 61 pixels of the line through p (outside the image: 0). p is a line pixel if, for
//    some orientation, distance and polarity, 2·Σm − 3·|Σasymmetry| > 2·61·t and 2·m(p) > t: the line is on
//    average t levels lighter (darker) than both sides net of 1.5 × the mean difference between its sides (a
//    highlight along an edge has one dark side and one bright side), and p itself is; p is a bright or a dark
//    line pixel by the polarity that qualified. A line pixel is *paired* when a line pixel of the other
//    polarity lies within 3 px (Chebyshev): the photo's own thin structures are shaded (a rod, a tripod leg, a
//    cable, a fold: a bright stripe beside a dark one), whereas a scratch adds or removes material of one
//    polarity with the photo on both sides. Line pixels (either polarity) are grouped across gaps: a group is a
//    connected component of the line pixels dilated by 2 px, so pixels up to 5 px apart belong together (a
//    scratch vanishes where it crosses a part of the photo as light or as dark as itself, and its visible
//    pieces are short). A group's line pixels are kept when their bounding box is at least 60 px long (half the
//    photo's longer side if that is less), fewer than half of them are paired, and they number at most 24 per pixel of that extent (a scratch, or a few
//    crossing, is a path; brick mortar or a grid is a mesh), then dilated by one pixel.
// 2. Spots. S = 16 × the [1 2 1]² smoothed luminance; for rings of 12 offsets at radius 3 and 5, with hi and
//    lo the ring's largest and smallest value, B = max(S(p) − hi, lo − S(p)) − (hi − lo)/2: lighter or darker
//    than everything around, net of half of how much the ring differs from itself (a crater, an eye or a
//    highlight has bright and dark parts side by side; dust has the photo all round it). p is a spot pixel if
//    675·B > 18000·t + 12·H(p), H the 15×15 sum of |16 L − S| (textured surroundings need more contrast;
//    B > 16·(5/3)·t + 4·mean|16 L − S|). Connected spot pixels (at most 60, bounding box at most 10 px) are
//    spots; a spot is kept unless more than 2 other spots have their first pixel (raster order) within its
//    bounding box grown by 32 px (a star field or a speckled texture: dust specks are few and apart), and
//    dilated by two pixels.
// 3. Tears. A tear is a path of paper white that winds rather than runs straight, often with a shadow on one
//    side. Per direction o of (0, 1), (1, 0), (1, 1), (1, −1), the small-scale bright ridge
//    R_o = max over a = 2, 3 of min(L − L(p + a·o), L − L(p − a·o)) (clamped to the image); p is a ridge-centre
//    pixel if for some o, R_o(p) ≥ R_o(p ± o) (a maximum across the ridge) and 3·R_o(p) > 5·t, and a seed if
//    moreover R_o(p) > 2·t. Connected ridge-centre pixels holding a seed are kept when their bounding box's
//    longer side E is at least 60 px and they number at least 2·E (a tear's white is 2–3 px wide and winds; a
//    highlight along an edge is a one-pixel chain), then dilated by two pixels (the white and its shadow).
//
// Time is O(pixels × 64) for the lines plus O(pixels × 24) for the spots and O(pixels × 16) for the tears
// (about 0.3 s at 512 px and 6 s at 2048 px on two shared cores); memory about 40 bytes per pixel (luminance,
// candidate, polarity and pairing planes, the line groups' and spots' labels, the smoothed plane, the tear stage's
// ridge plane, the spot crowding count, the float mask).

extension ImageOps {
    /// Half the line length (the line has 2·30 + 1 pixels).
    static let defectLineHalf = 30
    /// Side distances of the both-sides test, in pixels: scratches 1–6 px wide.
    static let defectSideDistances = [2, 4]
    /// Shortest kept line group: the bounding box's longer side (at most half the photo's longer side).
    static let defectMinimumLineExtent = 60
    /// Line pixels whose squares of this radius touch or overlap (up to 2·2 + 1 px apart) are one group.
    static let defectLineGroupGap = 2
    /// A group with more line pixels than this per pixel of its extent is a mesh (mortar, a grid), not a path.
    static let defectLineMesh = 24
    /// A line pixel with a line pixel of the other polarity this near (Chebyshev) is paired (shaded structure).
    static let defectPairDistance = 3
    /// Offsets (dy, dx) of the spot rings, radius 3 and 5.
    static let defectSpotRings: [[(Int, Int)]] = [
        [(0, 3), (2, 3), (3, 2), (3, 0), (3, -2), (2, -3), (0, -3), (-2, -3), (-3, -2), (-3, 0), (-3, 2), (-2, 3)],
        [(0, 5), (3, 4), (4, 3), (5, 0), (4, -3), (3, -4), (0, -5), (-3, -4), (-4, -3), (-5, 0), (-4, 3), (-3, 4)],
    ]
    static let defectSpotMaximumArea = 60
    static let defectSpotMaximumExtent = 10
    /// A spot with more than `defectSpotCrowdMaximum` other spots within this distance of its box is in a field.
    static let defectSpotCrowdRadius = 32
    static let defectSpotCrowdMaximum = 2
    /// Directions (dy, dx) across which the tear stage looks for a bright ridge, and its side distances.
    static let defectTearDirections = [(0, 1), (1, 0), (1, 1), (1, -1)]
    static let defectTearSideDistances = [2, 3]
    /// Shortest kept tear: the bounding box's longer side.
    static let defectTearMinimumExtent = 60

    /// Restoration's defect mask of an 8-bit photo: a 1-channel 0/1 image, 1 on scratches, tears and dust
    /// (see the outline above). `threshold` is the contrast a defect needs, in [0, 1] of the range (0.07 ≈ 18
    /// levels for lines; spots need 5/3 of it).
    public static func detectDefects(_ image: PlanarImage8, threshold: Float = 0.07) throws -> PlanarImage {
        guard threshold.isFinite, threshold > 0, threshold <= 1 else {
            throw ImageOpsError.invalidArgument("threshold \(threshold): a number in (0, 1]")
        }
        let gray = try toGrayscale(image)
        let levels = max(1, Int((threshold * 255).rounded()))
        let mask = defectMask(luminance: gray.pixels, width: image.width, height: image.height, levels: levels)
        return PlanarImage(uncheckedWidth: image.width, height: image.height, channels: 1, pixels: mask.map { Float($0) })
    }

    /// The mask (0/1 per pixel) of an 8-bit luminance plane; `levels` is the threshold t above.
    static func defectMask(luminance: [UInt8], width: Int, height: Int, levels t: Int) -> [UInt8] {
        let n = width * height
        guard n > 0, luminance.count == n else { return [] }
        // Line pixels: bit 0 bright, bit 1 dark.
        let polarity = defectLinePixels(luminance, width: width, height: height, levels: t)
        let nearBright = dilate(polarity.map { $0 & 1 }, width: width, height: height, radius: defectPairDistance)
        let nearDark = dilate(polarity.map { $0 >> 1 & 1 }, width: width, height: height, radius: defectPairDistance)
        var paired = [UInt8](repeating: 0, count: n)
        for i in 0..<n where (polarity[i] & 1 != 0 && nearDark[i] != 0) || (polarity[i] & 2 != 0 && nearBright[i] != 0) {
            paired[i] = 1
        }
        var lines = polarity.map { $0 != 0 ? UInt8(1) : 0 }
        let groups = componentLabels(dilate(lines, width: width, height: height, radius: defectLineGroupGap),
                                     width: width, height: height)
        let minimumExtent = min(defectMinimumLineExtent, max(width, height) / 2)
        keepComponents(&lines, width: width, height: height, labels: groups, seeds: paired) { extent, area, pairs in
            extent >= minimumExtent && 2 * pairs < area && area <= defectLineMesh * extent
        }
        var spots = defectSpotPixels(luminance, width: width, height: height, levels: t)
        keepComponents(&spots, width: width, height: height) { extent, area in
            area <= defectSpotMaximumArea && extent <= defectSpotMaximumExtent
        }
        dropCrowdedSpots(&spots, width: width, height: height)
        var (tears, seeds) = defectTearPixels(luminance, width: width, height: height, levels: t)
        keepComponents(&tears, width: width, height: height, seeds: seeds) { extent, area, seeded in
            seeded > 0 && extent >= defectTearMinimumExtent && area >= 2 * extent
        }
        let a = dilate(lines, width: width, height: height, radius: 1)
        let b = dilate(spots, width: width, height: height, radius: 2)
        let c = dilate(tears, width: width, height: height, radius: 2)
        var out = [UInt8](repeating: 0, count: n)
        for i in 0..<n where a[i] != 0 || b[i] != 0 || c[i] != 0 { out[i] = 1 }
        return out
    }

    /// Stage 1 before the component filter: bit 0 set where some orientation and side distance qualifies a
    /// bright line, bit 1 a dark one.
    static func defectLinePixels(_ lum: [UInt8], width: Int, height: Int, levels t: Int) -> [UInt8] {
        var found = [UInt8](repeating: 0, count: width * height)
        let half = defectLineHalf, need = 2 * (2 * half + 1) * t
        // Each family runs in its own frame: rows × cols, stepping along cols; the y-stepping family is the
        // x-stepping one on the transposed image (index = row · rowStride + col · colStride).
        let families: [(ks: ClosedRange<Int>, rows: Int, cols: Int, rowStride: Int, colStride: Int)] = [
            (-8...8, height, width, width, 1), (-7...7, width, height, 1, width),
        ]
        lum.withUnsafeBufferPointer { L in
        found.withUnsafeMutableBufferPointer { F in
            for family in families {
                let rows = family.rows, cols = family.cols, rs = family.rowStride, cs = family.colStride
                for k in family.ks {
                    let norm = Double(64 + k * k).squareRoot()
                    // r(c): the line's row offset at column c; a sheared row y' holds the pixels (y' + r(c), c).
                    let shift = (0..<cols).map { floorDiv(k * $0 + 4, 8) }
                    let lowest = shift.min() ?? 0, highest = shift.max() ?? 0
                    let firstRow = -highest, lastRow = rows - 1 - lowest
                    for distance in defectSideDistances {
                        let oRow = Int((Double(distance * 8) / norm + 0.5).rounded(.down))
                        let oCol = Int((Double(-distance * k) / norm + 0.5).rounded(.down))
                        Parallel.forEachRange(lastRow - firstRow + 1, grain: 64) { range in
                            var bright = [Int](repeating: 0, count: cols), dark = bright, asym = bright
                            for sheared in (firstRow + range.lowerBound)..<(firstRow + range.upperBound) {
                                // The columns where this sheared row is inside the image: an interval (r is monotone).
                                var lo = cols, hi = -1
                                for c in 0..<cols where sheared + shift[c] >= 0 && sheared + shift[c] < rows {
                                    if lo == cols { lo = c }
                                    hi = c
                                }
                                if hi < lo { continue }
                                for c in lo...hi {
                                    let r = sheared + shift[c]
                                    let l = Int(L[r * rs + c * cs])
                                    let r1 = min(max(r + oRow, 0), rows - 1), c1 = min(max(c + oCol, 0), cols - 1)
                                    let r2 = min(max(r - oRow, 0), rows - 1), c2 = min(max(c - oCol, 0), cols - 1)
                                    let s1 = Int(L[r1 * rs + c1 * cs]), s2 = Int(L[r2 * rs + c2 * cs])
                                    bright[c] = min(l - s1, l - s2)
                                    dark[c] = min(s1 - l, s2 - l)
                                    asym[c] = s1 - s2
                                }
                                // Window sums over [c − half, c + half] ∩ [lo, hi].
                                var sb = 0, sd = 0, sa = 0
                                for c in lo...min(hi, lo + half - 1) { sb += bright[c]; sd += dark[c]; sa += asym[c] }
                                for c in lo...hi {
                                    let enter = c + half, leave = c - half - 1
                                    if enter <= hi { sb += bright[enter]; sd += dark[enter]; sa += asym[enter] }
                                    if leave >= lo { sb -= bright[leave]; sd -= dark[leave]; sa -= asym[leave] }
                                    let penalty = 3 * abs(sa)
                                    if 2 * sb - penalty > need && 2 * bright[c] > t { F[(sheared + shift[c]) * rs + c * cs] |= 1 }
                                    if 2 * sd - penalty > need && 2 * dark[c] > t { F[(sheared + shift[c]) * rs + c * cs] |= 2 }
                                }
                            }
                        }
                    }
                }
            }
        }
        }
        return found
    }

    /// Stage 2 before the size filter.
    static func defectSpotPixels(_ lum: [UInt8], width: Int, height: Int, levels t: Int) -> [UInt8] {
        let n = width * height
        // S = [1 2 1] ⊗ [1 2 1] sum, edges replicated.
        var smooth = [Int32](repeating: 0, count: n)
        var column = [Int32](repeating: 0, count: n)
        for y in 0..<height {
            let up = max(y - 1, 0) * width, down = min(y + 1, height - 1) * width, row = y * width
            for x in 0..<width { column[row + x] = Int32(lum[up + x]) + 2 * Int32(lum[row + x]) + Int32(lum[down + x]) }
        }
        for y in 0..<height {
            let row = y * width
            for x in 0..<width {
                smooth[row + x] = column[row + max(x - 1, 0)] + 2 * column[row + x] + column[row + min(x + 1, width - 1)]
            }
        }
        column = []
        var found = [UInt8](repeating: 0, count: n)
        let box = 15, r = box / 2
        // H row by row: vertical 15-sums of |16 L − S| (edges replicated), then horizontal 15-sums.
        func texture(_ y: Int, _ x: Int) -> Int { abs(16 * Int(lum[y * width + x]) - Int(smooth[y * width + x])) }
        var vertical = [Int](repeating: 0, count: width)
        for x in 0..<width { for dy in -r...r { vertical[x] += texture(min(max(dy, 0), height - 1), x) } }
        var padded = [Int](repeating: 0, count: width + 2 * r)
        for y in 0..<height {
            if y > 0 {
                let enter = min(y + r, height - 1), leave = max(y - r - 1, 0)
                for x in 0..<width { vertical[x] += texture(enter, x) - texture(leave, x) }
            }
            for i in 0..<(width + 2 * r) { padded[i] = vertical[min(max(i - r, 0), width - 1)] }
            var h = 0
            for i in 0..<box { h += padded[i] }
            for x in 0..<width {
                if x > 0 { h += padded[x + box - 1] - padded[x - 1] }
                let s = Int(smooth[y * width + x])
                var best = Int.min  // 2 B
                for ring in defectSpotRings {
                    var hiValue = Int.min, loValue = Int.max
                    for (dy, dx) in ring {
                        let v = Int(smooth[min(max(y + dy, 0), height - 1) * width + min(max(x + dx, 0), width - 1)])
                        hiValue = max(hiValue, v)
                        loValue = min(loValue, v)
                    }
                    best = max(best, 2 * max(s - hiValue, loValue - s) - (hiValue - loValue))
                }
                if 675 * best > 2 * (18_000 * t + 12 * h) { found[y * width + x] = 1 }
            }
        }
        return found
    }

    /// Stage 3 before the component filter: (ridge-centre pixels, seeds), 0/1 each.
    static func defectTearPixels(_ lum: [UInt8], width: Int, height: Int, levels t: Int) -> ([UInt8], [UInt8]) {
        let n = width * height
        var centre = [UInt8](repeating: 0, count: n), seeds = centre
        func at(_ y: Int, _ x: Int) -> Int { min(max(y, 0), height - 1) * width + min(max(x, 0), width - 1) }
        var ridge = [Int](repeating: 0, count: n)
        for (oy, ox) in defectTearDirections {
            for y in 0..<height {
                for x in 0..<width {
                    let l = Int(lum[y * width + x])
                    var best = Int.min
                    for a in defectTearSideDistances {
                        let s1 = Int(lum[at(y + a * oy, x + a * ox)]), s2 = Int(lum[at(y - a * oy, x - a * ox)])
                        best = max(best, min(l - s1, l - s2))
                    }
                    ridge[y * width + x] = best
                }
            }
            for y in 0..<height {
                for x in 0..<width {
                    let r = ridge[y * width + x]
                    guard r >= ridge[at(y + oy, x + ox)], r >= ridge[at(y - oy, x - ox)] else { continue }
                    if 3 * r > 5 * t { centre[y * width + x] = 1 }
                    if r > 2 * t { seeds[y * width + x] = 1 }
                }
            }
        }
        return (centre, seeds)
    }

    /// Keeps the 8-connected components of the 1s in `mask` for which `keep(longer bounding-box side, area)`.
    static func keepComponents(_ mask: inout [UInt8], width: Int, height: Int, keep: (Int, Int) -> Bool) {
        keepComponents(&mask, width: width, height: height, seeds: nil) { extent, area, _ in keep(extent, area) }
    }

    /// Keeps the 8-connected components of the 1s in `mask` for which `keep(longer bounding-box side, area,
    /// members that are 1 in seeds)` (seeds nil: 0).
    static func keepComponents(_ mask: inout [UInt8], width: Int, height: Int, seeds: [UInt8]?,
                               keep: (Int, Int, Int) -> Bool) {
        let labels = componentLabels(mask, width: width, height: height)
        keepComponents(&mask, width: width, height: height, labels: labels, seeds: seeds, keep: keep)
    }

    /// Keeps the 1s of `mask` whose group (their label in `labels`, every 1 of mask labelled) passes
    /// `keep(longer side of the box of the group's 1s, their number, those of them that are 1 in seeds)`.
    static func keepComponents(_ mask: inout [UInt8], width: Int, height: Int, labels: (labels: [Int32], count: Int),
                               seeds: [UInt8]?, keep: (Int, Int, Int) -> Bool) {
        let count = labels.count
        var area = [Int](repeating: 0, count: count + 1), seeded = area
        var y0 = [Int](repeating: Int.max, count: count + 1), x0 = y0
        var y1 = [Int](repeating: Int.min, count: count + 1), x1 = y1
        for i in 0..<mask.count where mask[i] != 0 {
            let g = Int(labels.labels[i]), y = i / width, x = i % width
            area[g] += 1
            if let seeds, seeds[i] != 0 { seeded[g] += 1 }
            y0[g] = min(y0[g], y); y1[g] = max(y1[g], y); x0[g] = min(x0[g], x); x1[g] = max(x1[g], x)
        }
        var kept = [Bool](repeating: false, count: count + 1)
        for g in 1..<(count + 1) where area[g] > 0 {
            kept[g] = keep(max(y1[g] - y0[g] + 1, x1[g] - x0[g] + 1), area[g], seeded[g])
        }
        for i in 0..<mask.count { mask[i] = mask[i] != 0 && kept[Int(labels.labels[i])] ? 1 : 0 }
    }

    /// The 8-connected components of the nonzero pixels of `mask`: a label per pixel (0 outside; 1, 2, … in the
    /// raster order of each component's first pixel) and their number.
    static func componentLabels(_ mask: [UInt8], width: Int, height: Int) -> (labels: [Int32], count: Int) {
        var labels = [Int32](repeating: 0, count: mask.count)
        var stack: [Int] = [], count: Int32 = 0
        for start in 0..<mask.count where mask[start] != 0 && labels[start] == 0 {
            count += 1
            labels[start] = count
            stack.append(start)
            while let i = stack.popLast() {
                let y = i / width, x = i % width
                for yy in max(y - 1, 0)...min(y + 1, height - 1) {
                    for xx in max(x - 1, 0)...min(x + 1, width - 1) where mask[yy * width + xx] != 0 && labels[yy * width + xx] == 0 {
                        labels[yy * width + xx] = count
                        stack.append(yy * width + xx)
                    }
                }
            }
        }
        return (labels, Int(count))
    }

    /// Drops the spots (components of `spots`) with more than `defectSpotCrowdMaximum` other spots whose first
    /// pixel (raster order) lies in their bounding box grown by `defectSpotCrowdRadius`.
    static func dropCrowdedSpots(_ spots: inout [UInt8], width: Int, height: Int) {
        let (labels, count) = componentLabels(spots, width: width, height: height)
        guard count > 1 else { return }
        // firsts[y + 1][x + 1]: the number of first pixels in rows < y + 1 and columns < x + 1.
        var firsts = [Int](repeating: 0, count: (height + 1) * (width + 1))
        var seen = [Bool](repeating: false, count: count + 1)
        var y0 = [Int](repeating: Int.max, count: count + 1), x0 = y0
        var y1 = [Int](repeating: Int.min, count: count + 1), x1 = y1
        for y in 0..<height {
            var row = 0
            for x in 0..<width {
                let g = Int(labels[y * width + x])
                if g > 0 {
                    if !seen[g] { seen[g] = true; row += 1 }
                    y0[g] = min(y0[g], y); y1[g] = max(y1[g], y); x0[g] = min(x0[g], x); x1[g] = max(x1[g], x)
                }
                firsts[(y + 1) * (width + 1) + x + 1] = firsts[y * (width + 1) + x + 1] + row
            }
        }
        let r = defectSpotCrowdRadius
        var kept = [Bool](repeating: false, count: count + 1)
        for g in 1...count {
            let top = max(y0[g] - r, 0), bottom = min(y1[g] + 1 + r, height)
            let left = max(x0[g] - r, 0), right = min(x1[g] + 1 + r, width)
            let inBox = firsts[bottom * (width + 1) + right] - firsts[top * (width + 1) + right]
                - firsts[bottom * (width + 1) + left] + firsts[top * (width + 1) + left]
            kept[g] = inBox - 1 <= defectSpotCrowdMaximum
        }
        for i in 0..<spots.count where spots[i] != 0 && !kept[Int(labels[i])] { spots[i] = 0 }
    }

    /// Binary dilation with a (2·radius + 1)² square, outside the image counting as 0.
    static func dilate(_ mask: [UInt8], width: Int, height: Int, radius: Int) -> [UInt8] {
        var rows = [UInt8](repeating: 0, count: mask.count), out = rows
        for y in 0..<height {
            for x in 0..<width {
                var v: UInt8 = 0
                for xx in max(x - radius, 0)...min(x + radius, width - 1) where mask[y * width + xx] != 0 { v = 1; break }
                rows[y * width + x] = v
            }
        }
        for y in 0..<height {
            for x in 0..<width {
                var v: UInt8 = 0
                for yy in max(y - radius, 0)...min(y + radius, height - 1) where rows[yy * width + x] != 0 { v = 1; break }
                out[y * width + x] = v
            }
        }
        return out
    }
}
