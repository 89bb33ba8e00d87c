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
}
