import DarkroomImageIO

/// Offset of the first segment with the given marker (the 0xFF byte), walking
/// the marker segments from SOI; nil if not found before SOS.
func jpegSegmentOffset(_ jpeg: [UInt8], marker: UInt8) -> Int? {
    var i = 2
    while i + 4 <= jpeg.count, jpeg[i] == 0xFF {
        let m = jpeg[i + 1]
        if m == marker { return i }
        if m == 0xDA { return nil } // SOS: entropy-coded data follows
        let len = Int(jpeg[i + 2]) << 8 | Int(jpeg[i + 3])
        i += 2 + len
    }
    return nil
}

/// Returns `jpeg` with an APP1 segment holding `payload` inserted right after SOI.
func insertingAPP1(_ payload: [UInt8], into jpeg: [UInt8]) -> [UInt8] {
    let len = payload.count + 2
    return Array(jpeg[0..<2]) + [0xFF, 0xE1, UInt8(len >> 8), UInt8(len & 0xFF)] + payload + Array(jpeg[2...])
}

/// Returns `jpeg` with the SOF0 height/width fields replaced (SOF0 body: precision, height, width).
func patchingSOF0(_ jpeg: [UInt8], width: Int, height: Int) -> [UInt8]? {
    guard let sof = jpegSegmentOffset(jpeg, marker: 0xC0) else { return nil }
    var out = jpeg
    out[sof + 5] = UInt8(height >> 8); out[sof + 6] = UInt8(height & 0xFF)
    out[sof + 7] = UInt8(width >> 8); out[sof + 8] = UInt8(width & 0xFF)
    return out
}

/// EXIF APP1 payload with a single IFD0 entry (tag 0x0112 unless overridden).
func exifPayload(orientation: Int, bigEndian: Bool, type: Int = 3, tag: Int = 0x0112) -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { bigEndian ? [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    func u32(_ v: Int) -> [UInt8] { bigEndian ? u16(v >> 16) + u16(v & 0xFFFF) : u16(v & 0xFFFF) + u16(v >> 16) }
    let value = type == 4 ? u32(orientation) : u16(orientation) + [0, 0]
    let tiff = (bigEndian ? Array("MM".utf8) : Array("II".utf8)) + u16(42) + u32(8)
    let ifd = u16(1) + u16(tag) + u16(type) + u32(1) + value + u32(0)
    return Array("Exif".utf8) + [0, 0] + tiff + ifd
}

/// 64x48 smooth test pattern (the same formula as make_fixtures.py's gradient):
/// RGB (4x, 5y, 2x + 2y), no sharp edges; gray uses the ITU-R 601 luma of that colour.
func gradientImage(_ layout: Image.Layout) throws -> Image {
    try makeImage(width: 64, height: 48, layout: layout, bitDepth: 8) { x, y, c in
        let rgb = [4 * x, 5 * y, 2 * x + 2 * y]
        if layout == .gray { return (299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2] + 500) / 1000 }
        return rgb[c]
    }
}
