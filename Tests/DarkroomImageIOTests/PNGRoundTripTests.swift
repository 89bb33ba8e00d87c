import DarkroomImageIO
import Foundation
import XCTest

final class PNGRoundTripTests: XCTestCase {
    /// 17x9: odd width so rows are not a multiple of any filter unit.
    /// Samples walk the whole range with a prime stride (7919) and the first
    /// and last samples are pinned to 0 and the maximum, so both ends are covered.
    private func pattern(_ layout: Image.Layout, bitDepth: Int) throws -> Image {
        let maxValue = (1 << bitDepth) - 1
        let w = 17, h = 9
        let last = (w * h * layout.channels) - 1
        return try makeImage(width: w, height: h, layout: layout, bitDepth: bitDepth) { x, y, c in
            let i = (y * w + x) * layout.channels + c
            if i == 0 { return 0 }
            if i == last { return maxValue }
            return (i * 7919 + 13) % (maxValue + 1)
        }
    }

    func testRoundTripEveryLayoutAt8And16Bits() throws {
        for bitDepth in [8, 16] {
            for layout in Image.Layout.allCases {
                let image = try pattern(layout, bitDepth: bitDepth)
                let png = try PNGEncoder.encode(image)
                let decoded = try ImageDecoder.decode(data: png, name: "roundtrip-\(layout)-\(bitDepth).png")
                XCTAssertEqual(decoded.format, .png)
                XCTAssertEqual(decoded.image, image, "\(layout) \(bitDepth)-bit")
                XCTAssertEqual(decoded.textChunks, [:])
                XCTAssertNil(decoded.exifOrientation)
                XCTAssertEqual(try ImageDecoder.decode(data: Data(png), name: "as-data.png"), decoded)

                // IHDR bytes 8 and 9 are bit depth and colour type (PNG spec 11.2.2);
                // colour types: gray 0, gray+alpha 4, RGB 2, RGBA 6.
                let ihdr = pngChunks(png).first
                XCTAssertEqual(ihdr?.type, "IHDR")
                XCTAssertEqual(ihdr.map { Int($0.data[8]) }, bitDepth)
                let expectedColorType = [Image.Layout.gray: 0, .grayAlpha: 4, .rgb: 2, .rgba: 6][layout]
                XCTAssertEqual(ihdr.map { Int($0.data[9]) }, expectedColorType)
            }
        }
    }

    func testWriteToFileThenDecodeFromFile() throws {
        let dir = try makeTempDirectory(self)
        let url = dir.appendingPathComponent("out.png")
        let image = try pattern(.rgba, bitDepth: 16)
        try PNGEncoder.write(image, text: [(key: "parameters", value: "steps 20")], to: url)
        let decoded = try ImageDecoder.decode(fileAt: url)
        XCTAssertEqual(decoded.image, image)
        XCTAssertEqual(decoded.textChunks, ["parameters": "steps 20"])
    }

    func testWriteIntoMissingDirectoryFailsNamingThePath() throws {
        let dir = try makeTempDirectory(self)
        let url = dir.appendingPathComponent("no-such-dir").appendingPathComponent("out.png")
        let image = try pattern(.gray, bitDepth: 8)
        let error = assertImageIOError(try PNGEncoder.write(image, to: url))
        guard case .writeFailed(let path, _)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertEqual(path, url.path)
        XCTAssertTrue(error?.description.contains(url.path) ?? false)
    }

    func testEightBitSampleAbove255IsRejected() throws {
        // 256 is the smallest value that does not fit in 8 bits.
        let image = try Image(width: 2, height: 1, layout: .gray, bitDepth: 8, samples: [0, 256])
        let error = assertImageIOError(try PNGEncoder.encode(image))
        guard case .invalidImage? = error else { return XCTFail("got \(String(describing: error))") }
    }

    func testImageInitValidatesSampleCount() {
        // 2x2 RGB needs 2*2*3 = 12 samples; 11 and 13 are off by one either way.
        for n in [11, 13] {
            let error = assertImageIOError(try Image(width: 2, height: 2, layout: .rgb, bitDepth: 8,
                                                     samples: [UInt16](repeating: 0, count: n)))
            guard case .invalidImage? = error else { return XCTFail("got \(String(describing: error))") }
        }
        XCTAssertNotNil(try? Image(width: 2, height: 2, layout: .rgb, bitDepth: 8, samples: [UInt16](repeating: 0, count: 12)))
        assertImageIOError(try Image(width: 0, height: 2, layout: .gray, bitDepth: 8, samples: []))
        assertImageIOError(try Image(width: 1, height: 1, layout: .gray, bitDepth: 12, samples: [0]))
    }
}
