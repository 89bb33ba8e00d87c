import DarkroomImageIO
import XCTest

/// Files written by tools/reference/make_image_fixtures.py. Each formula below
/// is copied from the line in that script that generated the file, and the
/// script checked every one of those files with Pillow's decoder as well.
final class PNGFixtureTests: XCTestCase {
    // make_image_fixtures.py: W, H = 13, 7 and IW, IH = 13, 11.
    let w = 13, h = 7, iw = 13, ih = 11

    private func check(_ name: String, layout: Image.Layout, bitDepth: Int, width: Int, height: Int,
                       _ expected: (Int, Int) -> [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        let d = try decodeFixture(name)
        XCTAssertEqual(d.format, .png, file: file, line: line)
        XCTAssertEqual(d.image.layout, layout, name, file: file, line: line)
        XCTAssertEqual(d.image.bitDepth, bitDepth, name, file: file, line: line)
        XCTAssertEqual(d.image.width, width, name, file: file, line: line)
        XCTAssertEqual(d.image.height, height, name, file: file, line: line)
        guard d.image.layout == layout, d.image.width == width, d.image.height == height else { return }
        var mismatches = 0
        for y in 0..<height {
            for x in 0..<width where pixel(d.image, x, y) != expected(x, y) {
                if mismatches < 5 {
                    XCTFail("\(name) (\(x),\(y)): got \(pixel(d.image, x, y)), expected \(expected(x, y))",
                            file: file, line: line)
                }
                mismatches += 1
            }
        }
    }

    func testPalette4BitExpandsToRGB() throws {
        // Pillow wrote a 16-colour palette image, which it stores at bit depth 4.
        let pal = (0..<16).map { i in [16 * i, 255 - 16 * i, 37 * i % 256] }
        try check("palette4.png", layout: .rgb, bitDepth: 8, width: w, height: h) { x, y in pal[(x + 3 * y) % 16] }
    }

    func testPaletteWithTRNSExpandsToRGBA() throws {
        let pal: [[Int]] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
        let alphas = [0, 128, 255, 64]
        try check("palette_trns.png", layout: .rgba, bitDepth: 8, width: w, height: h) { x, y in
            pal[(2 * x + y) % 4] + [alphas[(2 * x + y) % 4]]
        }
    }

    func testOneTwoFourBitGrayExpandTo8Bit() throws {
        // libpng expands by bit replication: 1-bit v -> 255 v, 2-bit -> 85 v, 4-bit -> 17 v.
        try check("gray1.png", layout: .gray, bitDepth: 8, width: w, height: h) { x, y in
            [(x * y + x) % 3 == 0 ? 255 : 0]
        }
        try check("gray2.png", layout: .gray, bitDepth: 8, width: w, height: h) { x, y in [((x + 2 * y) % 4) * 85] }
        try check("gray4.png", layout: .gray, bitDepth: 8, width: w, height: h) { x, y in [((x + 2 * y) % 16) * 17] }
    }

    func testGrayTRNSAddsAlpha() throws {
        try check("gray_trns.png", layout: .grayAlpha, bitDepth: 8, width: w, height: h) { x, y in
            let v = (x * 20 + y * 7) % 256
            return [v, v == 100 ? 0 : 255] // tRNS gray value 100
        }
    }

    func testRGBTRNSAddsAlpha() throws {
        try check("rgb_trns.png", layout: .rgba, bitDepth: 8, width: w, height: h) { x, y in
            let rgb = (x + y) % 3 == 0 ? [10, 20, 30] : [x * 19 % 256, y * 23 % 256, x * y * 7 % 256]
            return rgb + [rgb == [10, 20, 30] ? 0 : 255] // tRNS (10, 20, 30)
        }
    }

    func testSixteenBitRGBTRNSAddsSixteenBitAlpha() throws {
        try check("rgb16_trns.png", layout: .rgba, bitDepth: 16, width: w, height: h) { x, y in
            let rgb = (x * y) % 4 == 1 ? [1000, 2000, 3000] : [x * 5000 % 65536, y * 6000 % 65536, 40000 + x + y]
            return rgb + [rgb == [1000, 2000, 3000] ? 0 : 65535] // tRNS (1000, 2000, 3000)
        }
    }

    func testSixteenBitGrayFromPillowStaysSixteenBit() throws {
        try check("gray16.png", layout: .gray, bitDepth: 16, width: w, height: h) { x, y in [x * 1000 + y * 37] }
    }

    func testInterlacedPNGs() throws {
        try check("interlaced_rgb8.png", layout: .rgb, bitDepth: 8, width: iw, height: ih) { x, y in
            [x * 19 % 256, y * 23 % 256, x * y * 7 % 256]
        }
        try check("interlaced_rgba16.png", layout: .rgba, bitDepth: 16, width: iw, height: ih) { x, y in
            [x * 5000 % 65536, y * 6000 % 65536, (x + y) * 1234 % 65536, 65535 - x * y * 300]
        }
        try check("interlaced_gray1.png", layout: .gray, bitDepth: 8, width: iw, height: ih) { x, y in
            [((x ^ y) & 1) * 255]
        }
    }

    func testTextChunksBeforeAndAfterIDATIncludingZTXtAndCompressedITXt() throws {
        let d = try decodeFixture("text_chunks.png")
        XCTAssertEqual(d.textChunks, [
            "Title": "Before IDAT",                  // tEXt before IDAT
            "Comment": "caf\u{e9} au lait",          // zTXt, Latin-1
            "parameters": "a cat \u{732B}, Steps: 20", // iTXt, zlib-compressed, UTF-8
            "Late": "after IDAT",                     // tEXt after IDAT
        ])
    }
}
