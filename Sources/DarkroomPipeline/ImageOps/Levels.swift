import Foundation

// Faded-photo helpers: numpy-exact percentiles (np.percentile, method "linear"), auto levels,
// PIL-exact grayscale conversion.

extension ImageOps {
    /// How `autoLevels` measures the range.
    public enum LevelsMode: Sendable, Equatable {
        /// Each channel stretched by its own percentiles (also removes a colour cast).
        case perChannel
        /// The luminance's (PIL "L") percentiles stretch all channels alike (keeps hue balance).
        case luminance
    }

    /// numpy's linear-method index split for `q` percent of `n` sorted values: (lower index, upper
    /// index, gamma), as `_quantile` computes them ((n−1)·(q/100), floor, clamps).
    static func percentileIndex(count n: Int, q: Double) -> (Int, Int, Double) {
        let virtual = Double(n - 1) * (q / 100)
        if virtual >= Double(n - 1) { return (n - 1, n - 1, 0) }
        if virtual < 0 { return (0, 0, 0) }
        let prev = virtual.rounded(.down)
        return (Int(prev), Int(prev) + 1, virtual - prev)
    }

    /// `np.percentile(a, q)` of 8-bit values given their histogram — numpy's float64 lerp on uint8
    /// data, bit for bit.
    public static func percentile(histogram: [Int], q: Double) -> Double {
        let n = histogram.reduce(0, +)
        guard n > 0, histogram.count == 256 else { return .nan }
        let (i0, i1, t) = percentileIndex(count: n, q: q)
        func value(at k: Int) -> Int {
            var cum = 0
            for v in 0..<256 {
                cum += histogram[v]
                if cum > k { return v }
            }
            return 255
        }
        let a = Double(value(at: i0)), b = Double(value(at: i1))
        let diff = b - a
        return t >= 0.5 ? b - diff * (1 - t) : a + diff * t
    }

    /// `np.percentile(values, q)` for a float32 array — numpy's float32 lerp (weak-scalar
    /// promotion), bit for bit. O(n) (quickselect on a copy).
    public static func percentile(_ values: [Float], q: Double) -> Float {
        guard !values.isEmpty else { return .nan }
        let (i0, i1, t) = percentileIndex(count: values.count, q: q)
        var v = values
        let a = select(&v, i0)
        var b = a
        if i1 != i0 {
            // After selecting i0 every element above index i0 is ≥ a: the next order statistic is their min.
            b = v[i1]
            for k in (i0 + 1)..<v.count where v[k] < b { b = v[k] }
        }
        let diff = b - a
        return t >= 0.5 ? b - diff * Float(1 - t) : a + diff * Float(t)
    }

    /// Quickselect: puts the k-th smallest at index k, smaller-or-equal before, greater-or-equal after.
    static func select(_ v: inout [Float], _ k: Int) -> Float {
        v.withUnsafeMutableBufferPointer { a in
            var lo = 0, hi = a.count - 1
            while hi > lo {
                let mid = lo + (hi - lo) / 2
                // median of three as pivot
                if a[mid] < a[lo] { a.swapAt(mid, lo) }
                if a[hi] < a[lo] { a.swapAt(hi, lo) }
                if a[hi] < a[mid] { a.swapAt(hi, mid) }
                let pivot = a[mid]
                var i = lo, j = hi
                while i <= j {
                    while a[i] < pivot { i += 1 }
                    while a[j] > pivot { j -= 1 }
                    if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
                }
                if k <= j { hi = j } else if k >= i { lo = i } else { break }
            }
            return a[k]
        }
    }

