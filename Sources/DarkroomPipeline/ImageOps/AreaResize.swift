import Foundation

// OpenCV's `cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)` for 8-bit images made
// smaller (or kept) in both directions (modules/imgproc/src/resize.cpp, cv::hal::resize):
//  * same size: a copy;
//  * scale = 1 / (out / in), computed in double per axis; when both scales are integers within
//    DBL_EPSILON ("area fast"): each output is the mean of its iscale_x × iscale_y block — for 2×2 blocks
//    of 1-, 3- or 4-channel images as the integer (a + b + c + d + 2) >> 2, otherwise as
//    cvRound(Float(sum) · (1 / area)) (round half to even);
//  * otherwise the general area filter: per axis a table of (source, destination, weight) taps from
//    computeResizeAreaTab (cells [dx·scale, dx·scale + scale), partial first/last cells weighted by their
//    covered fraction when it exceeds 1e-3, all divided by the cell width, weights stored as Float); per output
//    row the covered source rows are each filtered horizontally into a Float buffer (taps in table order),
//    and accumulated as sum = β·buf for a row's first source row, sum += β·buf after; the output is
//    cvRound(sum) saturated to 0…255.
// Every step is done in the same order and precision as OpenCV, so results agree bit for bit in the
// fixtures (the test allows one level, the tolerance issue 14 sets for INTER_AREA).
// Enlarging (OpenCV's INTER_AREA then becomes a bilinear variant) is not implemented.

extension ImageOps {
    /// One tap of OpenCV's `computeResizeAreaTab`.
    struct AreaTap {
        var source: Int
        var destination: Int
        var weight: Float
    }

    /// OpenCV's `computeResizeAreaTab(ssize, dsize, 1, scale, tab)`.
    static func cvAreaTable(inSize: Int, outSize: Int, scale: Double) -> [AreaTap] {
        var taps: [AreaTap] = []
        taps.reserveCapacity(2 * inSize)
        for dx in 0..<outSize {
            let fsx1 = Double(dx) * scale
            let fsx2 = fsx1 + scale
            let cellWidth = min(scale, Double(inSize) - fsx1)
            var sx1 = Int(fsx1.rounded(.up)), sx2 = Int(fsx2.rounded(.down))
            sx2 = min(sx2, inSize - 1)
            sx1 = min(sx1, sx2)
            if Double(sx1) - fsx1 > 1e-3 {
                taps.append(AreaTap(source: sx1 - 1, destination: dx, weight: Float((Double(sx1) - fsx1) / cellWidth)))
            }
            if sx1 < sx2 {
                for sx in sx1..<sx2 { taps.append(AreaTap(source: sx, destination: dx, weight: Float(1.0 / cellWidth))) }
            }
            if fsx2 - Double(sx2) > 1e-3 {
                taps.append(AreaTap(source: sx2, destination: dx,
                                    weight: Float(min(min(fsx2 - Double(sx2), 1.0), cellWidth) / cellWidth)))
            }
        }
        return taps
    }

    @inline(__always)
    static func cvRoundSaturate(_ v: Float) -> UInt8 {
        let r = v.rounded(.toNearestOrEven)
        if !(r > 0) { return 0 }
        return r >= 255 ? 255 : UInt8(r)
    }

    /// `cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)` for 8-bit images, any channel
    /// count (each plane as OpenCV treats each interleaved channel), when neither side grows.
    public static func resizeArea(_ image: PlanarImage8, width: Int, height: Int) throws -> PlanarImage8 {
        try checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        let inW = image.width, inH = image.height, ch = image.channels
        guard width > 0, height > 0, width <= inW, height <= inH else {
            throw ImageOpsError.invalidArgument("INTER_AREA output size \(width)x\(height) for a \(inW)x\(inH) image "
                                                + "(only sizes from 1x1 up to the input's are supported)")
        }
        if width == inW && height == inH { return image }
        let scaleX = 1.0 / (Double(width) / Double(inW)), scaleY = 1.0 / (Double(height) / Double(inH))
        let iscaleX = Int(scaleX.rounded(.toNearestOrEven)), iscaleY = Int(scaleY.rounded(.toNearestOrEven))
        let isAreaFast = abs(scaleX - Double(iscaleX)) < Double.ulpOfOne && abs(scaleY - Double(iscaleY)) < Double.ulpOfOne
        var out = [UInt8](repeating: 0, count: width * height * ch)
        image.pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            if isAreaFast {
                let halving = iscaleX == 2 && iscaleY == 2 && (ch == 1 || ch == 3 || ch == 4)
                let scale = 1 / Float(iscaleX * iscaleY)
                for c in 0..<ch {
                    let inPlane = c * inW * inH, outPlane = c * width * height
                    for dy in 0..<height {
                        for dx in 0..<width {
                            var sum = 0
                            for sy in 0..<iscaleY {
                                let row = inPlane + (dy * iscaleY + sy) * inW + dx * iscaleX
                                for sx in 0..<iscaleX { sum += Int(src[row + sx]) }
                            }
                            dst[outPlane + dy * width + dx] = halving
                                ? UInt8(truncatingIfNeeded: (sum + 2) >> 2)
                                : cvRoundSaturate(Float(sum) * scale)
                        }
                    }
                }
                return
            }
            let xTaps = cvAreaTable(inSize: inW, outSize: width, scale: scaleX)
            let yTaps = cvAreaTable(inSize: inH, outSize: height, scale: scaleY)
            var buf = [Float](repeating: 0, count: width)
            var sum = [Float](repeating: 0, count: width)
            for c in 0..<ch {
                let inPlane = c * inW * inH, outPlane = c * width * height
                var j = 0
                while j < yTaps.count {
                    let dy = yTaps[j].destination
                    var first = true
                    while j < yTaps.count && yTaps[j].destination == dy {
                        let beta = yTaps[j].weight
                        let row = inPlane + yTaps[j].source * inW
                        for dx in 0..<width { buf[dx] = 0 }
                        for t in xTaps { buf[t.destination] += Float(src[row + t.source]) * t.weight }
                        if first {
                            for dx in 0..<width { sum[dx] = beta * buf[dx] }
                            first = false
                        } else {
                            for dx in 0..<width { sum[dx] += beta * buf[dx] }
                        }
                        j += 1
                    }
                    let orow = outPlane + dy * width
                    for dx in 0..<width { dst[orow + dx] = cvRoundSaturate(sum[dx]) }
                }
            }
        }
        }
        return PlanarImage8(uncheckedWidth: width, height: height, channels: ch, pixels: out)
    }
}
