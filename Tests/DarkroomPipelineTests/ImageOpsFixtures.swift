import DarkroomPipeline
import Foundation
import DarkroomTestSupport
import XCTest

/// `Tests/Fixtures/imageops/`, written by `tools/reference/make_imageops_fixtures.py` (Pillow, cv2,
/// numpy, skimage; versions in manifest.json["versions"]).
enum ImageOpsFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/imageops")

    static func manifest() throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("manifest.json"))
        guard let m = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ImageOpsError.invalidArgument("manifest.json")
        }
        return m
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: root.appendingPathComponent(name)))
    }

    /// np.packbits (big-endian bit order) → 0/1 bytes.
    static func bits(_ name: String, count: Int) throws -> [UInt8] {
        let packed = try bytes(name)
        return (0..<count).map { i in (packed[i / 8] >> (7 - UInt8(i % 8))) & 1 }
    }

    /// An interleaved HWC file as a planar image.
    static func image(_ name: String, width: Int, height: Int, channels: Int) throws -> PlanarImage8 {
        try PlanarImage8(interleaved: try bytes(name), width: width, height: height, channels: channels)
    }

    static func camera() throws -> PlanarImage8 { try image("camera512.u8", width: 512, height: 512, channels: 1) }

    static func crop(_ img: PlanarImage8, x: Int, y: Int, w: Int, h: Int) throws -> PlanarImage8 {
        var out = [UInt8]()
        out.reserveCapacity(w * h * img.channels)
        for c in 0..<img.channels {
            for yy in y..<(y + h) {
                let row = c * img.planeSize + yy * img.width
                out.append(contentsOf: img.pixels[(row + x)..<(row + x + w)])
            }
        }
        return try PlanarImage8(width: w, height: h, channels: img.channels, pixels: out)
    }

    /// FNV-1a 64 as lower-case hex, as the generator writes it.
    static func fnv(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    static func fnv(_ floats: [Float]) -> String {
        var b = [UInt8]()
        b.reserveCapacity(floats.count * 4)
        for f in floats {
            let u = f.bitPattern
            b.append(UInt8(u & 0xFF)); b.append(UInt8((u >> 8) & 0xFF))
            b.append(UInt8((u >> 16) & 0xFF)); b.append(UInt8(u >> 24))
        }
        return fnv(b)
    }

    /// (number of differing bytes, max |difference|).
    static func diff(_ a: [UInt8], _ b: [UInt8]) -> (count: Int, max: Int) {
        var n = 0, m = 0
        for (x, y) in zip(a, b) where x != y {
            n += 1
            m = max(m, abs(Int(x) - Int(y)))
        }
        return (n + abs(a.count - b.count), m)
    }
}
