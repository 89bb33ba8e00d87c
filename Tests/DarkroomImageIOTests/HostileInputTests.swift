import DarkroomImageIO
import Foundation
import XCTest

final class HostileInputTests: XCTestCase {
    /// 64x64 RGB of seeded noise: incompressible, so the IDAT / entropy data is
    /// several KB and a cut in the middle lands inside pixel data.
    private func noiseImage() throws -> Image {
        let bytes = randomBytes(64 * 64 * 3, seed: 42)
        return try Image(width: 64, height: 64, layout: .rgb, bitDepth: 8, samples: bytes.map { UInt16($0) })
    }

    private func assertNamed(_ error: ImageIOError?, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let error else { return }
        XCTAssertEqual(error.name, name, file: file, line: line)
        XCTAssertTrue(error.description.contains(name), "\(error.description)", file: file, line: line)
    }

    func testZeroByteFile() throws {
        let url = try makeTempDirectory(self).appendingPathComponent("empty.png")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data()))
        let error = assertImageIOError(try ImageDecoder.decode(fileAt: url))
        XCTAssertEqual(error, .emptyFile(name: url.path))
        assertNamed(error, url.path)
    }

    func testTruncatedPNG() throws {
        let png = try PNGEncoder.encode(try noiseImage())
        let half = Array(png[0..<(png.count / 2)])
        let error = assertImageIOError(try ImageDecoder.decode(data: half, name: "half.png"))
        guard case .truncated(_, .png, _)? = error else { return XCTFail("got \(String(describing: error))") }
        assertNamed(error, "half.png")

        // Every cut point (step 7 bytes, plus the last 12 = the IEND chunk) must fail cleanly:
        // 1 byte is not recognisable, 2...7 bytes end inside the signature, the rest lack IEND.
        let cuts = Array(stride(from: 1, to: png.count, by: 7)) + Array((png.count - 12)..<png.count)
        for cut in cuts {
            let error = assertImageIOError(try ImageDecoder.decode(data: Array(png[0..<cut]), name: "cut\(cut).png"))
            switch error {
            case .truncated(_, .png, _)?: break
            case .unrecognizedFormat? where cut == 1: break
            default: XCTFail("cut \(cut): got \(String(describing: error))")
            }
        }
    }

    func testTruncatedJPEG() throws {
        let jpeg = try JPEGEncoder.encode(try noiseImage(), quality: 95)
        let half = Array(jpeg[0..<(jpeg.count / 2)])
        let error = assertImageIOError(try ImageDecoder.decode(data: half, name: "half.jpg"))
        guard case .truncated(_, .jpeg, let detail)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertTrue(detail.contains("Premature end of JPEG file"), detail) // libjpeg's JWRN_JPEG_EOF text
        assertNamed(error, "half.jpg")

        // Every cut (step 7, plus the last 2 bytes = EOI) is reported as truncated; 1 byte is unrecognisable.
        let cuts = Array(stride(from: 1, to: jpeg.count, by: 7)) + [jpeg.count - 2, jpeg.count - 1]
        for cut in cuts {
            let error = assertImageIOError(try ImageDecoder.decode(data: Array(jpeg[0..<cut]), name: "cut\(cut).jpg"))
            switch error {
            case .truncated(_, .jpeg, _)?: break
            case .unrecognizedFormat? where cut == 1: break
            default: XCTFail("cut \(cut): got \(String(describing: error))")
            }
        }
    }

    func testBadCRCInCriticalChunks() throws {
        let png = try PNGEncoder.encode(try noiseImage())
        let chunks = pngChunks(png)
        // Offsets: 8-byte signature, then each chunk is 4 length + 4 type + data + 4 CRC.
        var offset = 8
        for chunk in chunks {
            if chunk.type == "IHDR" || chunk.type == "IDAT" {
                var damaged = png
                damaged[offset + 8 + chunk.data.count] ^= 0xFF // first CRC byte
                let error = assertImageIOError(try ImageDecoder.decode(data: damaged, name: "crc-\(chunk.type).png"))
                guard case .corrupt(_, .png, let detail)? = error else {
                    XCTFail("\(chunk.type): got \(String(describing: error))"); continue
                }
                XCTAssertTrue(detail.contains("CRC"), detail) // libpng: "IDAT: CRC error"
                assertNamed(error, "crc-\(chunk.type).png")
            }
            offset += 12 + chunk.data.count
        }
    }

    /// libpng's default (kept): a bad CRC in an ancillary chunk only drops that
    /// chunk with a warning; the image still decodes.
    func testBadCRCInTextChunkDropsOnlyThatChunk() throws {
        let image = try noiseImage()
        let png = try PNGEncoder.encode(image, text: [(key: "Title", value: "t"), (key: "parameters", value: "p")])
        var offset = 8
        var damaged = png
        for chunk in pngChunks(png) {
            if chunk.type == "tEXt" && chunk.data.starts(with: Array("Title".utf8)) {
                damaged[offset + 8 + chunk.data.count] ^= 0xFF
            }
            offset += 12 + chunk.data.count
        }
        XCTAssertNotEqual(damaged, png)
        let d = try ImageDecoder.decode(data: damaged, name: "ancillary-crc.png")
        XCTAssertEqual(d.textChunks, ["parameters": "p"])
        XCTAssertEqual(d.image, image)
    }

    private func pngWithIHDR(width: UInt32, height: UInt32) -> [UInt8] {
        // IHDR: width, height, bit depth 8, colour type 2 (RGB), compression 0, filter 0, interlace 0;
        // valid CRC, so only the dimensions are wrong. One tiny IDAT follows.
        let ihdr = be32(width) + be32(height) + [8, 2, 0, 0, 0]
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + pngChunk("IHDR", ihdr)
            + pngChunk("IDAT", [0x78, 0x9C, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]) + pngChunk("IEND", [])
    }

    func testDecompressionBombPNGIsRefusedFromTheHeader() throws {
        let bomb = pngWithIHDR(width: 100_000, height: 100_000)
        let error = assertImageIOError(try ImageDecoder.decode(data: bomb, name: "bomb.png"))
        // Default limit 8192 * 8192 = 67,108,864 pixels.
        XCTAssertEqual(error, .tooManyPixels(name: "bomb.png", width: 100_000, height: 100_000, limit: 67_108_864))
        let text = error?.description ?? ""
        for part in ["bomb.png", "100000x100000", "67108864"] { XCTAssertTrue(text.contains(part), text) }

        // A custom limit applies too: 64x64 = 4096 pixels against a limit of 4095.
        let png = try PNGEncoder.encode(try noiseImage())
        XCTAssertEqual(assertImageIOError(try ImageDecoder.decode(data: png, name: "small.png",
                                                                   limits: DecodeLimits(maxPixels: 4095))),
                       .tooManyPixels(name: "small.png", width: 64, height: 64, limit: 4095))
    }

    func testDecompressionBombJPEGIsRefusedFromTheHeader() throws {
        let jpeg = try JPEGEncoder.encode(try noiseImage(), quality: 90)
        // 60000x60000 (within JPEG's 65500 maximum) would need 60000*60000*3*2 bytes = 21.6 GB.
        let bomb = try XCTUnwrap(patchingSOF0(jpeg, width: 60000, height: 60000))
        XCTAssertEqual(assertImageIOError(try ImageDecoder.decode(data: bomb, name: "bomb.jpg")),
                       .tooManyPixels(name: "bomb.jpg", width: 60000, height: 60000, limit: 67_108_864))
        XCTAssertEqual(assertImageIOError(try ImageDecoder.decode(data: jpeg, name: "small.jpg",
                                                                   limits: DecodeLimits(maxPixels: 4095))),
                       .tooManyPixels(name: "small.jpg", width: 64, height: 64, limit: 4095))
    }

    func testZeroDimensions() throws {
        XCTAssertEqual(assertImageIOError(try ImageDecoder.decode(data: pngWithIHDR(width: 0, height: 5), name: "zero.png")),
                       .invalidDimensions(name: "zero.png", width: 0, height: 5))
        let jpeg = try JPEGEncoder.encode(try noiseImage(), quality: 90)
        let zero = try XCTUnwrap(patchingSOF0(jpeg, width: 64, height: 0))
        XCTAssertEqual(assertImageIOError(try ImageDecoder.decode(data: zero, name: "zero.jpg")),
                       .invalidDimensions(name: "zero.jpg", width: 64, height: 0))
    }

    func testRandomBytes() throws {
        // Seed 7, 4096 bytes: starts with neither signature (checked below).
        let noise = randomBytes(4096, seed: 7)
        XCTAssertNil(ImageDecoder.sniffFormat(noise))
        let error = assertImageIOError(try ImageDecoder.decode(data: noise, name: "noise.bin"))
        XCTAssertEqual(error, .unrecognizedFormat(name: "noise.bin"))
        assertNamed(error, "noise.bin")

        // Random bytes behind a valid signature: corrupt or truncated, never a crash.
        for (signature, format) in [([UInt8]([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), ImageFormat.png),
                                    ([0xFF, 0xD8, 0xFF], .jpeg)] {
            for seed in UInt64(1)...50 {
                let data = signature + randomBytes(512, seed: seed)
                let error = assertImageIOError(try ImageDecoder.decode(data: data, name: "r\(seed)"))
                switch error {
                case .corrupt(_, let f, _)?, .truncated(_, let f, _)?, .unsupported(_, let f, _)?:
                    XCTAssertEqual(f, format)
                case .invalidDimensions?, .tooManyPixels?: break
                default: XCTFail("seed \(seed): got \(String(describing: error))")
                }
            }
        }
    }

    /// Seeded byte flips (1-4 random bytes, 300 variants per format) in valid
    /// files: each decode either succeeds or throws an ImageIOError.
    func testByteFlipsNeverCrash() throws {
        let image = try noiseImage()
        let files = [try PNGEncoder.encode(image), try JPEGEncoder.encode(image, quality: 90)]
        var rng = SplitMix64(seed: 2024)
        for original in files {
            for i in 0..<300 {
                var data = original
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    data[Int.random(in: 0..<data.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                do {
                    _ = try ImageDecoder.decode(data: data, name: "flip\(i)")
                } catch is ImageIOError {
                } catch {
                    XCTFail("unexpected error type \(error)")
                }
            }
        }
    }

    func testNonexistentPath() throws {
        let url = try makeTempDirectory(self).appendingPathComponent("missing.png")
        let error = assertImageIOError(try ImageDecoder.decode(fileAt: url))
        XCTAssertEqual(error, .fileNotFound(path: url.path))
        assertNamed(error, url.path)
    }

    func testDirectory() throws {
        let dir = try makeTempDirectory(self).appendingPathComponent("looks-like.png")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: false)
        let error = assertImageIOError(try ImageDecoder.decode(fileAt: dir))
        XCTAssertEqual(error, .isDirectory(path: dir.path))
        assertNamed(error, dir.path)
    }

    func testPermissionDenied() throws {
        // root bypasses file modes, so this can only be observed as another user.
        try XCTSkipIf(geteuid() == 0, "running as root: mode 000 files stay readable")
        let url = try makeTempDirectory(self).appendingPathComponent("secret.png")
        try PNGEncoder.write(try noiseImage(), to: url)
        XCTAssertEqual(chmod(url.path, 0), 0)
        let error = assertImageIOError(try ImageDecoder.decode(fileAt: url))
        XCTAssertEqual(error, .permissionDenied(path: url.path))
    }

    func testFileSizeLimit() throws {
        let url = try makeTempDirectory(self).appendingPathComponent("big.png")
        let png = try PNGEncoder.encode(try noiseImage())
        try Data(png).write(to: url)
        // Limit one byte below the file's size.
        let error = assertImageIOError(try ImageDecoder.decode(fileAt: url, limits: DecodeLimits(maxFileBytes: png.count - 1)))
        XCTAssertEqual(error, .fileTooLarge(path: url.path, bytes: png.count, limit: png.count - 1))
    }

    func testFormatIsSniffedNotTakenFromTheExtension() throws {
        let url = try makeTempDirectory(self).appendingPathComponent("actually-a-png.jpg")
        let image = try noiseImage()
        try PNGEncoder.write(image, to: url)
        let d = try ImageDecoder.decode(fileAt: url)
        XCTAssertEqual(d.format, .png)
        XCTAssertEqual(d.image, image)
    }

    func testEveryDescriptionIsOneSentenceNamingTheFile() {
        let n = "/tmp/x.png"
        let all: [ImageIOError] = [
            .fileNotFound(path: n), .isDirectory(path: n), .permissionDenied(path: n),
            .readFailed(path: n, reason: "I/O error"), .writeFailed(path: n, reason: "disk full"),
            .fileTooLarge(path: n, bytes: 10, limit: 5), .emptyFile(name: n), .unrecognizedFormat(name: n),
            .truncated(name: n, format: .png, detail: "d"), .corrupt(name: n, format: .jpeg, detail: "d"),
            .unsupported(name: n, format: .jpeg, detail: "d"), .invalidDimensions(name: n, width: 0, height: 1),
            .tooManyPixels(name: n, width: 9, height: 9, limit: 80), .outOfMemory(name: n, format: .png),
            .invalidImage(name: n, detail: "d"), .invalidTextChunk(name: n, key: "k", reason: "r"),
            .encodeFailed(name: n, format: .png, detail: "d"),
        ]
        for e in all {
            XCTAssertTrue(e.description.contains(n), e.description)
            XCTAssertEqual(e.name, n)
            XCTAssertTrue(e.description.hasSuffix("."), e.description)
            XCTAssertFalse(e.description.contains("\n"), e.description)
        }
    }
}
