/// A decoded or to-be-encoded raster image.
///
/// Samples are stored as `UInt16` for both bit depths so one type covers
/// 8- and 16-bit data; an 8-bit image holds values 0...255 and a 16-bit image
/// 0...65535. Layout is interleaved, row-major, top-left pixel first.
public struct Image: Sendable, Equatable {
    public enum Layout: Int, Sendable, CaseIterable {
        case gray = 1, grayAlpha = 2, rgb = 3, rgba = 4

        /// Number of interleaved samples per pixel (same as `rawValue`).
        public var channels: Int { rawValue }
    }

    public var width: Int
    public var height: Int
    public var layout: Layout
    /// 8 or 16.
    public var bitDepth: Int
    /// Interleaved samples, `width * height * layout.channels` of them.
    public var samples: [UInt16]

    /// Creates an image after checking that the dimensions are positive, the
    /// bit depth is 8 or 16 and `samples.count == width * height * channels`.
    /// Sample *values* are checked when encoding, not here.
    public init(width: Int, height: Int, layout: Layout, bitDepth: Int, samples: [UInt16]) throws {
        try Image.validate(width: width, height: height, layout: layout, bitDepth: bitDepth,
                           sampleCount: samples.count, name: Image.inMemoryName)
        self.width = width
        self.height = height
        self.layout = layout
        self.bitDepth = bitDepth
        self.samples = samples
    }

    /// Unchecked initialiser for decoders that already produced consistent values.
    init(uncheckedWidth width: Int, height: Int, layout: Layout, bitDepth: Int, samples: [UInt16]) {
        self.width = width
        self.height = height
        self.layout = layout
        self.bitDepth = bitDepth
        self.samples = samples
    }

    /// Name used in errors about images that do not come from a file.
    static let inMemoryName = "in-memory image"

    static func validate(width: Int, height: Int, layout: Layout, bitDepth: Int, sampleCount: Int,
                         name: String) throws {
        guard width > 0, height > 0 else {
            throw ImageIOError.invalidImage(name: name, detail: "dimensions \(width)x\(height) are not positive")
        }
        guard bitDepth == 8 || bitDepth == 16 else {
            throw ImageIOError.invalidImage(name: name, detail: "bit depth \(bitDepth) is not 8 or 16")
        }
        let (pixels, o1) = width.multipliedReportingOverflow(by: height)
        let (expected, o2) = pixels.multipliedReportingOverflow(by: layout.channels)
        guard !o1, !o2, expected == sampleCount else {
            throw ImageIOError.invalidImage(
                name: name,
                detail: "\(sampleCount) samples given but \(width)x\(height) \(layout) needs \(o1 || o2 ? "more than Int.max" : String(expected))")
        }
    }
}

/// Limits applied while decoding untrusted files.
public struct DecodeLimits: Sendable, Equatable {
    /// Largest accepted `width * height`, checked from the header before any
    /// pixel memory is allocated. Default 8192 * 8192 = 67,108,864.
    public var maxPixels: Int
    /// Largest accepted file size for `decode(fileAt:)`. Default 1 GiB, far
    /// above any PNG/JPEG of `maxPixels` pixels that occurs in practice.
    public var maxFileBytes: Int

    public init(maxPixels: Int = 8192 * 8192, maxFileBytes: Int = 1 << 30) {
        self.maxPixels = maxPixels
        self.maxFileBytes = maxFileBytes
    }

    public static let `default` = DecodeLimits()
}

/// Container format, always sniffed from the leading magic bytes.
public enum ImageFormat: Sendable, Equatable, CustomStringConvertible {
    case png, jpeg

    public var description: String {
        switch self {
        case .png: return "PNG"
        case .jpeg: return "JPEG"
        }
    }
}

/// Result of `ImageDecoder.decode`.
public struct DecodedImage: Sendable, Equatable {
    public var image: Image
    public var format: ImageFormat
    /// PNG tEXt / zTXt / iTXt chunks, keyword -> text (a later chunk with the
    /// same keyword replaces an earlier one, as in PIL's `Image.info`).
    /// Always empty for JPEG.
    public var textChunks: [String: String]
    /// JPEG EXIF Orientation (IFD0 tag 0x0112) as found in the file, 1...8;
    /// nil when absent, out of range, or the EXIF block is malformed. The
    /// pixels in `image` already have this orientation applied.
    public var exifOrientation: Int?

    public init(image: Image, format: ImageFormat, textChunks: [String: String] = [:], exifOrientation: Int? = nil) {
        self.image = image
        self.format = format
        self.textChunks = textChunks
        self.exifOrientation = exifOrientation
    }
}
