import DarkroomImageIO
import XCTest

final class JPEGTests: XCTestCase {
    /// Our encoder at quality 95 on the smooth 64x48 gradient, decoded again.
    /// Tolerances: measured (libjpeg-turbo 2.1.5) max |error| 1 / mean 0.13 for
    /// gray and max 5 / mean 0.61 for RGB (4:2:0 chroma subsampling); the bounds
    /// (max 3 and 8, mean <= 1.0) leave headroom for other libjpeg builds and are
    /// far below what a wrong colour conversion or a shifted row gives (tens+).
    func testGrayAndRGBDecodeCloseToSource() throws {
        for (layout, maxTolerance) in [(Image.Layout.gray, 3), (.rgb, 8)] {
            let source = try gradientImage(layout)
            let jpeg = try JPEGEncoder.encode(source, quality: 95)
            XCTAssertEqual(ImageDecoder.sniffFormat(jpeg), .jpeg)
            let decoded = try ImageDecoder.decode(data: jpeg, name: "gradient-\(layout).jpg")
            XCTAssertEqual(decoded.format, .jpeg)
            XCTAssertEqual(decoded.image.layout, layout)
            XCTAssertEqual(decoded.image.bitDepth, 8)
            XCTAssertNil(decoded.exifOrientation)
            XCTAssertLessThanOrEqual(maxAbsDiff(decoded.image, source), maxTolerance, "\(layout)")
            XCTAssertLessThanOrEqual(meanAbsDiff(decoded.image, source), 1.0, "\(layout)")
        }
    }

    /// Pillow-written files against Pillow's own decode of them (committed PNGs).
    /// Both sides run libjpeg-turbo's islow IDCT with fancy upsampling, which is
    /// deterministic: measured difference 0 (Pillow 13.0.0's bundled libjpeg-turbo
    /// vs Debian's 2.1.5). Tolerance 1 allows for other libjpeg-turbo versions.
    func testPillowJPEGsMatchPillowsDecode() throws {
        for (jpg, png, layout) in [("rgb420.jpg", "rgb420_expected.png", Image.Layout.rgb),
                                   ("progressive.jpg", "progressive_expected.png", .rgb),
                                   ("gray.jpg", "gray_expected.png", .gray)] {
            let decoded = try decodeFixture(jpg)
            let expected = try decodeFixture(png)
            XCTAssertEqual(decoded.image.layout, layout, jpg)
            XCTAssertLessThanOrEqual(maxAbsDiff(decoded.image, expected.image), 1, jpg)
        }
    }

    /// cmyk.jpg: Pillow's convert("CMYK") of the 48x32 block pattern, saved as an
    /// Adobe (inverted) CMYK JPEG. Expected = Pillow's open(...).convert("RGB").
    /// We use PIL's exact CMYK->RGB arithmetic; measured difference 0, tolerance 1 as above.
    func testCMYKJPEGConvertsToRGBLikePillow() throws {
        let decoded = try decodeFixture("cmyk.jpg")
        let expected = try decodeFixture("cmyk_expected.png")
        XCTAssertEqual(decoded.image.layout, .rgb)
        XCTAssertEqual(decoded.image.width, 48) // 6 blocks of 8 px
        XCTAssertEqual(decoded.image.height, 32) // 4 blocks of 8 px
        XCTAssertLessThanOrEqual(maxAbsDiff(decoded.image, expected.image), 1)
        // And close to the original block colours (51 bx, 85 by, (40 (bx + by) + 20) % 256);
        // RGB->CMYK->RGB in Pillow is lossless, JPEG at q95 on flat 8x8 blocks adds at most a few levels.
        for by in 0..<4 {
            for bx in 0..<6 {
                let got = pixel(decoded.image, bx * 8 + 4, by * 8 + 4)
                let want = [51 * bx, 85 * by, (40 * (bx + by) + 20) % 256]
                XCTAssertLessThanOrEqual(zip(got, want).map { abs($0 - $1) }.max() ?? 0, 3, "block \(bx),\(by)")
            }
        }
    }

    /// SOF precision byte patched from 8 to 12: Debian's libjpeg-turbo 2.1.5 is built
    /// for 8-bit samples only and reports JERR_BAD_PRECISION, which maps to `.unsupported`.
    func testTwelveBitJPEGIsReportedAsUnsupported() throws {
        var jpeg = try JPEGEncoder.encode(try gradientImage(.gray), quality: 90)
        let sof = try XCTUnwrap(jpegSegmentOffset(jpeg, marker: 0xC0))
        jpeg[sof + 4] = 12 // SOF body: precision, height, width, ...
        let error = assertImageIOError(try ImageDecoder.decode(data: jpeg, name: "twelve.jpg"))
        guard case .unsupported(let name, .jpeg, _)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertEqual(name, "twelve.jpg")
    }

    func testEncoderRejectsWhatItCannotWrite() throws {
        let rgba = try makeImage(width: 2, height: 2, layout: .rgba, bitDepth: 8) { _, _, _ in 0 }
        let gray16 = try makeImage(width: 2, height: 2, layout: .gray, bitDepth: 16) { _, _, _ in 0 }
        let gray8 = try makeImage(width: 2, height: 2, layout: .gray, bitDepth: 8) { _, _, _ in 0 }
        for (image, quality) in [(rgba, 95), (gray16, 95), (gray8, 0), (gray8, 101)] {
            let error = assertImageIOError(try JPEGEncoder.encode(image, quality: quality))
            guard case .encodeFailed? = error else { return XCTFail("got \(String(describing: error))") }
        }
    }
}
