import DarkroomWeights
import Foundation
import XCTest

/// Embedding files of `Tests/Fixtures/embeddings/`, written by `tools/reference/make_embedding_fixtures.py`
/// (shapes as that script writes them; the values are checked end to end by the pipeline's
/// `EmbeddingParityTests`), and hostile inputs: each a thrown error naming the file, never a trap.
final class TextualInversionTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/embeddings")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ti-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func load(_ name: String) throws -> TextualInversionEmbedding {
        try TextualInversionEmbedding.load(Self.root.appendingPathComponent(name))
    }

    func testFixtureFormats() throws {
        // (file, vectors, width) as the reference script writes them.
        for (file, count) in [("embeddings/xqzone.safetensors", 1), ("embeddings/xqztrio.safetensors", 3),
                              ("embeddings/xqzflat.safetensors", 1), ("embeddings/xqzpt.pt", 2), ("embeddings/xqzhalf.pt", 2),
                              ("hostile/param.pt", 1)] {
            let e = try load(file)
            XCTAssertEqual(e.count, count, file)
            XCTAssertEqual(e.width, 4, file)
            XCTAssertEqual(e.name, URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent)
        }
        XCTAssertEqual(try load("hostile/wide.safetensors").width, 8)
    }

    /// The .pt reader against the same tensor in safetensors: xqzhalf.pt is a strided F16 view, so its
    /// values must be exactly F16 numbers; xqzpt.pt round-trips through our own writer.
    func testTorchValuesAreTheStoredOnes() throws {
        let half = try load("embeddings/xqzhalf.pt")
        for v in half.vectors { XCTAssertEqual(FloatConversion.float(fromFloat16Bits: FloatConversion.float16Bits(from: v)), v) }
        let pt = try load("embeddings/xqzpt.pt")
        XCTAssertTrue(pt.vectors.contains { $0 != 0 })
    }

    func testPickleCallingAFunctionIsRefusedNotRun() throws {
        XCTAssertThrowsError(try load("hostile/evil.pt")) { error in
            XCTAssert("\(error)".contains("__builtin__.print") && "\(error)".contains("refused"), "\(error)")   // protocol 2 names builtins as __builtin__
            XCTAssert("\(error)".contains("evil.pt"), "\(error)")
        }
    }

    func testTruncatedFilesThrow() throws {
        for name in ["embeddings/xqzpt.pt", "embeddings/xqztrio.safetensors"] {
            let bytes = try Data(contentsOf: Self.root.appendingPathComponent(name))
            for length in Set([0, 1, 7, 8, 30, 64, bytes.count / 3, bytes.count / 2, bytes.count - 23, bytes.count - 1]) where length < bytes.count {
                let url = scratch.appendingPathComponent("cut." + URL(fileURLWithPath: name).pathExtension)
                try bytes.prefix(length).write(to: url)
                XCTAssertThrowsError(try TextualInversionEmbedding.load(url), "\(name) cut at \(length)") { error in
                    XCTAssert("\(error)".contains("cut."), "\(error)")
                }
            }
        }
    }

    /// Every single-byte corruption of the .pt file either loads or throws (no trap, no hang).
    func testCorruptedTorchBytesNeverTrap() throws {
        let bytes = [UInt8](try Data(contentsOf: Self.root.appendingPathComponent("embeddings/xqzpt.pt")))
        for index in stride(from: 0, to: bytes.count, by: 3) {
            for value: UInt8 in [0x00, 0xff, 0x7f, bytes[index] ^ 0x01] {
                var copy = bytes
                copy[index] = value
                _ = try? TorchZipFile(bytes: copy, path: "x.pt")
            }
        }
    }

    func testEmptyNaNAndAmbiguousTensors() throws {
        func write(_ name: String, _ tensors: [(String, [Int], [Float])]) throws -> URL {
            var writer = SafetensorsWriter()
            for (key, shape, values) in tensors { try writer.add(key, shape: shape, floats: values) }
            let url = scratch.appendingPathComponent(name)
            try writer.write(to: url)
            return url
        }
        let cases: [(URL, String)] = [
            (try write("empty.safetensors", [("emb_params", [0, 4], [])]), "empty"),
            (try write("nan.safetensors", [("emb_params", [2, 4], [0, 1, 2, 3, 4, .nan, 6, 7])]), "element 5"),
            (try write("inf.safetensors", [("emb_params", [4], [0, .infinity, 2, 3])]), "element 1"),
            (try write("two.safetensors", [("a", [4], [0, 1, 2, 3]), ("b", [4], [0, 1, 2, 3])]), "2 tensors"),
            (try write("cube.safetensors", [("emb_params", [1, 2, 2], [0, 1, 2, 3])]), "shape [1, 2, 2]"),
            (try write("many.safetensors", [("emb_params", [76, 1], [Float](repeating: 0, count: 76))]), "76 vectors"),
        ]
        for (url, fragment) in cases {
            XCTAssertThrowsError(try TextualInversionEmbedding.load(url)) { error in
                XCTAssert("\(error)".contains(fragment) && "\(error)".contains(url.lastPathComponent), "\(error)")
            }
        }
        let text = scratch.appendingPathComponent("x.txt")
        try Data("hello".utf8).write(to: text)
        XCTAssertThrowsError(try TextualInversionEmbedding.load(text))
        let notZip = scratch.appendingPathComponent("x.pt")
        try Data([0x80, 0x02, 0x8a, 0x0a]).write(to: notZip)
        XCTAssertThrowsError(try TextualInversionEmbedding.load(notZip)) { XCTAssert("\($0)".contains("legacy"), "\($0)") }
    }
}
