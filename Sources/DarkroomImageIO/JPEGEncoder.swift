import CJPEG

public enum JPEGEncoder {
    /// Baseline JFIF JPEG via libjpeg defaults (4:2:0 chroma subsampling for
    /// RGB, islow DCT). Only 8-bit `.gray` and `.rgb` images; `quality` 1...100.
    public static func encode(_ image: Image, quality: Int = 95) throws -> [UInt8] {
        let name = Image.inMemoryName
        try Image.validate(width: image.width, height: image.height, layout: image.layout, bitDepth: image.bitDepth,
                           sampleCount: image.samples.count, name: name)
        guard image.bitDepth == 8, image.layout == .gray || image.layout == .rgb else {
            throw ImageIOError.encodeFailed(name: name, format: .jpeg,
                                            detail: "only 8-bit gray or RGB images can be written, not \(image.bitDepth)-bit \(image.layout)")
        }
        guard (1...100).contains(quality) else {
            throw ImageIOError.encodeFailed(name: name, format: .jpeg, detail: "quality \(quality) is outside 1...100")
        }
        guard image.width <= 65500, image.height <= 65500 else {
            throw ImageIOError.encodeFailed(name: name, format: .jpeg,
                                            detail: "dimensions \(image.width)x\(image.height) exceed the JPEG maximum of 65500")
        }
        guard let writer = dr_jpeg_writer_create() else {
            throw ImageIOError.encodeFailed(name: name, format: .jpeg, detail: "out of memory")
        }
        defer { dr_jpeg_writer_destroy(writer) }
        let rc = image.samples.withUnsafeBufferPointer { s -> Int32 in
            guard let base = s.baseAddress else { return Int32(DR_JPEG_ERR_USAGE) }
            return dr_jpeg_writer_encode(writer, base, UInt32(image.width), UInt32(image.height),
                                         Int32(image.layout.channels), Int32(quality))
        }
        if rc != Int32(DR_JPEG_OK) {
            let message = String(cString: dr_jpeg_writer_message(writer))
            if Int(rc) == Int(DR_JPEG_ERR_RANGE) { throw ImageIOError.invalidImage(name: name, detail: message) }
            throw ImageIOError.encodeFailed(name: name, format: .jpeg, detail: message)
        }
        guard let bytes = dr_jpeg_writer_bytes(writer) else {
            throw ImageIOError.encodeFailed(name: name, format: .jpeg, detail: "libjpeg produced no output")
        }
        return Array(UnsafeBufferPointer(start: bytes, count: dr_jpeg_writer_size(writer)))
    }
}
