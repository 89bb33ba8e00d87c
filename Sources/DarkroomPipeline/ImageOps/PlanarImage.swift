import Foundation

/// Planar float image: `channels` planes of width×height, values in [0, 1] (or 0/1 for masks).
/// Pixels are channel-major: `pixels[(c * height + y) * width + x]`.
public struct PlanarImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [Float]

    public init(width: Int, height: Int, channels: Int, pixels: [Float]) throws {
        try ImageOps.checkShape(width: width, height: height, channels: channels, count: pixels.count)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A constant image.
    public init(width: Int, height: Int, channels: Int, value: Float = 0) throws {
        try ImageOps.checkShape(width: width, height: height, channels: channels,
                                count: max(0, width) * max(0, height) * max(0, channels))
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = [Float](repeating: value, count: width * height * channels)
    }

    /// Internal, unchecked (callers guarantee the shape).
    init(uncheckedWidth width: Int, height: Int, channels: Int, pixels: [Float]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    public var planeSize: Int { width * height }
}

/// Planar 8-bit image, same layout as `PlanarImage` (channel-major). The 8-bit entry points of the
/// PIL/OpenCV-matching operations take and return this type.
public struct PlanarImage8: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        try ImageOps.checkShape(width: width, height: height, channels: channels, count: pixels.count)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    init(uncheckedWidth width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// From interleaved (HWC, as numpy/PIL hold them) bytes.
    public init(interleaved: [UInt8], width: Int, height: Int, channels: Int) throws {
        try ImageOps.checkShape(width: width, height: height, channels: channels, count: interleaved.count)
        let n = width * height
        var out = [UInt8](repeating: 0, count: interleaved.count)
        for c in 0..<channels {
            for i in 0..<n { out[c * n + i] = interleaved[i * channels + c] }
        }
        self.init(uncheckedWidth: width, height: height, channels: channels, pixels: out)
    }

    /// Interleaved (HWC) bytes.
    public var interleaved: [UInt8] {
        let n = width * height
        var out = [UInt8](repeating: 0, count: pixels.count)
        for c in 0..<channels {
            for i in 0..<n { out[i * channels + c] = pixels[c * n + i] }
        }
        return out
    }

    public var planeSize: Int { width * height }

    /// Levels 0...255 → [0, 1] (v / 255).
    public var floatImage: PlanarImage {
        PlanarImage(uncheckedWidth: width, height: height, channels: channels,
                    pixels: pixels.map { Float($0) / 255 })
    }
}

extension PlanarImage {
    /// [0, 1] → levels, `round(v * 255)` clamped (NaN → 0).
    public var quantized: PlanarImage8 {
        PlanarImage8(uncheckedWidth: width, height: height, channels: channels,
                     pixels: pixels.map(ImageOps.quantize))
    }
}

public enum ImageOpsError: Error, Equatable, Sendable {
    /// Width, height or channel count is not positive, or the pixel buffer has the wrong length.
    case invalidShape(width: Int, height: Int, channels: Int, count: Int)
    /// The operation needs a specific channel count (e.g. 1 for masks, 1 or 3 for photos).
    case unsupportedChannels(Int)
    /// Two inputs (image and mask) differ in size.
    case sizeMismatch
    /// A parameter is out of range.
    case invalidArgument(String)
}

/// Namespace for the pixel operations inpainting and photo restoration need.
public enum ImageOps {
    static func checkShape(width: Int, height: Int, channels: Int, count: Int) throws {
        guard width > 0, height > 0, channels > 0,
              width.multipliedReportingOverflow(by: height).overflow == false,
              (width * height).multipliedReportingOverflow(by: channels).overflow == false,
              width * height * channels == count
        else { throw ImageOpsError.invalidShape(width: width, height: height, channels: channels, count: count) }
    }

    @inline(__always)
    static func quantize(_ v: Float) -> UInt8 {
        let s = (v * 255).rounded()
        if !(s > 0) { return 0 }
        if s >= 255 { return 255 }
        return UInt8(s)
    }
}
