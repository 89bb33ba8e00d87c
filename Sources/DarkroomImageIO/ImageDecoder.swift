import Foundation

// DarkroomImageIO: PNG and JPEG decoding/encoding on libpng 1.6 and libjpeg(-turbo).
//
// - libpng/libjpeg report errors by longjmp. All such calls live in `static
//   inline` C helpers in Sources/CPNG/shim.h and Sources/CJPEG/shim.h, which
//   own the setjmp and return an error code plus a message; Swift never sees
//   a longjmp. The PNG side uses libpng's full API (the simplified API cannot
//   return text chunks).
// - Pixel data is decoded by C straight into the `[UInt16]` output buffer.
// - Dimensions are checked against `DecodeLimits.maxPixels` from the header
//   before any pixel memory is allocated.
// - JPEG CMYK/YCCK is assumed to be Adobe/Photoshop-style inverted CMYK (as
//   Pillow also assumes and writes) and converted to RGB with Pillow's
//   arithmetic. EXIF orientation is applied like PIL's `ImageOps.exif_transpose`.

public enum ImageDecoder {
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    static let jpegSignature: [UInt8] = [0xFF, 0xD8, 0xFF]

    /// Reads and decodes the file at `url` (a file URL). The format is taken
    /// from the leading bytes, never from the extension. Errors name `url.path`.
    public static func decode(fileAt url: URL, limits: DecodeLimits = .default) throws -> DecodedImage {
        let path = url.path
        guard url.isFileURL else {
            throw ImageIOError.readFailed(path: url.absoluteString, reason: "not a file URL")
        }
        let bytes = try FileIO.readAll(path: path, maxBytes: limits.maxFileBytes)
        return try decode(data: bytes, name: path, limits: limits)
    }

    /// Decodes PNG or JPEG bytes; `name` is used in error messages.
    public static func decode(data: [UInt8], name: String, limits: DecodeLimits = .default) throws -> DecodedImage {
        try data.withUnsafeBufferPointer { try decode(buffer: $0, name: name, limits: limits) }
    }

    /// `Data` convenience for `decode(data:name:limits:)`.
    public static func decode(data: Data, name: String, limits: DecodeLimits = .default) throws -> DecodedImage {
        try decode(data: [UInt8](data), name: name, limits: limits)
    }

    /// The format implied by the leading magic bytes, or nil.
    public static func sniffFormat(_ bytes: [UInt8]) -> ImageFormat? {
        bytes.withUnsafeBufferPointer { sniff($0) }
    }

    static func sniff(_ bytes: UnsafeBufferPointer<UInt8>) -> ImageFormat? {
        if bytes.starts(with: pngSignature) { return .png }
        if bytes.starts(with: jpegSignature) { return .jpeg }
        return nil
    }

    static func decode(buffer: UnsafeBufferPointer<UInt8>, name: String, limits: DecodeLimits) throws -> DecodedImage {
        guard !buffer.isEmpty else { throw ImageIOError.emptyFile(name: name) }
        switch sniff(buffer) {
        case .png:
            return try PNGDecoding.decode(buffer, name: name, limits: limits)
        case .jpeg:
            return try JPEGDecoding.decode(buffer, name: name, limits: limits)
        case nil:
            // A file that stops inside a signature (at least 2 bytes of it) is a truncated file.
            if buffer.count >= 2 && buffer.count < pngSignature.count && pngSignature.starts(with: buffer) {
                throw ImageIOError.truncated(name: name, format: .png, detail: "only \(buffer.count) bytes, ends inside the signature")
            }
            if buffer.count == 2 && jpegSignature.starts(with: buffer) {
                throw ImageIOError.truncated(name: name, format: .jpeg, detail: "only 2 bytes, ends inside the SOI marker")
            }
            throw ImageIOError.unrecognizedFormat(name: name)
        }
    }

    /// Zero-size and pixel-count checks, done from the header before any
    /// pixel buffer is allocated.
    static func checkDimensions(width: Int, height: Int, name: String, limits: DecodeLimits) throws {
        guard width > 0, height > 0 else {
            throw ImageIOError.invalidDimensions(name: name, width: width, height: height)
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || pixels > limits.maxPixels {
            throw ImageIOError.tooManyPixels(name: name, width: width, height: height, limit: limits.maxPixels)
        }
    }
}
