import DarkroomPipeline
import Foundation
import DarkroomTestSupport
import XCTest

/// A1111 `masked_content: fill` (masking.fill) and the PIL GaussianBlur it is built on.
final class MaskedFillTests: XCTestCase {
    typealias F = ImageOpsFixtures

    func testPILGaussianBlurMatchesPillow() throws {
        let cases = try XCTUnwrap(try F.manifest()["fill"] as? [[String: Any]]).filter { $0["pilBlur"] != nil }
        XCTAssertEqual(cases.count, 6)
        let img = try F.image("astro64.u8", width: 64, height: 64, channels: 3)
        for c in cases {
            let r = try XCTUnwrap(c["radius"] as? Double)
            let out = try ImageOps.pilGaussianBlur(img, radius: r)
            XCTAssertEqual(F.fnv(out.interleaved), c["expectedHash"] as? String, "radius \(r)")
            XCTAssertEqual(out.pixels.reduce(0) { $0 + Int($1) }, c["expectedSum"] as? Int, "radius \(r)")
        }
    }

    func testFillMatchesA1111() throws {
        let cases = try XCTUnwrap(try F.manifest()["fill"] as? [[String: Any]]).filter { $0["pilBlur"] == nil }
        XCTAssertEqual(cases.count, 2)
        for c in cases {
            let w = try XCTUnwrap(c["width"] as? Int), h = try XCTUnwrap(c["height"] as? Int)
            let img = try F.image(try XCTUnwrap(c["input"] as? String), width: w, height: h, channels: 3)
            let mask = try F.image(try XCTUnwrap(c["mask"] as? String), width: w, height: h, channels: 1)
            let out = try ImageOps.fillMaskedArea(image: img, mask: mask)
            let d = F.diff(out.interleaved, try F.bytes(try XCTUnwrap(c["expected"] as? String)))
            print("fill \(c["input"] ?? ""): \(d.count) bytes differ from A1111, max \(d.max)")
            XCTAssertEqual(d.count, 0, "\(c["input"] ?? ""): max diff \(d.max)")
        }
    }

    /// Synthetic image: colour gradient background, a saturated red disc, mask = disc grown by 3 px.
    func makeScene(width w: Int = 96, height h: Int = 80) throws -> (PlanarImage8, PlanarImage8, [UInt8]) {
        let n = w * h
        var px = [UInt8](repeating: 0, count: 3 * n), mk = [UInt8](repeating: 0, count: n)
        var background = [UInt8](repeating: 0, count: 3 * n)
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x
                let bg = [UInt8(30 + x), UInt8(90 + y / 2), UInt8(200 - x / 2)]
                for c in 0..<3 { px[c * n + i] = bg[c]; background[c * n + i] = bg[c] }
                let dx = x - 50, dy = y - 38, d2 = dx * dx + dy * dy
                if d2 <= 14 * 14 { px[i] = 235; px[n + i] = 25; px[2 * n + i] = 20 }
                if d2 <= 17 * 17 { mk[i] = 255 }
            }
        }
        return (try PlanarImage8(width: w, height: h, channels: 3, pixels: px),
                try PlanarImage8(width: w, height: h, channels: 1, pixels: mk), background)
    }

    func testFillRemovesObjectKeepsUnmaskedAndFollowsGradient() throws {
        let (img, mask, background) = try makeScene()
        let out = try ImageOps.fillMaskedArea(image: img, mask: mask)
        let n = img.planeSize
        var closest = Int.max, maxGradErr = 0, sumGradErr = 0, masked = 0
        for i in 0..<n {
            if mask.pixels[i] == 0 {
                for c in 0..<3 { XCTAssertEqual(out.pixels[c * n + i], img.pixels[c * n + i]) }
                continue
            }
            masked += 1
            let rgb = (0..<3).map { Int(out.pixels[$0 * n + i]) }
            let object = max(abs(rgb[0] - 235), abs(rgb[1] - 25), abs(rgb[2] - 20))
            closest = min(closest, object)
            let e = (0..<3).map { abs(rgb[$0] - Int(background[$0 * n + i])) }.max() ?? 0
            maxGradErr = max(maxGradErr, e)
            sumGradErr += e
        }
        let mean = Double(sumGradErr) / Double(masked)
        print("fill properties: nearest masked pixel to the object colour \(closest) levels; vs gradient max \(maxGradErr), mean \(String(format: "%.2f", mean))")
        XCTAssertGreaterThan(closest, 40)
        XCTAssertLessThanOrEqual(maxGradErr, 16)
        XCTAssertLessThanOrEqual(mean, 5)
        // Float entry point agrees with the 8-bit one.
        XCTAssertEqual(try ImageOps.fillMaskedArea(image: img.floatImage, mask: mask.floatImage).quantized, out)
        XCTAssertThrowsError(try ImageOps.fillMaskedArea(image: mask, mask: mask))
    }
}
