import Foundation

// A1111 `masked_content: fill` (modules/masking.py `fill`): the unmasked pixels, premultiplied by
// their "unmasked" alpha (255 − mask), are blurred with PIL's GaussianBlur at radii
// 256, 64, 16, 4, 2, 0 and alpha-composited (×1, ×1, ×2, ×4, ×2, ×1) onto a transparent canvas, so
// wide blurs fill the hole and narrower ones add detail toward its edge. Reproduced with PIL's
// integer arithmetic: "RGBa" premultiply/paste (MULDIV255/BLEND), ImageFilter.GaussianBlur = 3-pass
// extended box blur (BoxBlur.c: `_gaussian_blur_radius`, 24-bit fixed-point weights, edge pixels
// repeated, horizontal passes then vertical), RGBa→RGBA un-premultiply, Image.alpha_composite
// (7 extra precision bits). Bit-exact against A1111's function run on Pillow (see tests).

extension ImageOps {
    /// PIL `_gaussian_blur_radius(radius, passes)`: the extended box radius per pass.
    static func pilBoxRadius(_ radius: Float, passes: Int) -> Float {
        let sigma2: Float = radius * radius / Float(passes)
        let bigL = Float((12.0 * Double(sigma2) + 1.0).squareRoot())
        let l = Float(((Double(bigL) - 1.0) / 2.0).rounded(.down))
        var a: Float = (2 * l + 1) * (l * (l + 1) - 3 * sigma2)
        a /= 6 * (sigma2 - (l + 1) * (l + 1))
        return l + a
    }

    /// Blocked transpose of a w×h plane into h×w.
    static func transposePlane(_ src: UnsafeMutableBufferPointer<UInt8>, _ sBase: Int, _ dst: UnsafeMutableBufferPointer<UInt8>,
                               _ dBase: Int, width w: Int, height h: Int) {
        let block = 32
        var y0 = 0
        while y0 < h {
            let y1 = min(y0 + block, h)
            var x0 = 0
            while x0 < w {
                let x1 = min(x0 + block, w)
                for y in y0..<y1 {
                    for x in x0..<x1 { dst[dBase + x * h + y] = src[sBase + y * w + x] }
                }
                x0 = x1
            }
            y0 = y1
        }
    }

