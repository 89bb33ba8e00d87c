import CJPEG

enum JPEGDecoding {
    static func decode(_ data: UnsafeBufferPointer<UInt8>, name: String, limits: DecodeLimits) throws -> DecodedImage {
        guard let base = data.baseAddress, let reader = dr_jpeg_reader_create() else {
            throw ImageIOError.outOfMemory(name: name, format: .jpeg)
        }
        defer { dr_jpeg_reader_destroy(reader) }

        var header = dr_jpeg_header()
        try check(dr_jpeg_read_header(reader, base, data.count, &header), reader, name, limits)
        let width = Int(header.width)
        let height = Int(header.height)
        // Checked before jpeg_start_decompress, which is where libjpeg allocates.
        try ImageDecoder.checkDimensions(width: width, height: height, name: name, limits: limits)

        let channels = Int(header.out_channels)
        guard let layout = Image.Layout(rawValue: channels), channels == 1 || channels == 3 else {
            throw ImageIOError.unsupported(
                name: name, format: .jpeg,
                detail: "\(header.components) components in colour space \(header.color_space) (only grayscale, YCbCr/RGB and CMYK/YCCK are decoded)")
        }

        var orientation: Int? = nil
        if let exif = dr_jpeg_reader_exif(reader) {
            orientation = EXIFOrientation.parse(UnsafeBufferPointer(start: exif, count: dr_jpeg_reader_exif_len(reader)))
        }

        let count = width * height * channels // width * height <= maxPixels, checked above
        var rc: Int32 = Int32(DR_JPEG_ERR_USAGE)
        let samples = [UInt16](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = 0
            guard let out = buffer.baseAddress else { return }
            rc = dr_jpeg_decode(reader, out, Int32(channels))
            if rc == Int32(DR_JPEG_OK) { initialized = count }
        }
        try check(rc, reader, name, limits)

        var image = Image(uncheckedWidth: width, height: height, layout: layout, bitDepth: 8, samples: samples)
        if let orientation {
            image = EXIFOrientation.apply(orientation, to: image)
        }
        return DecodedImage(image: image, format: .jpeg, textChunks: [:], exifOrientation: orientation)
    }

    private static func check(_ rc: Int32, _ reader: UnsafeMutablePointer<dr_jpeg_reader>, _ name: String,
                              _ limits: DecodeLimits) throws {
        guard rc != Int32(DR_JPEG_OK) else { return }
        let message = String(cString: dr_jpeg_reader_message(reader))
        switch Int(rc) {
        case Int(DR_JPEG_ERR_TRUNCATED):
            throw ImageIOError.truncated(name: name, format: .jpeg, detail: message)
        case Int(DR_JPEG_ERR_NOMEM):
            throw ImageIOError.outOfMemory(name: name, format: .jpeg)
        case Int(DR_JPEG_ERR_UNSUPPORTED):
            throw ImageIOError.unsupported(name: name, format: .jpeg, detail: message)
        case Int(DR_JPEG_ERR_ZERO_DIMS):
            throw ImageIOError.invalidDimensions(name: name, width: Int(dr_jpeg_reader_width(reader)),
                                                 height: Int(dr_jpeg_reader_height(reader)))
        case Int(DR_JPEG_ERR_TOO_BIG):
            throw ImageIOError.tooManyPixels(name: name, width: Int(dr_jpeg_reader_width(reader)),
                                             height: Int(dr_jpeg_reader_height(reader)), limit: limits.maxPixels)
        default:
            throw ImageIOError.corrupt(name: name, format: .jpeg, detail: message)
        }
    }
}
