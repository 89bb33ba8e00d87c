import Foundation

// Lanczos resampling matching Pillow's `Image.resize(size, Image.LANCZOS)` (libImaging/Resample.c)
// bit for bit on 8-bit images: Lanczos-3 kernel (sinc(x)·sinc(x/3), support 3 scaled by the
// downscale factor), per-output-pixel window [int(center-support+0.5), int(center+support+0.5)),
// coefficients normalised to sum 1 in double, then converted to fixed point with 22 fraction bits
// (PRECISION_BITS = 32-8-2) rounding half away from zero; each pass accumulates from 1<<21 and
// clips (>>22) to 0...255; horizontal pass first (only over the rows the vertical pass reads), then
// vertical, each skipped when that dimension does not change.

extension ImageOps {
    static let resamplePrecisionBits = 22

    /// Pillow's fixed-point Lanczos coefficients for one axis.
    struct ResampleAxis {
        var ksize: Int
        /// (first input index, number of taps) per output index.
        var starts: [Int]
        var counts: [Int]
        /// ksize Int32 coefficients per output index.
        var weights: [Int32]
    }

    @inline(__always)
    static func pilSinc(_ x: Double) -> Double {
        if x == 0.0 { return 1.0 }
        let t = x * Double.pi
        return sin(t) / t
    }

    @inline(__always)
    static func pilLanczos(_ x: Double) -> Double {
        if -3.0 <= x && x < 3.0 { return pilSinc(x) * pilSinc(x / 3) }
        return 0.0
    }

    static func lanczosAxis(inSize: Int, outSize: Int) -> ResampleAxis {
        let in0: Float = 0, in1 = Float(inSize)
        let scale = Double(in1 - in0) / Double(outSize)
        let filterscale = max(scale, 1.0)
        let support = 3.0 * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var starts = [Int](repeating: 0, count: outSize)
        var counts = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        let one = Double(1 << resamplePrecisionBits)
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            var ww = 0.0
            let ss = 1.0 / filterscale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            if xmax < 0 { xmax = 0 }
            let n = min(xmax, ksize)
            for x in 0..<n {
                let w = pilLanczos((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<n {
                let v = ww != 0.0 ? k[x] / ww : k[x]
                weights[xx * ksize + x] = v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
            }
            starts[xx] = xmin
            counts[xx] = n
        }
        return ResampleAxis(ksize: ksize, starts: starts, counts: counts, weights: weights)
    }

    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        let s = v >> Int32(resamplePrecisionBits)
        return s <= 0 ? 0 : (s >= 255 ? 255 : UInt8(truncatingIfNeeded: s))
    }

    /// Which pass Pillow runs first.
    public enum PillowPassOrder: Sendable, Equatable {
        /// Pillow ≥ 13 (python-pillow PR #9549): vertical pass first when the height shrinks by more
        /// than twice as many pixels as the width does (`inH − outH > 0` and `inH − outH > 2·(inW − outW)`),
        /// else horizontal first.
        case pillow13
        /// Pillow ≤ 12 (e.g. the Pillow 9.5 A1111 pins): always horizontal first.
        case horizontalFirst
    }

    /// Horizontal pass of one plane: rows `rowStart..<rowStart+rows` of `src` (width `inW`) → `rows` × outW.
    static func lanczosHorizontal(_ src: UnsafeBufferPointer<UInt8>, base: Int, inW: Int, rowStart: Int, rows: Int,
                                  axis: ResampleAxis, outW: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rows * outW)
        let half = Int32(1 << (resamplePrecisionBits - 1))
        let ks = axis.ksize
        axis.weights.withUnsafeBufferPointer { hw in
        out.withUnsafeMutableBufferPointer { o in
            for y in 0..<rows {
                let row = base + (y + rowStart) * inW
                let orow = y * outW
                for xx in 0..<outW {
                    let start = row + axis.starts[xx], n = axis.counts[xx], k = xx * ks
                    var s = half
                    for i in 0..<n { s &+= Int32(src[start + i]) &* hw[k + i] }
                    o[orow + xx] = clip8(s)
                }
            }
        }
        }
        return out
    }

