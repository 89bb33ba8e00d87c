import Foundation

// OpenCV's `cv2.Canny(image, threshold1, threshold2)` (modules/imgproc/src/canny.cpp, aperture 3,
// L2gradient false) on 8-bit images with any number of channels, bit for bit:
//  1. thresholds: swapped when low > high, then floored (cvFloor); a pixel is a candidate when its
//     magnitude is > low, and strong when it is > high;
//  2. gradients: 3×3 Sobel (dx: [−1 0 1] across, [1 2 1] down; dy transposed), BORDER_REPLICATE,
//     exact integers (the CV_16S result never saturates for 8-bit input: |d| ≤ 1020);
//  3. magnitude |dx| + |dy|; with several channels, each pixel takes the channel with the largest
//     magnitude (the first one on ties) and that channel's dx, dy;
//  4. non-maximum suppression along the gradient direction, quantised with tan 22.5° ≈ 13573 / 2¹⁵:
//     horizontal neighbours when |dy|·2¹⁵ < |dx|·13573, vertical ones when |dy|·2¹⁵ > |dx|·(13573 + 2¹⁶),
//     else the diagonal given by the signs of dx and dy. The pixel must beat the neighbour before it
//     (left / above) strictly and the one after it with ≥ (diagonals: strictly both). Magnitudes outside
//     the image count as 0;
//  5. hysteresis: every candidate 8-connected (through candidates) to a strong pixel is an edge;
//  6. output 255 on edges, 0 elsewhere.
// OpenCV splits the rows between threads and runs IPP/HAL variants; all of them give this same map
// (the fixture script checks 1 thread against many).

extension ImageOps {
    /// OpenCV's Canny threshold for 8-bit L1 gradients: magnitudes never exceed 2040 (4·255 + 4·255),
    /// so any larger threshold behaves alike; clamping first keeps `cvFloor` in range.
    static let cannyThresholdCeiling = 1_000_000.0

    /// `cv2.Canny(image, low, high)` (aperture 3, L1 gradient), bit-exact with OpenCV. `image` has any
    /// number of channels (OpenCV's rule for several: per pixel the channel with the largest gradient);
    /// the result is one plane of 0/255. Thresholds must be finite and ≥ 0; they are swapped when
    /// `low > high`, as OpenCV does.
    public static func canny(_ image: PlanarImage8, lowThreshold: Double, highThreshold: Double) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard lowThreshold.isFinite, highThreshold.isFinite, lowThreshold >= 0, highThreshold >= 0 else {
            throw ImageOpsError.invalidArgument("Canny thresholds \(lowThreshold), \(highThreshold) (finite, ≥ 0)")
        }
        var lowT = min(lowThreshold, cannyThresholdCeiling), highT = min(highThreshold, cannyThresholdCeiling)
        if lowT > highT { swap(&lowT, &highT) }
        let low = Int32(lowT.rounded(.down)), high = Int32(highT.rounded(.down))
        let w = image.width, h = image.height, n = w * h

        // 2.–3. Per pixel: the largest magnitude over the channels, with its dx and dy.
        var mag = [Int32](repeating: -1, count: n)
        var gx = [Int32](repeating: 0, count: n)
        var gy = [Int32](repeating: 0, count: n)
        image.pixels.withUnsafeBufferPointer { src in
        mag.withUnsafeMutableBufferPointer { m in
        gx.withUnsafeMutableBufferPointer { gxp in
        gy.withUnsafeMutableBufferPointer { gyp in
            for c in 0..<image.channels {
                let plane = c * n
                for y in 0..<h {
                    let up = plane + max(y - 1, 0) * w, mid = plane + y * w, down = plane + min(y + 1, h - 1) * w
                    for x in 0..<w {
                        let l = max(x - 1, 0), r = min(x + 1, w - 1)
                        let a = Int32(src[up + l]), b = Int32(src[up + x]), cc = Int32(src[up + r])
                        let d = Int32(src[mid + l]), f = Int32(src[mid + r])
                        let g = Int32(src[down + l]), hh = Int32(src[down + x]), k = Int32(src[down + r])
                        let dx = (cc - a) + 2 * (f - d) + (k - g)
                        let dy = (g - a) + 2 * (hh - b) + (k - cc)
                        let s = abs(dx) + abs(dy)
                        let i = y * w + x
                        if s > m[i] {   // strict: the first channel wins ties
                            m[i] = s
                            gxp[i] = dx
                            gyp[i] = dy
                        }
                    }
                }
            }
        }
        }
        }
        }

        // 4. Non-maximum suppression into a map with a one-pixel frame:
        //    0 = candidate, 1 = not an edge, 2 = edge.
        let mw = w + 2
        var map = [UInt8](repeating: 1, count: mw * (h + 2))
        var stack: [Int] = []
        let tg22: Int32 = 13573
        mag.withUnsafeBufferPointer { m in
        map.withUnsafeMutableBufferPointer { mp in
            @inline(__always) func at(_ x: Int, _ y: Int) -> Int32 {
                (x < 0 || y < 0 || x >= w || y >= h) ? 0 : m[y * w + x]
            }
            for y in 0..<h {
                for x in 0..<w {
                    let i = y * w + x
                    let v = m[i]
                    guard v > low else { continue }
                    let xs = gx[i], ys = gy[i]
                    let ax = abs(xs), ay = abs(ys) << 15
                    let tg22x = ax &* tg22
                    let isMax: Bool
                    if ay < tg22x {
                        isMax = v > at(x - 1, y) && v >= at(x + 1, y)
                    } else if ay > tg22x &+ (ax << 16) {
                        isMax = v > at(x, y - 1) && v >= at(x, y + 1)
                    } else {
                        let s = (xs ^ ys) < 0 ? -1 : 1
                        isMax = v > at(x - s, y - 1) && v > at(x + s, y + 1)
                    }
                    guard isMax else { continue }
                    let p = (y + 1) * mw + x + 1
                    if v > high {
                        mp[p] = 2
                        stack.append(p)
                    } else {
                        mp[p] = 0
                    }
                }
            }
            // 5. Hysteresis (the frame is 1, so the walk never leaves the image).
            let neighbours = [-mw - 1, -mw, -mw + 1, -1, 1, mw - 1, mw, mw + 1]
            while let p = stack.popLast() {
                for o in neighbours where mp[p + o] == 0 {
                    mp[p + o] = 2
                    stack.append(p + o)
                }
            }
        }
        }

        // 6.
        var out = [UInt8](repeating: 0, count: n)
        for y in 0..<h {
            for x in 0..<w where map[(y + 1) * mw + x + 1] == 2 { out[y * w + x] = 255 }
        }
        return PlanarImage8(uncheckedWidth: w, height: h, channels: 1, pixels: out)
    }
}
