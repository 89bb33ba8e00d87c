import Foundation

/// A crop rectangle in pixel coordinates, `x2`/`y2` exclusive (PIL box convention).
/// After `expandCropRegion` it may extend past the image (A1111 does not clamp every case).
public struct CropBox: Sendable, Equatable, CustomStringConvertible {
    public var x1: Int, y1: Int, x2: Int, y2: Int
    public init(x1: Int, y1: Int, x2: Int, y2: Int) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2
    }
    public var width: Int { x2 - x1 }
    public var height: Int { y2 - y1 }
    public var description: String { "(\(x1), \(y1), \(x2), \(y2))" }
}

extension ImageOps {
    /// Python's `a // b` (floor division) for b > 0.
    @inline(__always)
    static func floorDiv(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// Bounding box (x2/y2 exclusive) of the pixels where any channel is non-zero, or nil if none.
    static func maskBoundingBox(_ p: [UInt8], width: Int, height: Int, channels: Int) -> CropBox? {
        var x1 = width, y1 = height, x2 = 0, y2 = 0
        let n = width * height
        p.withUnsafeBufferPointer { m in
            for y in 0..<height {
                var rowMin = width, rowMax = -1
                for c in 0..<channels {
                    let row = c * n + y * width
                    for x in 0..<width where m[row + x] != 0 {
                        if x < rowMin { rowMin = x }
                        break
                    }
                    var x = width - 1
                    while x > rowMax {
                        if m[row + x] != 0 { rowMax = x; break }
                        x -= 1
                    }
                }
                if rowMax >= 0 {
                    if y < y1 { y1 = y }
                    y2 = y + 1
                    x1 = min(x1, rowMin)
                    x2 = max(x2, rowMax + 1)
                }
            }
        }
        return x2 > 0 ? CropBox(x1: x1, y1: y1, x2: x2, y2: y2) : nil
    }

    /// A1111 "Only masked" crop: `masking.get_crop_region_v2(mask, pad)` — PIL `getbbox()` of the
    /// mask (pixels > 0) grown by `padding` on every side and clamped to the image; nil for an
    /// all-zero mask (A1111 then falls back to whole-picture inpainting).
    public static func cropRegion(mask: PlanarImage8, padding: Int) throws -> CropBox? {
        try checkShape(width: mask.width, height: mask.height, channels: mask.channels, count: mask.pixels.count)
        guard padding >= 0 else { throw ImageOpsError.invalidArgument("padding \(padding)") }
        let p = mask.pixels
        guard let b = maskBoundingBox(p, width: mask.width, height: mask.height, channels: mask.channels)
        else { return nil }
        return CropBox(x1: max(b.x1 - padding, 0), y1: max(b.y1 - padding, 0),
                       x2: min(b.x2 + padding, mask.width), y2: min(b.y2 + padding, mask.height))
    }

    /// `cropRegion` for a float mask: pixels with value > 0 count as masked.
    public static func cropRegion(mask: PlanarImage, padding: Int) throws -> CropBox? {
        try checkShape(width: mask.width, height: mask.height, channels: mask.channels, count: mask.pixels.count)
        guard padding >= 0 else { throw ImageOpsError.invalidArgument("padding \(padding)") }
        let p: [UInt8] = mask.pixels.map { $0 > 0 ? 1 : 0 }
        guard let b = maskBoundingBox(p, width: mask.width, height: mask.height, channels: mask.channels)
        else { return nil }
        return CropBox(x1: max(b.x1 - padding, 0), y1: max(b.y1 - padding, 0),
                       x2: min(b.x2 + padding, mask.width), y2: min(b.y2 + padding, mask.height))
    }

    /// A1111 `masking.expand_crop_region(crop_region, processing_width, processing_height,
    /// image_width, image_height)`: grows the shorter side of the box (centred, floor-halved) to the
    /// processing aspect ratio, shifts it back inside the image where possible and clamps the far
    /// edge. Same float arithmetic and integer truncation as the Python. The box can still exceed the
    /// image when the desired size is larger than the image (as in A1111).
    public static func expandCropRegion(_ box: CropBox, processingWidth: Int, processingHeight: Int,
                                        imageWidth: Int, imageHeight: Int) throws -> CropBox {
        guard processingWidth > 0, processingHeight > 0, imageWidth > 0, imageHeight > 0,
              box.x2 > box.x1, box.y2 > box.y1 else {
            throw ImageOpsError.invalidArgument("crop \(box), processing \(processingWidth)x\(processingHeight)")
        }
        var (x1, y1, x2, y2) = (box.x1, box.y1, box.x2, box.y2)
        let ratioCrop = Double(x2 - x1) / Double(y2 - y1)
        let ratioProcessing = Double(processingWidth) / Double(processingHeight)
        if ratioCrop > ratioProcessing {
            let desiredHeight = Double(x2 - x1) / ratioProcessing
            let diff = Int(desiredHeight - Double(y2 - y1))
            y1 -= floorDiv(diff, 2)
            y2 += diff - floorDiv(diff, 2)
            if y2 >= imageHeight {
                let d = y2 - imageHeight
                y2 -= d
                y1 -= d
            }
            if y1 < 0 {
                y2 -= y1
                y1 = 0
            }
            if y2 >= imageHeight { y2 = imageHeight }
        } else {
            let desiredWidth = Double(y2 - y1) * ratioProcessing
            let diff = Int(desiredWidth - Double(x2 - x1))
            x1 -= floorDiv(diff, 2)
            x2 += diff - floorDiv(diff, 2)
            if x2 >= imageWidth {
                let d = x2 - imageWidth
                x2 -= d
                x1 -= d
            }
            if x1 < 0 {
                x2 -= x1
                x1 = 0
            }
            if x2 >= imageWidth { x2 = imageWidth }
        }
        return CropBox(x1: x1, y1: y1, x2: x2, y2: y2)
    }

    /// A1111's full "Only masked" region: `get_crop_region_v2` + `expand_crop_region`.
    public static func a1111InpaintRegion(mask: PlanarImage8, padding: Int, processingWidth: Int,
                                          processingHeight: Int) throws -> CropBox? {
        guard let box = try cropRegion(mask: mask, padding: padding) else { return nil }
        return try expandCropRegion(box, processingWidth: processingWidth, processingHeight: processingHeight,
                                    imageWidth: mask.width, imageHeight: mask.height)
    }

    /// diffusers `VaeImageProcessor.get_crop_region(mask_image, width, height, pad)` (used by
    /// `padding_mask_crop`): the first/last non-zero columns and rows of the mask, padded and
    /// clamped, then the same aspect expansion as A1111. Identical to `a1111InpaintRegion` for any
    /// non-empty mask; nil for an all-zero mask (diffusers would divide by zero there).
    public static func diffusersCropRegion(mask: PlanarImage8, width: Int, height: Int, padding: Int) throws -> CropBox? {
        try a1111InpaintRegion(mask: mask, padding: padding, processingWidth: width, processingHeight: height)
    }
}