    /// Vertical pass of one plane (width `width`); input row r is at `src[base + (r − rowOffset)·width]`.
    static func lanczosVertical(_ src: UnsafeBufferPointer<UInt8>, base: Int, width: Int, rowOffset: Int,
                                axis: ResampleAxis, outH: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: outH * width)
        var acc = [Int32](repeating: 0, count: width)
        let half = Int32(1 << (resamplePrecisionBits - 1))
        let ks = axis.ksize
        axis.weights.withUnsafeBufferPointer { vw in
        out.withUnsafeMutableBufferPointer { o in
        acc.withUnsafeMutableBufferPointer { a in
            for yy in 0..<outH {
                for x in 0..<width { a[x] = half }
                let start = axis.starts[yy] - rowOffset, n = axis.counts[yy]
                for i in 0..<n {
                    let w = vw[yy * ks + i]
                    let r = base + (start + i) * width
                    for x in 0..<width { a[x] &+= Int32(src[r + x]) &* w }
                }
                let orow = yy * width
                for x in 0..<width { o[orow + x] = clip8(a[x]) }
            }
        }
        }
        }
        return out
    }

    /// Resizes an 8-bit image with Pillow's LANCZOS filter; equals
    /// `Image.fromarray(a).resize((width, height), Image.LANCZOS)` bit for bit for "L" (1 channel)
    /// and "RGB" (3 channels) images — and any channel count, each plane treated as an "L" image.
    /// `order` picks the Pillow generation to match (the pass order changes low bits).
    public static func resizeLanczos(_ image: PlanarImage8, width: Int, height: Int,
                                     order: PillowPassOrder = .pillow13) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard width > 0, height > 0, width <= 1 << 20, height <= 1 << 20 else {
            throw ImageOpsError.invalidArgument("output size \(width)x\(height)")
        }
        let inW = image.width, inH = image.height, ch = image.channels
        if width == inW && height == inH { return image }
        let needH = width != inW, needV = height != inH
        let hAxis = lanczosAxis(inSize: inW, outSize: width)
        let vAxis = lanczosAxis(inSize: inH, outSize: height)
        let dh = inH - height, dw = inW - width
        let verticalFirst = order == .pillow13 && needH && needV && dh > 0 && dh > 2 * dw
        var out = [UInt8]()
        out.reserveCapacity(width * height * ch)
        image.pixels.withUnsafeBufferPointer { src in
            for c in 0..<ch {
                let base = c * inW * inH
                let plane: [UInt8]
                if !needV {
                    plane = lanczosHorizontal(src, base: base, inW: inW, rowStart: 0, rows: inH, axis: hAxis, outW: width)
                } else if !needH {
                    plane = lanczosVertical(src, base: base, width: inW, rowOffset: 0, axis: vAxis, outH: height)
                } else if verticalFirst {
                    let tmp = lanczosVertical(src, base: base, width: inW, rowOffset: 0, axis: vAxis, outH: height)
                    plane = tmp.withUnsafeBufferPointer {
                        lanczosHorizontal($0, base: 0, inW: inW, rowStart: 0, rows: height, axis: hAxis, outW: width)
                    }
                } else {
                    // Horizontal pass only over the input rows the vertical pass reads.
                    let yFirst = vAxis.starts[0]
                    let yLast = vAxis.starts[height - 1] + vAxis.counts[height - 1]
                    let tmp = lanczosHorizontal(src, base: base, inW: inW, rowStart: yFirst, rows: yLast - yFirst,
                                                axis: hAxis, outW: width)
                    plane = tmp.withUnsafeBufferPointer {
                        lanczosVertical($0, base: 0, width: width, rowOffset: yFirst, axis: vAxis, outH: height)
                    }
                }
                out.append(contentsOf: plane)
            }
        }
        return PlanarImage8(uncheckedWidth: width, height: height, channels: ch, pixels: out)
    }

    /// Float convenience: quantises to 8 bit (`round(v·255)`), resizes as Pillow's LANCZOS does,
    /// and returns levels / 255 — the result PIL gives for the same image saved as 8-bit.
    public static func resizeLanczos(_ image: PlanarImage, width: Int, height: Int) throws -> PlanarImage {
        try resizeLanczos(image.quantized, width: width, height: height).floatImage
    }
}
