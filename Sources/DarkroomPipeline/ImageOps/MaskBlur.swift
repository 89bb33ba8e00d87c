import Foundation

// A1111's inpainting mask blur (modules/processing.py):
//     kernel_size = 2 * int(2.5 * blur_x + 0.5) + 1
//     np_mask = cv2.GaussianBlur(np_mask, (kernel_size, 1), blur_x)      # then, as uint8,
//     np_mask = cv2.GaussianBlur(np_mask, (1, kernel_size), blur_y)
// OpenCV blurs 8-bit images with its bit-exact fixed-point path (GaussianBlurFixedPoint): the kernel
// from getGaussianKernelBitExact — exp(-x²/(2σ²)) normalised in double — quantised to 1/256 units
// by getGaussianKernelFixedPoint_ED (side taps rounded half-to-even with the rounding error carried
// to the next tap; centre tap 256 − 2·Σ(side taps)) — applied as an integer sum,
// and the result rounded as (Σ·256 + 2¹⁵) >> 16, i.e. (Σ + 128) >> 8. Border: BORDER_REFLECT_101
// (…c b | a b c…). Matches cv2 exactly (see ImageOpsTests).

extension ImageOps {
    /// OpenCV's 8-bit Gaussian kernel (`getGaussianKernelBitExact` + `getGaussianKernelFixedPoint_ED`
    /// into `ufixedpoint16`), in units of 1/256. `n` odd, `sigma` > 0.
    static func cvGaussianKernelFixed(size n: Int, sigma: Double) -> [Int] {
        guard n > 1 else { return [256] }
        let scale2X = -0.125 / (sigma * sigma)
        let n2 = (n - 1) / 2
        var values = [Double](repeating: 0, count: n2)
        var sum = 0.0
        var x = 1 - n
        for i in 0..<n2 {
            let t = exp(Double(x * x) * scale2X)
            values[i] = t
            sum += t
            x += 2
        }
        sum *= 2
        sum += 1
        if n & 1 == 0 { sum += 1 }
        let mul1 = 1.0 / sum
        // getGaussianKernelFixedPoint_ED: side taps rounded (half to even) with the rounding error
        // carried to the next tap (error diffusion), centre = 256 − 2·Σ(side taps).
        var result = [Int](repeating: 0, count: n)
        var err = 0.0
        var total = 0
        for i in 0..<n2 {
            let adj = values[i] * mul1 * 256 + err
            let v0 = Int(adj.rounded(.toNearestOrEven))
            err = adj - Double(v0)
            result[i] = v0
            result[n - 1 - i] = v0
            total += v0
        }
        result[n2] = 256 - 2 * total
        return result
    }

    /// OpenCV `borderInterpolate(p, len, BORDER_REFLECT_101)`.
    @inline(__always)
    static func reflect101(_ p: Int, _ len: Int) -> Int {
        if len == 1 { return 0 }
        var p = p
        while p < 0 || p >= len {
            if p < 0 { p = -p } else { p = 2 * len - 2 - p }
        }
        return p
    }

    /// A1111's kernel size for a mask blur of `sigma`: `2 * int(2.5 * sigma + 0.5) + 1`.
    public static func a1111BlurKernelSize(sigma: Double) -> Int { 2 * Int(2.5 * sigma + 0.5) + 1 }

    /// One `cv2.GaussianBlur` along one axis of every plane (8-bit, REFLECT_101), in place semantics.
    static func cvBlurAxis(_ pixels: [UInt8], width: Int, height: Int, channels: Int,
                           sigma: Double, horizontal: Bool) -> [UInt8] {
        let ksize = a1111BlurKernelSize(sigma: sigma)
        let kernel = cvGaussianKernelFixed(size: ksize, sigma: sigma)
        let r = ksize / 2
        // Drop zero taps (tails that round to 0 at 1/256).
        var taps: [(offset: Int, weight: Int32)] = []
        for (i, w) in kernel.enumerated() where w != 0 { taps.append((i - r, Int32(w))) }
        var out = [UInt8](repeating: 0, count: pixels.count)
        let lineLen = horizontal ? width : height
        var line = [Int32](repeating: 0, count: lineLen + 2 * r)
        var acc = [Int32](repeating: 0, count: width)
        pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
        line.withUnsafeMutableBufferPointer { ln in
        acc.withUnsafeMutableBufferPointer { a in
            for c in 0..<channels {
                let plane = c * width * height
                if horizontal {
                    for y in 0..<height {
                        let row = plane + y * width
                        for i in 0..<(width + 2 * r) { ln[i] = Int32(src[row + reflect101(i - r, width)]) }
                        for x in 0..<width {
                            var s: Int32 = 128
                            for t in taps { s &+= ln[x + r + t.offset] &* t.weight }
                            dst[row + x] = UInt8(truncatingIfNeeded: min(s >> 8, 255))
                        }
                    }
                } else {
                    for y in 0..<height {
                        for x in 0..<width { a[x] = 128 }
                        for t in taps {
                            let sy = reflect101(y + t.offset, height)
                            let row = plane + sy * width
                            for x in 0..<width { a[x] &+= Int32(src[row + x]) &* t.weight }
                        }
                        let orow = plane + y * width
                        for x in 0..<width { dst[orow + x] = UInt8(truncatingIfNeeded: min(a[x] >> 8, 255)) }
                    }
                }
            }
        }
        }
        }
        }
        return out
    }

    /// A1111's mask blur on an 8-bit mask (any channel count; each plane independently):
    /// `cv2.GaussianBlur(m, (k, 1), sigmaX)` then `cv2.GaussianBlur(m, (1, k), sigmaY)` with
    /// k = 2·int(2.5·σ+0.5)+1, each step skipped when its σ is 0. Bit-exact with OpenCV.
    public static func gaussianBlurA1111(mask: PlanarImage8, radiusX: Double, radiusY: Double) throws -> PlanarImage8 {
        try checkShape(width: mask.width, height: mask.height, channels: mask.channels, count: mask.pixels.count)
        guard radiusX.isFinite, radiusY.isFinite, radiusX >= 0, radiusY >= 0, radiusX < 10_000, radiusY < 10_000 else {
            throw ImageOpsError.invalidArgument("blur radius \(radiusX), \(radiusY)")
        }
        var p = mask.pixels
        if radiusX > 0 {
            p = cvBlurAxis(p, width: mask.width, height: mask.height, channels: mask.channels, sigma: radiusX, horizontal: true)
        }
        if radiusY > 0 {
            p = cvBlurAxis(p, width: mask.width, height: mask.height, channels: mask.channels, sigma: radiusY, horizontal: false)
        }
        return PlanarImage8(uncheckedWidth: mask.width, height: mask.height, channels: mask.channels, pixels: p)
    }

    /// A1111's mask blur (`mask_blur` = `radius` for both axes) on an 8-bit mask. Bit-exact with cv2.
    public static func gaussianBlurA1111(mask: PlanarImage8, radius: Double) throws -> PlanarImage8 {
        try gaussianBlurA1111(mask: mask, radiusX: radius, radiusY: radius)
    }

    /// Float convenience: the mask is quantised to levels (`round(v·255)`, as A1111 holds it in an
    /// "L" image), blurred exactly as A1111/cv2 do, and returned as levels / 255.
    public static func gaussianBlurA1111(mask: PlanarImage, radius: Double) throws -> PlanarImage {
        try gaussianBlurA1111(mask: mask.quantized, radiusX: radius, radiusY: radius).floatImage
    }
}
