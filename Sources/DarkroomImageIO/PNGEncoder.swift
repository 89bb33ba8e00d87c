import CPNG
import Foundation

public enum PNGEncoder {
    /// Encodes `image` as a non-interlaced PNG (8 or 16 bits, any layout).
    ///
    /// Each text pair becomes a `tEXt` chunk when key and value are Latin-1
    /// encodable, otherwise an uncompressed `iTXt` chunk with a UTF-8 value
    /// (what PIL's `PngInfo.add_text` writes, and how A1111 stores its
    /// "parameters"). Keys must follow the PNG keyword rules: 1-79 Latin-1
    /// bytes, printable (32-126, 161-255), no leading, trailing or double
    /// spaces. Values must not contain NUL. Chunks are written before IDAT in
    /// the given order.
    public static func encode(_ image: Image, text: [(key: String, value: String)] = []) throws -> [UInt8] {
        try encode(image, text: text, name: Image.inMemoryName)
    }

    /// Encodes and writes the bytes to `url` (plain create/truncate + write;
    /// atomic delivery is the caller's business).
    public static func write(_ image: Image, text: [(key: String, value: String)] = [], to url: URL) throws {
        let path = url.path
        guard url.isFileURL else { throw ImageIOError.writeFailed(path: url.absoluteString, reason: "not a file URL") }
        let bytes = try encode(image, text: text, name: path)
        try FileIO.writeAll(path: path, bytes: bytes)
    }

    struct PreparedText {
        var key: [CChar]   // Latin-1, NUL-terminated
        var value: [CChar] // Latin-1 or UTF-8, NUL-terminated
        var isITXt: Bool
    }

    static func prepare(key: String, value: String, name: String) throws -> PreparedText {
        guard let keyBytes = latin1Bytes(key) else {
            throw ImageIOError.invalidTextChunk(name: name, key: key, reason: "keywords must be Latin-1")
        }
        guard (1...79).contains(keyBytes.count) else {
            throw ImageIOError.invalidTextChunk(name: name, key: key,
                                                reason: "keywords must be 1 to 79 bytes, this one is \(keyBytes.count)")
        }
        if let bad = keyBytes.first(where: { !(32...126).contains($0) && !(161...255).contains($0) }) {
            throw ImageIOError.invalidTextChunk(name: name, key: key,
                                                reason: "keywords may not contain byte \(bad) (only printable Latin-1)")
        }
        if keyBytes.first == 32 || keyBytes.last == 32 {
            throw ImageIOError.invalidTextChunk(name: name, key: key, reason: "keywords may not start or end with a space")
        }
        if zip(keyBytes, keyBytes.dropFirst()).contains(where: { $0 == 32 && $1 == 32 }) {
            throw ImageIOError.invalidTextChunk(name: name, key: key, reason: "keywords may not contain consecutive spaces")
        }
        if value.unicodeScalars.contains("\0") {
            throw ImageIOError.invalidTextChunk(name: name, key: key, reason: "the value contains a NUL character")
        }
        let keyC = keyBytes.map { CChar(bitPattern: $0) } + [0]
        if let latin1 = latin1Bytes(value) {
            return PreparedText(key: keyC, value: latin1.map { CChar(bitPattern: $0) } + [0], isITXt: false)
        }
        return PreparedText(key: keyC, value: Array(value.utf8).map { CChar(bitPattern: $0) } + [0], isITXt: true)
    }

    static func latin1Bytes(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.unicodeScalars.count)
        for scalar in s.unicodeScalars {
            guard scalar.value <= 0xFF else { return nil }
            out.append(UInt8(scalar.value))
        }
        return out
    }

    static func encode(_ image: Image, text: [(key: String, value: String)], name: String) throws -> [UInt8] {
        try Image.validate(width: image.width, height: image.height, layout: image.layout, bitDepth: image.bitDepth,
                           sampleCount: image.samples.count, name: name)
        guard image.width <= 0x7FFF_FFFF, image.height <= 0x7FFF_FFFF else {
            throw ImageIOError.encodeFailed(name: name, format: .png,
                                            detail: "dimensions \(image.width)x\(image.height) exceed the PNG maximum of 2^31-1")
        }
        let prepared = try text.map { try prepare(key: $0.key, value: $0.value, name: name) }

        guard let writer = dr_png_writer_create() else {
            throw ImageIOError.encodeFailed(name: name, format: .png, detail: "out of memory")
        }
        defer { dr_png_writer_destroy(writer) }

        for t in prepared {
            let rc = t.key.withUnsafeBufferPointer { k in
                t.value.withUnsafeBufferPointer { v -> Int32 in
                    guard let kp = k.baseAddress, let vp = v.baseAddress else { return Int32(DR_PNG_ERR_USAGE) }
                    return dr_png_writer_add_text(writer, kp, vp, t.isITXt ? 1 : 0)
                }
            }
            try check(rc, writer, name)
        }
        let rc = image.samples.withUnsafeBufferPointer { s -> Int32 in
            guard let base = s.baseAddress else { return Int32(DR_PNG_ERR_USAGE) }
            return dr_png_writer_write(writer, base, UInt32(image.width), UInt32(image.height),
                                       Int32(image.layout.channels), Int32(image.bitDepth))
        }
        try check(rc, writer, name)
        guard let bytes = dr_png_writer_bytes(writer) else {
            throw ImageIOError.encodeFailed(name: name, format: .png, detail: "libpng produced no output")
        }
        return Array(UnsafeBufferPointer(start: bytes, count: dr_png_writer_size(writer)))
    }

    private static func check(_ rc: Int32, _ writer: UnsafeMutablePointer<dr_png_writer>, _ name: String) throws {
        guard rc != Int32(DR_PNG_OK) else { return }
        let message = String(cString: dr_png_writer_message(writer))
        if Int(rc) == Int(DR_PNG_ERR_RANGE) {
            throw ImageIOError.invalidImage(name: name, detail: message)
        }
        throw ImageIOError.encodeFailed(name: name, format: .png, detail: message.isEmpty ? "libpng error \(rc)" : message)
    }
}
