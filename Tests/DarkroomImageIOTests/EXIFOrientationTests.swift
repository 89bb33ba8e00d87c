import DarkroomImageIO
import XCTest

final class EXIFOrientationTests: XCTestCase {
    /// exif_orientation_k.jpg: the 48x32 block pattern (6x4 blocks of 8x8 px,
    /// colour (51 bx, 85 by, (40 (bx + by) + 20) % 256)) saved by Pillow at
    /// quality 95 without chroma subsampling, with EXIF Orientation = k (odd k:
    /// "II" TIFF header, even k: "MM"). exif_orientation_k_expected.png is
    /// Pillow's ImageOps.exif_transpose of that JPEG. The blocks are flat and
    /// aligned to the 8x8 DCT grid, so both decoders give the same pixels
    /// (measured difference 0); tolerance 1 as for the other Pillow comparisons.
    func testOrientations1Through8MatchPillowExifTranspose() throws {
        for k in 1...8 {
            let decoded = try decodeFixture("exif_orientation_\(k).jpg")
            let expected = try decodeFixture("exif_orientation_\(k)_expected.png")
            XCTAssertEqual(decoded.exifOrientation, k)
            // 5...8 swap the axes: 48x32 becomes 32x48.
            XCTAssertEqual(decoded.image.width, k >= 5 ? 32 : 48, "orientation \(k)")
            XCTAssertEqual(decoded.image.height, k >= 5 ? 48 : 32, "orientation \(k)")
            XCTAssertLessThanOrEqual(maxAbsDiff(decoded.image, expected.image), 1, "orientation \(k)")
        }
    }

    /// Independent of Pillow: where the top-left source block (0,0) ends up.
    /// Source corner colours: block (0,0) = (0, 0, 20), block (5,0) = (255, 0, 220),
    /// block (0,3) = (0, 255, 140), block (5,3) = (255, 255, 84) [formula above].
    func testCornerColoursFollowTheTransposeTable() throws {
        let tl = [0, 0, 20], tr = [255, 0, 220], bl = [0, 255, 140], br = [255, 255, 84]
        // Expected output top-left corner per orientation (PIL's table: 2 mirror, 3 rotate 180,
        // 4 flip, 5 transpose, 6 rotate 270 = 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
        let expectedTopLeft: [Int: [Int]] = [1: tl, 2: tr, 3: br, 4: bl, 5: tl, 6: bl, 7: br, 8: tr]
        let expectedTopRight: [Int: [Int]] = [1: tr, 2: tl, 3: bl, 4: br, 5: bl, 6: tl, 7: tr, 8: br]
        for k in 1...8 {
            let image = try decodeFixture("exif_orientation_\(k).jpg").image
            let gotTL = pixel(image, 2, 2)
            let gotTR = pixel(image, image.width - 3, 2)
            // Flat blocks at q95: within 3 levels of the source colour.
            XCTAssertLessThanOrEqual(zip(gotTL, expectedTopLeft[k] ?? []).map { abs($0 - $1) }.max() ?? 99, 3, "k=\(k) TL \(gotTL)")
            XCTAssertLessThanOrEqual(zip(gotTR, expectedTopRight[k] ?? []).map { abs($0 - $1) }.max() ?? 99, 3, "k=\(k) TR \(gotTR)")
        }
    }

    private func plainJPEG() throws -> (jpeg: [UInt8], image: Image) {
        let jpeg = try JPEGEncoder.encode(try gradientImage(.rgb), quality: 90)
        return (jpeg, try ImageDecoder.decode(data: jpeg, name: "plain.jpg").image)
    }

    func testLongTypedOrientationIsHonoured() throws {
        let (jpeg, plain) = try plainJPEG()
        // Type 4 (LONG) holding 6: applied like SHORT 6 (rotate 90 clockwise -> 48x64).
        let d = try ImageDecoder.decode(data: insertingAPP1(exifPayload(orientation: 6, bigEndian: true, type: 4), into: jpeg),
                                        name: "long.jpg")
        XCTAssertEqual(d.exifOrientation, 6)
        XCTAssertEqual(d.image.width, plain.height)
        XCTAssertEqual(d.image.height, plain.width)
        // out(x, y) = in(y, H-1-x): the output's top-left is the source's bottom-left.
        XCTAssertEqual(pixel(d.image, 0, 0), pixel(plain, 0, plain.height - 1))
    }

    func testMalformedEXIFIsIgnored() throws {
        let (jpeg, plain) = try plainJPEG()
        let exif: [UInt8] = Array("Exif".utf8) + [0, 0]
        var bad: [(String, [UInt8])] = [
            ("header only", exif),
            ("short TIFF header", exif + Array("MM".utf8) + [0]),
            ("bad byte order", exif + Array("XX".utf8) + [0, 42, 0, 0, 0, 8]),
            ("bad magic", exif + Array("MM".utf8) + [0, 43, 0, 0, 0, 8]),
            ("IFD offset past end", exif + Array("MM".utf8) + [0, 42, 0xFF, 0xFF, 0xFF, 0xF0]),
            ("entry count past end", exif + Array("II".utf8) + [42, 0, 8, 0, 0, 0] + [0xFF, 0xFF, 0x12, 0x01]),
            ("orientation 0", exifPayload(orientation: 0, bigEndian: false)),
            ("orientation 9", exifPayload(orientation: 9, bigEndian: true)),
            ("orientation 65535", exifPayload(orientation: 65535, bigEndian: true)),
            ("ASCII type", exifPayload(orientation: 6, bigEndian: false, type: 2)),
            ("no orientation tag", exifPayload(orientation: 6, bigEndian: false, tag: 0x0110)),
        ]
        // Plus 200 seeded random tails after a valid-looking header (seeds 1...200).
        for seed in 1...200 {
            let tail = randomBytes(Int(seed % 40), seed: UInt64(seed))
            bad.append(("random \(seed)", exif + Array((seed % 2 == 0 ? "MM" : "II").utf8)
                            + (seed % 2 == 0 ? [0, 42, 0, 0, 0, 8] : [42, 0, 8, 0, 0, 0]) + tail))
        }
        for (label, payload) in bad {
            let d = try ImageDecoder.decode(data: insertingAPP1(payload, into: jpeg), name: "\(label).jpg")
            if label.hasPrefix("random") {
                // Random tails may by chance contain a valid entry; they only must not crash.
                if d.exifOrientation == nil { XCTAssertEqual(d.image, plain, label) }
            } else {
                XCTAssertNil(d.exifOrientation, label)
                XCTAssertEqual(d.image, plain, label)
            }
        }
    }
}
