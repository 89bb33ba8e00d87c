import Foundation
import XCTest
import DarkroomImageIO

/// Replays Tests/Fixtures/fuzz/image/ (inputs found by `tools/fuzz image`, minimised) through the decoder the
/// fuzz target calls: each must end in an `ImageIOError` or a decoded image, never a trap, within a second.
final class FuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/image")

    func testFuzzInputsThrowOrDecode() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.folder, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
        for url in files {
            let bytes = [UInt8](try Data(contentsOf: url))
            let start = Date()
            do {
                let decoded = try ImageDecoder.decode(data: bytes, name: url.lastPathComponent)
                let image = decoded.image
                XCTAssertEqual(image.samples.count, image.width * image.height * image.layout.channels, url.lastPathComponent)
            } catch is ImageIOError {
                // The expected outcome for a malformed file.
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, "\(url.lastPathComponent) is slow to reject")
        }
    }

    /// A 182-byte PNG whose header declares 8192x8192 RGBA at 16 bits (text chunks, a cut IDAT): found by the
    /// image fuzzer as an out-of-memory input, it is now refused as truncated before any pixel buffer exists.
    func testHeaderPromisingMoreThanDeflateCanHoldIsTruncated() throws {
        let url = Self.folder.appendingPathComponent("oom-8192x8192-rgba16-truncated-idat.png")
        let bytes = [UInt8](try Data(contentsOf: url))
        XCTAssertThrowsError(try ImageDecoder.decode(data: bytes, name: "x.png")) { error in
            guard case ImageIOError.truncated(_, _, let detail)? = error as? ImageIOError else {
                return XCTFail("expected truncated, got \(error)")
            }
            XCTAssertTrue(detail.contains("8192x8192"), detail)
        }
    }

    /// 228- and 243-byte PNGs whose text chunks declare 1.7 GB and 285 MB (image fuzzer: a timeout and a slow
    /// input, as libpng allocates a chunk's declared length before reading it): refused from the chunk list.
    func testChunkRunningPastTheEndIsTruncated() throws {
        for (file, type) in [("timeout-itxt-declaring-1.7gb.png", "iTXt"), ("slow-text-declaring-285mb.png", "tEXt")] {
            let bytes = [UInt8](try Data(contentsOf: Self.folder.appendingPathComponent(file)))
            XCTAssertThrowsError(try ImageDecoder.decode(data: bytes, name: file)) { error in
                guard case ImageIOError.truncated(_, _, let detail)? = error as? ImageIOError else { return XCTFail("\(error)") }
                XCTAssertTrue(detail.contains("the \(type) chunk") && detail.contains("declares"), detail)
            }
        }
    }

    /// The bound is deflate's own (1032:1), so the most compressible real image still decodes: 4096x4096
    /// black gray, written by zlib at level 9 (Tests/Fixtures/images/black_4096_gray_zlib9.png, 1024:1).
    func testMaximallyCompressedImageStillDecodes() throws {
        let url = Self.folder.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("images/black_4096_gray_zlib9.png")
        let decoded = try ImageDecoder.decode(data: [UInt8](try Data(contentsOf: url)), name: "black.png")
        XCTAssertEqual(decoded.image.width, 4096)
        XCTAssertEqual(decoded.image.height, 4096)
        XCTAssertEqual(decoded.image.samples.max(), 0)
    }
}
