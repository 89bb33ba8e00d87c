/// EXIF Orientation: parsing (APP1 payload) and applying it the way PIL's
/// `ImageOps.exif_transpose` does.
enum EXIFOrientation {
    /// `payload` is an APP1 segment body starting with "Exif\0\0" followed by
    /// a TIFF header ("II*\0" or "MM\0*") and IFD0. Returns the value of tag
    /// 0x0112 (type SHORT, or LONG as some writers use) when it is 1...8.
    /// Any inconsistency (short data, bad byte order mark, offsets out of
    /// range, wrong type) yields nil; nothing here can trap.
    static func parse(_ payload: UnsafeBufferPointer<UInt8>) -> Int? {
        let tiff = 6 // after "Exif\0\0"
        guard payload.count >= tiff + 8 else { return nil }
        let little: Bool
        switch (payload[tiff], payload[tiff + 1]) {
        case (0x49, 0x49): little = true  // "II"
        case (0x4D, 0x4D): little = false // "MM"
        default: return nil
        }
        let end = payload.count
        // Offsets are relative to the TIFF header.
        func u16(_ offset: Int) -> Int? {
            guard offset >= 0, offset <= end - tiff - 2 else { return nil }
            let a = Int(payload[tiff + offset]), b = Int(payload[tiff + offset + 1])
            return little ? a | b << 8 : a << 8 | b
        }
        func u32(_ offset: Int) -> Int? {
            guard let lo = u16(little ? offset : offset + 2), let hi = u16(little ? offset + 2 : offset) else {
                return nil
            }
            return hi << 16 | lo
        }
        guard u16(2) == 42, let ifd0 = u32(4), let entries = u16(ifd0) else { return nil }
        for i in 0..<entries {
            let entry = ifd0 + 2 + 12 * i
            guard let tag = u16(entry) else { return nil }
            guard tag == 0x0112 else { continue }
            guard let type = u16(entry + 2), let count = u32(entry + 4), count >= 1 else { return nil }
            let value: Int?
            switch type {
            case 3: value = u16(entry + 8) // SHORT, stored left-justified in the value field
            case 4: value = u32(entry + 8) // LONG
            default: value = nil
            }
            guard let v = value, (1...8).contains(v) else { return nil }
            return v
        }
        return nil
    }

    /// Returns `image` transformed for `orientation` exactly as PIL's
    /// `ImageOps.exif_transpose`: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180,
    /// 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90
    /// (PIL's ROTATE_n is counter-clockwise). 1 and others: unchanged.
    static func apply(_ orientation: Int, to image: Image) -> Image {
        let w = image.width, h = image.height
        // Source pixel index for output (ox, oy) = start + ox * stepX + oy * stepY.
        let start: Int, stepX: Int, stepY: Int
        switch orientation {
        case 2: (start, stepX, stepY) = (w - 1, -1, w)                 // out(x,y) = in(w-1-x, y)
        case 3: (start, stepX, stepY) = ((h - 1) * w + w - 1, -1, -w)  // in(w-1-x, h-1-y)
        case 4: (start, stepX, stepY) = ((h - 1) * w, 1, -w)           // in(x, h-1-y)
        case 5: (start, stepX, stepY) = (0, w, 1)                      // in(y, x)
        case 6: (start, stepX, stepY) = ((h - 1) * w, -w, 1)           // in(y, h-1-x): 90 deg clockwise
        case 7: (start, stepX, stepY) = ((h - 1) * w + w - 1, -w, -1)  // in(w-1-y, h-1-x)
        case 8: (start, stepX, stepY) = (w - 1, w, -1)                 // in(w-1-y, x): 90 deg counter-clockwise
        default: return image
        }
        let swapsAxes = orientation >= 5
        let outW = swapsAxes ? h : w
        let outH = swapsAxes ? w : h
        let c = image.layout.channels
        let count = image.samples.count
        let samples = image.samples.withUnsafeBufferPointer { src -> [UInt16] in
            [UInt16](unsafeUninitializedCapacity: count) { dst, initialized in
                initialized = 0
                guard let s = src.baseAddress, let d = dst.baseAddress else { return }
                // Walk the output in 64x64 tiles so that the strided source
                // reads of the axis-swapping cases stay in cache. `channels` is
                // a literal at each call site below, so the copy gets unrolled.
                @inline(__always) func copy(channels c: Int) {
                    let tile = 64
                    for ty in stride(from: 0, to: outH, by: tile) {
                        for tx in stride(from: 0, to: outW, by: tile) {
                            for oy in ty..<min(ty + tile, outH) {
                                var o = (oy * outW + tx) * c
                                var p = start + oy * stepY + tx * stepX
                                for _ in tx..<min(tx + tile, outW) {
                                    let si = p * c
                                    for k in 0..<c { d[o + k] = s[si + k] }
                                    o += c
                                    p += stepX
                                }
                            }
                        }
                    }
                }
                switch c {
                case 1: copy(channels: 1)
                case 2: copy(channels: 2)
                case 3: copy(channels: 3)
                default: copy(channels: 4)
                }
                initialized = count
            }
        }
        return Image(uncheckedWidth: outW, height: outH, layout: image.layout, bitDepth: image.bitDepth,
                     samples: samples)
    }
}
