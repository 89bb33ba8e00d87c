import Foundation
import CPNG

enum PNGDecoding {
    static func decode(_ data: UnsafeBufferPointer<UInt8>, name: String, limits: DecodeLimits) throws -> DecodedImage {
        try precheckIHDR(data, name: name, limits: limits)
        try precheckChunkLengths(data, name: name)
        guard let base = data.baseAddress, let reader = dr_png_reader_create(base, data.count) else {
            throw ImageIOError.outOfMemory(name: name, format: .png)
        }
        defer { dr_png_reader_destroy(reader) }

        try check(dr_png_read_header(reader), reader, name)
        let width = Int(reader.pointee.width)
        let height = Int(reader.pointee.height)
        try ImageDecoder.checkDimensions(width: width, height: height, name: name, limits: limits)
        try checkDataCanHoldPixels(reader.pointee, byteCount: data.count, name: name)

        try check(dr_png_prepare(reader), reader, name)
        let channels = Int(reader.pointee.out_channels)
        let depth = Int(reader.pointee.out_bit_depth)
        guard let layout = Image.Layout(rawValue: channels), depth == 8 || depth == 16 else {
            throw ImageIOError.unsupported(name: name, format: .png,
                                           detail: "\(channels) channels at \(depth) bits after expansion")
        }
        let (count, overflow) = (width * height).multipliedReportingOverflow(by: channels)
        guard !overflow else {
            throw ImageIOError.tooManyPixels(name: name, width: width, height: height, limit: limits.maxPixels)
        }

        var rc: Int32 = Int32(DR_PNG_ERR_USAGE)
        let samples = [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = 0
            guard let out = buffer.baseAddress else { return }
            rc = dr_png_read_pixels(reader, out)
            if rc == Int32(DR_PNG_OK) { initialized = count }
        }
        try check(rc, reader, name)

        let image = Image(uncheckedWidth: width, height: height, layout: layout, bitDepth: depth, samples: samples)
        return DecodedImage(image: image, format: .png, textChunks: readText(reader), exifOrientation: nil)
    }

    /// Looks at the IHDR bytes directly (signature, length, "IHDR", width,
    /// height) so that zero or enormous dimensions get their own error before
    /// libpng runs. libpng re-validates everything afterwards, CRC included.
    private static func precheckIHDR(_ data: UnsafeBufferPointer<UInt8>, name: String, limits: DecodeLimits) throws {
        guard data.count >= 24,
              data[12] == 0x49, data[13] == 0x48, data[14] == 0x44, data[15] == 0x52 // "IHDR"
        else { return }
        func be32(_ i: Int) -> Int {
            Int(data[i]) << 24 | Int(data[i + 1]) << 16 | Int(data[i + 2]) << 8 | Int(data[i + 3])
        }
        try ImageDecoder.checkDimensions(width: be32(16), height: be32(20), name: name, limits: limits)
    }

    /// Deflate expands at most 1032:1 (a 258-byte match coded in 2 bits), so a file of n bytes cannot hold
    /// more than 1032·n bytes of filtered rows. A header that promises more is a truncated file: refuse it
    /// before the output buffer is allocated, so a few hundred bytes cannot make the decoder zero-fill
    /// half a gigabyte. (Interlaced images need slightly more than the count used here, never less.)
    private static func checkDataCanHoldPixels(_ r: dr_png_reader, byteCount: Int, name: String) throws {
        let samplesPerPixel: Int
        switch Int32(r.color_type) {
        case PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_PALETTE: samplesPerPixel = 1
        case PNG_COLOR_TYPE_GRAY_ALPHA: samplesPerPixel = 2
        case PNG_COLOR_TYPE_RGB: samplesPerPixel = 3
        default: samplesPerPixel = 4
        }
        let rowBits = Int(r.width) * samplesPerPixel * Int(r.bit_depth)
        let filtered = Int(r.height) * (1 + (rowBits + 7) / 8)
        let ceiling = 1032 * byteCount + 65536
        if filtered > ceiling {
            throw ImageIOError.truncated(
                name: name, format: .png,
                detail: "\(byteCount) bytes cannot hold the \(r.width)x\(r.height) image its header declares")
        }
    }

    /// Walks the chunk list (length, type, data, CRC) and refuses a chunk that runs past the end of the file
    /// before libpng sees it: libpng allocates a chunk's declared length before reading it, so a few hundred
    /// bytes declaring a 1.7 GB text chunk would cost seconds and gigabytes (found by the image fuzzer).
    private static func precheckChunkLengths(_ data: UnsafeBufferPointer<UInt8>, name: String) throws {
        var offset = 8
        while offset + 8 <= data.count {
            let length = Int(data[offset]) << 24 | Int(data[offset + 1]) << 16 | Int(data[offset + 2]) << 8 | Int(data[offset + 3])
            let type = String(decoding: data[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let remaining = data.count - offset - 12
            guard length <= remaining else {
                throw ImageIOError.truncated(name: name, format: .png,
                                             detail: "the \(type) chunk at byte \(offset) declares \(length) bytes but only \(max(0, remaining)) follow")
            }
            if type == "IEND" { return }
            offset += 12 + length
        }
    }

    private static func check(_ rc: Int32, _ reader: UnsafeMutablePointer<dr_png_reader>, _ name: String) throws {
        guard rc != Int32(DR_PNG_OK) else { return }
        let message = String(cString: dr_png_reader_message(reader))
        switch Int(rc) {
        case Int(DR_PNG_ERR_TRUNCATED): throw ImageIOError.truncated(name: name, format: .png, detail: message)
        case Int(DR_PNG_ERR_NOMEM): throw ImageIOError.outOfMemory(name: name, format: .png)
        default: throw ImageIOError.corrupt(name: name, format: .png, detail: message)
        }
    }

    /// tEXt and zTXt are Latin-1, iTXt is UTF-8 (invalid sequences become U+FFFD).
    private static func readText(_ reader: UnsafeMutablePointer<dr_png_reader>) -> [String: String] {
        var textPointer: png_textp? = nil
        let n = Int(dr_png_get_text(reader, &textPointer))
        guard n > 0, let texts = textPointer else { return [:] }
        var result: [String: String] = [:]
        for i in 0..<n {
            let t = texts[i]
            guard let key = t.key else { continue }
            let keyString = latin1(UnsafeRawPointer(key).assumingMemoryBound(to: UInt8.self), strlen(key))
            let isITXt = t.compression == PNG_ITXT_COMPRESSION_NONE || t.compression == PNG_ITXT_COMPRESSION_zTXt
            var value = ""
            if let text = t.text {
                let bytes = UnsafeRawPointer(text).assumingMemoryBound(to: UInt8.self)
                if isITXt {
                    value = String(decoding: UnsafeBufferPointer(start: bytes, count: t.itxt_length), as: UTF8.self)
                } else {
                    value = latin1(bytes, t.text_length)
                }
            }
            result[keyString] = value
        }
        return result
    }

    private static func latin1(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> String {
        var scalars = String.UnicodeScalarView()
        for b in UnsafeBufferPointer(start: bytes, count: count) { scalars.append(Unicode.Scalar(b)) }
        return String(scalars)
    }
}
