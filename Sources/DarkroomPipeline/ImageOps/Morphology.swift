import Foundation

// Grey-scale morphology with a square structuring element, separable (row pass, column pass).
// At the image border the window is clipped to the image, which for min/max equals
// scipy.ndimage's mode="reflect" (skimage.morphology's default) whenever the radius is smaller
// than the image. Float results are exact (min, max and one subtraction), so the top-hats equal
// skimage.morphology.white_tophat / black_tophat on the same float32 input bit for bit.

extension ImageOps {
    /// Min (erode) or max (dilate) over a (2r+1)×(2r+1) square, window clipped to the image.
    static func squareFilter(_ p: [Float], width: Int, height: Int, radius r: Int, takeMax: Bool) -> [Float] {
        if r <= 0 { return p }
        var tmp = [Float](repeating: 0, count: p.count)
        var out = [Float](repeating: 0, count: p.count)
        p.withUnsafeBufferPointer { src in
        tmp.withUnsafeMutableBufferPointer { t in
        out.withUnsafeMutableBufferPointer { o in
            for y in 0..<height {
                let row = y * width
                for x in 0..<width {
                    let lo = max(0, x - r), hi = min(width - 1, x + r)
                    var m = src[row + lo]
                    var i = lo + 1
                    if takeMax {
                        while i <= hi { m = Swift.max(m, src[row + i]); i += 1 }
                    } else {
                        while i <= hi { m = Swift.min(m, src[row + i]); i += 1 }
                    }
                    t[row + x] = m
                }
            }
            for y in 0..<height {
                let lo = max(0, y - r), hi = min(height - 1, y + r)
                let orow = y * width
                let first = lo * width
                for x in 0..<width { o[orow + x] = t[first + x] }
                if hi > lo {
                    for yy in (lo + 1)...hi {
                        let r2 = yy * width
                        if takeMax {
                            for x in 0..<width { o[orow + x] = Swift.max(o[orow + x], t[r2 + x]) }
                        } else {
                            for x in 0..<width { o[orow + x] = Swift.min(o[orow + x], t[r2 + x]) }
                        }
                    }
                }
            }
        }
        }
        }
        return out
    }

    static func footprintRadius(_ size: Int) -> Int { max(1, size) / 2 }

    /// `plane − opening(plane)` with a `size`×`size` square (odd `size`; even sizes use size+1).
    /// Equals `skimage.morphology.white_tophat(plane, np.ones((size, size)))` for float32 input.
    public static func whiteTopHat(_ plane: [Float], width: Int, height: Int, size: Int) throws -> [Float] {
        try checkShape(width: width, height: height, channels: 1, count: plane.count)
        let r = footprintRadius(size)
        let opened = squareFilter(squareFilter(plane, width: width, height: height, radius: r, takeMax: false),
                                  width: width, height: height, radius: r, takeMax: true)
        var out = opened
        for i in 0..<plane.count { out[i] = plane[i] - opened[i] }
        return out
    }

    /// `closing(plane) − plane` with a `size`×`size` square. Equals
    /// `skimage.morphology.black_tophat(plane, np.ones((size, size)))` for float32 input.
    public static func blackTopHat(_ plane: [Float], width: Int, height: Int, size: Int) throws -> [Float] {
        try checkShape(width: width, height: height, channels: 1, count: plane.count)
        let r = footprintRadius(size)
        let closed = squareFilter(squareFilter(plane, width: width, height: height, radius: r, takeMax: true),
                                  width: width, height: height, radius: r, takeMax: false)
        var out = closed
        for i in 0..<plane.count { out[i] = closed[i] - plane[i] }
        return out
    }

    /// Luminance plane in [0, 1]: the single channel of a 1-channel image, otherwise
    /// 0.299 R + 0.587 G + 0.114 B (ITU-R 601, PIL's "L" weights).
    public static func luminance(_ image: PlanarImage) throws -> [Float] {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        let n = image.planeSize
        if image.channels < 3 { return Array(image.pixels[0..<n]) }
        var out = [Float](repeating: 0, count: n)
        image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<n { out[i] = 0.299 * p[i] + 0.587 * p[n + i] + 0.114 * p[2 * n + i] }
        }
        return out
    }

    /// Restoration defect mask (scratches, dust, small tears in old photos): on the luminance,
    /// white top-hat (thin bright structures) and black top-hat (thin dark ones) with a
    /// `maxWidth`×`maxWidth` square (structures narrower than the square respond fully), pixels
    /// where either exceeds `threshold` (fraction of full range; 0.12 ≈ 31 levels), dilated by a
    /// (2·`dilation`+1) square so inpainting also covers the defect edges. Returns a 1-channel
    /// 0/1 mask.
    public static func defectMask(image: PlanarImage, threshold: Float = 0.12, maxWidth: Int = 5,
                                  dilation: Int = 1) throws -> PlanarImage {
        try defectMask(luminance: try luminance(image), width: image.width, height: image.height,
                       threshold: threshold, maxWidth: maxWidth, dilation: dilation)
    }

    /// `defectMask` for an 8-bit image; the luminance is PIL's "L" conversion / 255 (exactly the
    /// float32 input the skimage reference uses).
    public static func defectMask(image: PlanarImage8, threshold: Float = 0.12, maxWidth: Int = 5,
                                  dilation: Int = 1) throws -> PlanarImage {
        let gray = try toGrayscale(image)
        return try defectMask(luminance: gray.pixels.map { Float($0) / 255 }, width: image.width,
                              height: image.height, threshold: threshold, maxWidth: maxWidth, dilation: dilation)
    }

    static func defectMask(luminance lum: [Float], width: Int, height: Int, threshold: Float, maxWidth: Int,
                           dilation: Int) throws -> PlanarImage {
        guard threshold.isFinite, threshold >= 0, maxWidth >= 1, maxWidth <= 255, dilation >= 0, dilation <= 255 else {
            throw ImageOpsError.invalidArgument("threshold \(threshold), maxWidth \(maxWidth), dilation \(dilation)")
        }
        let w = try whiteTopHat(lum, width: width, height: height, size: maxWidth)
        let b = try blackTopHat(lum, width: width, height: height, size: maxWidth)
        var raw = [Float](repeating: 0, count: lum.count)
        for i in 0..<lum.count where Swift.max(w[i], b[i]) > threshold { raw[i] = 1 }
        let mask = squareFilter(raw, width: width, height: height, radius: dilation, takeMax: true)
        return PlanarImage(uncheckedWidth: width, height: height, channels: 1, pixels: mask)
    }
}