    /// PIL `convert("L")` on 8-bit RGB: (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16. A 1-channel image
    /// is returned as is; extra channels (alpha) are ignored.
    public static func toGrayscale(_ image: PlanarImage8) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        let n = image.planeSize
        if image.channels == 1 { return image }
        guard image.channels >= 3 else { throw ImageOpsError.unsupportedChannels(image.channels) }
        var out = [UInt8](repeating: 0, count: n)
        image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n {
                let v = 19595 * Int32(p[i]) + 38470 * Int32(p[n + i]) + 7471 * Int32(p[2 * n + i]) + 0x8000
                out[i] = UInt8(truncatingIfNeeded: v >> 16)
            }
        }
        return PlanarImage8(uncheckedWidth: image.width, height: image.height, channels: 1, pixels: out)
    }

    /// Float grayscale with PIL's weights (0.299, 0.587, 0.114), 1 channel.
    public static func toGrayscale(_ image: PlanarImage) throws -> PlanarImage {
        PlanarImage(uncheckedWidth: image.width, height: image.height, channels: 1, pixels: try luminance(image))
    }

    /// True when every pixel has R, G, B within 1 level of each other (1-channel images: true).
    public static func isGrayscale(_ image: PlanarImage8) -> Bool {
        guard image.channels >= 3, image.pixels.count >= 3 * image.planeSize else { return true }
        let n = image.planeSize
        return image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n {
                let r = Int(p[i]), g = Int(p[n + i]), b = Int(p[2 * n + i])
                if abs(r - g) > 1 || abs(r - b) > 1 || abs(g - b) > 1 { return false }
            }
            return true
        }
    }

    /// Float version: compares the quantised levels (`round(v·255)`).
    public static func isGrayscale(_ image: PlanarImage) -> Bool { isGrayscale(image.quantized) }

    static func histogram(_ p: UnsafeBufferPointer<UInt8>, offset: Int, count: Int) -> [Int] {
        var h = [Int](repeating: 0, count: 256)
        for i in offset..<(offset + count) { h[Int(p[i])] += 1 }
        return h
    }

    /// Auto levels for faded photos: the `low`/`high` percentiles (np.percentile, linear) of each
    /// channel (or of the luminance) are mapped to 0/255:
    /// `clip(round((v − lo)·255 / (hi − lo)), 0, 255)` in float64, round half to even — the
    /// numpy expression, bit for bit. A channel with hi ≤ lo is left unchanged.
    public static func autoLevels(_ image: PlanarImage8, low: Double = 0.5, high: Double = 99.5,
                                  mode: LevelsMode = .perChannel) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard low.isFinite, high.isFinite, low >= 0, high <= 100, low < high else {
            throw ImageOpsError.invalidArgument("percentiles \(low), \(high)")
        }
        let n = image.planeSize
        let ranges: [(Double, Double)] = try {
            switch mode {
            case .perChannel:
                return image.pixels.withUnsafeBufferPointer { p in
                    (0..<image.channels).map { c in
                        let h = histogram(p, offset: c * n, count: n)
                        return (percentile(histogram: h, q: low), percentile(histogram: h, q: high))
                    }
                }
            case .luminance:
                let g = try toGrayscale(image)
                let h = g.pixels.withUnsafeBufferPointer { histogram($0, offset: 0, count: n) }
                let r = (percentile(histogram: h, q: low), percentile(histogram: h, q: high))
                return Array(repeating: r, count: image.channels)
            }
        }()
        var out = image.pixels
        for c in 0..<image.channels {
            let (lo, hi) = ranges[c]
            guard hi > lo else { continue }
            var lut = [UInt8](repeating: 0, count: 256)
            for v in 0..<256 {
                let s = ((Double(v) - lo) * 255.0 / (hi - lo)).rounded(.toNearestOrEven)
                lut[v] = s <= 0 ? 0 : (s >= 255 ? 255 : UInt8(s))
            }
            for i in (c * n)..<((c + 1) * n) { out[i] = lut[Int(out[i])] }
        }
        return PlanarImage8(uncheckedWidth: image.width, height: image.height, channels: image.channels, pixels: out)
    }

    /// Float auto levels: percentiles as np.percentile on the float32 values, then
    /// `clamp((v − lo) / (hi − lo), 0, 1)`.
    public static func autoLevels(_ image: PlanarImage, low: Double = 0.5, high: Double = 99.5,
                                  mode: LevelsMode = .perChannel) throws -> PlanarImage {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard low.isFinite, high.isFinite, low >= 0, high <= 100, low < high else {
            throw ImageOpsError.invalidArgument("percentiles \(low), \(high)")
        }
        let n = image.planeSize
        var ranges: [(Float, Float)] = []
        switch mode {
        case .perChannel:
            for c in 0..<image.channels {
                let plane = Array(image.pixels[(c * n)..<((c + 1) * n)])
                ranges.append((percentile(plane, q: low), percentile(plane, q: high)))
            }
        case .luminance:
            let l = try luminance(image)
            ranges = Array(repeating: (percentile(l, q: low), percentile(l, q: high)), count: image.channels)
        }
        var out = image.pixels
        for c in 0..<image.channels {
            let (lo, hi) = ranges[c]
            guard hi > lo else { continue }
            let inv = 1 / (hi - lo)
            for i in (c * n)..<((c + 1) * n) { out[i] = Swift.min(Swift.max((out[i] - lo) * inv, 0), 1) }
        }
        return PlanarImage(uncheckedWidth: image.width, height: image.height, channels: image.channels, pixels: out)
    }
}