    /// PIL `ImageFilter.GaussianBlur(radius)` on every 8-bit plane (3 box passes per axis, horizontal
    /// passes first). Bit-exact with Pillow.
    public static func pilGaussianBlur(_ image: PlanarImage8, radius: Double) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard radius.isFinite, radius >= 0, radius < 100_000 else { throw ImageOpsError.invalidArgument("radius \(radius)") }
        var out = image
        pilGaussianBlurInPlace(&out.pixels, width: image.width, height: image.height, planes: image.channels,
                               radius: Float(radius))
        return out
    }

    /// One PIL box pass along the columns of a w×h plane (`src` → `dst`, both offset 0), vectorised
    /// across x. Per column: acc = Σ window [y−r, y+r] (edge rows repeated),
    /// out = (acc·ww + (src[y−r−1] + src[y+r+1])·fw + 2²³) >> 24 — PIL's ImagingLineBoxBlur.
    static func pilBoxColumns(_ src: UnsafeMutableBufferPointer<UInt8>, _ dst: UnsafeMutableBufferPointer<UInt8>,
                              width w: Int, height h: Int, radius r: Int, ww: UInt32, fw: UInt32,
                              acc: UnsafeMutableBufferPointer<UInt32>) {
        @inline(__always) func row(_ i: Int) -> Int { (i < 0 ? 0 : (i >= h ? h - 1 : i)) * w }
        for x in 0..<w { acc[x] = 0 }
        var i = -r - 1
        while i <= r - 1 {
            let ri = row(i)
            for x in 0..<w { acc[x] &+= UInt32(src[ri + x]) }
            i += 1
        }
        for y in 0..<h {
            let add = row(y + r), sub = row(y - r - 1), far = row(y + r + 1), out = y * w
            for x in 0..<w {
                let s = UInt32(src[sub + x])
                let a = acc[x] &+ UInt32(src[add + x]) &- s
                acc[x] = a
                let bulk = a &* ww &+ (s &+ UInt32(src[far + x])) &* fw
                dst[out + x] = UInt8(truncatingIfNeeded: (bulk &+ (1 << 23)) >> 24)
            }
        }
    }

    static func pilGaussianBlurInPlace(_ pixels: inout [UInt8], width w: Int, height h: Int, planes: Int, radius: Float) {
        let passes = 3
        let fr = pilBoxRadius(radius, passes: passes)
        guard fr != 0 else { return }
        let r = Int(fr)
        let ww = UInt32(Float(UInt32(1) << 24) / (fr * 2 + 1))
        let fw = ((UInt32(1) << 24) &- UInt32(r * 2 + 1) &* ww) / 2
        var a = [UInt8](repeating: 0, count: w * h), b = a
        var acc = [UInt32](repeating: 0, count: max(w, h))
        pixels.withUnsafeMutableBufferPointer { p in
        a.withUnsafeMutableBufferPointer { a in
        b.withUnsafeMutableBufferPointer { b in
        acc.withUnsafeMutableBufferPointer { acc in
            for c in 0..<planes {
                let plane = c * w * h
                // Horizontal passes = column passes on the transposed plane (h×w → columns are rows).
                transposePlane(p, plane, a, 0, width: w, height: h)      // a: h wide, w high
                pilBoxColumns(a, b, width: h, height: w, radius: r, ww: ww, fw: fw, acc: acc)
                pilBoxColumns(b, a, width: h, height: w, radius: r, ww: ww, fw: fw, acc: acc)
                pilBoxColumns(a, b, width: h, height: w, radius: r, ww: ww, fw: fw, acc: acc)
                transposePlane(b, 0, a, 0, width: h, height: w)          // a: w wide, h high
                pilBoxColumns(a, b, width: w, height: h, radius: r, ww: ww, fw: fw, acc: acc)
                pilBoxColumns(b, a, width: w, height: h, radius: r, ww: ww, fw: fw, acc: acc)
                let dst = UnsafeMutableBufferPointer(rebasing: p[plane..<(plane + w * h)])
                pilBoxColumns(a, dst, width: w, height: h, radius: r, ww: ww, fw: fw, acc: acc)
            }
        }
        }
        }
        }
    }

    @inline(__always) static func div255(_ a: UInt32) -> UInt32 { let t = a + 128; return ((t >> 8) + t) >> 8 }

    /// A1111 `masking.fill(image, mask)` (`masked_content: fill`) on an 8-bit RGB image and an
    /// 8-bit mask (255 = masked; grey values, e.g. a blurred mask, blend as in A1111). Pixels with
    /// mask 0 come back unchanged. Bit-exact with A1111's function on Pillow.
    public static func fillMaskedArea(image: PlanarImage8, mask: PlanarImage8) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        try checkShape(width: mask.width, height: mask.height, channels: mask.channels, count: mask.pixels.count)
        guard image.channels == 3 else { throw ImageOpsError.unsupportedChannels(image.channels) }
        guard mask.channels == 1 else { throw ImageOpsError.unsupportedChannels(mask.channels) }
        guard mask.width == image.width, mask.height == image.height else { throw ImageOpsError.sizeMismatch }
        let w = image.width, h = image.height, n = w * h
        // image_masked: RGBa, the RGBA (alpha 255) image premultiplied and pasted through 255 − mask.
        var masked = [UInt8](repeating: 0, count: 4 * n)
        for i in 0..<n {
            let m = 255 - UInt32(mask.pixels[i])
            for c in 0..<3 {
                let pre = div255(UInt32(image.pixels[c * n + i]) * 255)        // RGBA→RGBa, alpha 255
                masked[c * n + i] = UInt8(truncatingIfNeeded: div255(pre * m))
            }
            masked[3 * n + i] = UInt8(truncatingIfNeeded: div255(255 * m))
        }
        var canvas = [UInt8](repeating: 0, count: 4 * n)       // image_mod: transparent RGBA
        var blurred = [UInt8](repeating: 0, count: 4 * n)
        // RGBa → RGBA: CLIP8(255·c / a) for 0 < a < 255, as a table indexed a·256 + c.
        var unpremultiply = [UInt8](repeating: 0, count: 256 * 256)
        for a in 1..<255 { for c in 0..<256 { unpremultiply[a * 256 + c] = UInt8(min(255 * c / a, 255)) } }
        for (radius, repeats) in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)] {
            blurred = masked
            if radius > 0 { pilGaussianBlurInPlace(&blurred, width: w, height: h, planes: 4, radius: Float(radius)) }
            // RGBa → RGBA
            blurred.withUnsafeMutableBufferPointer { b in
            unpremultiply.withUnsafeBufferPointer { lut in
                for i in 0..<n {
                    let a = Int(b[3 * n + i])
                    if a != 0 && a != 255 {
                        for c in 0..<3 { b[c * n + i] = lut[a &* 256 &+ Int(b[c * n + i])] }
                    }
                }
            }
            }
            for _ in 0..<repeats { alphaComposite(&canvas, over: blurred, count: n) }
        }
        return PlanarImage8(uncheckedWidth: w, height: h, channels: 3, pixels: Array(canvas[0..<(3 * n)]))
    }

    /// PIL `Image.alpha_composite(dst, src)` in place on planar RGBA.
    static func alphaComposite(_ dst: inout [UInt8], over src: [UInt8], count n: Int) {
        @inline(__always) func shiftDiv255(_ a: UInt32) -> UInt32 { ((a >> 8) &+ a) >> 8 }
        dst.withUnsafeMutableBufferPointer { d in
        src.withUnsafeBufferPointer { s in
            for i in 0..<n {
                let sa = UInt32(s[3 * n + i])
                if sa == 0 { continue }
                let da = UInt32(d[3 * n + i])
                let blend = da * (255 - sa)
                let outa255 = sa * 255 + blend
                let coef1 = sa * 255 * 255 * 128 / outa255
                let coef2 = 255 * 128 - coef1
                for c in 0..<3 {
                    let t = UInt32(s[c * n + i]) * coef1 + UInt32(d[c * n + i]) * coef2
                    d[c * n + i] = UInt8(truncatingIfNeeded: shiftDiv255(t + (0x80 << 7)) >> 7)
                }
                d[3 * n + i] = UInt8(truncatingIfNeeded: shiftDiv255(outa255 + 0x80))
            }
        }
        }
    }

    /// Float convenience for `fillMaskedArea`: image and mask quantised to levels, filled as A1111
    /// does, returned as levels / 255. Mask values > 0 mark the hole (1 = fully masked).
    public static func fillMaskedArea(image: PlanarImage, mask: PlanarImage) throws -> PlanarImage {
        try fillMaskedArea(image: image.quantized, mask: mask.quantized).floatImage
    }
}
