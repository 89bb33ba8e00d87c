import Crypto
import DarkroomPipeline
import DarkroomService
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// `Models/embeddings/`: names confined to the folder, admin links to files followed, the embeddings a
/// prompt uses found, loaded, width-checked and hashed as A1111's `TI hashes` (SHA-256, 12 hex digits).
final class EmbeddingLibraryTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/embeddings")
    var models: URL!
    var folder: URL { models.appendingPathComponent("embeddings") }
    /// The tiny sd1 fixture's text encoder (width 4), as `StableDiffusionModels.textEncoders` gives it.
    let sd1 = [(description: ModelFamily.sd1.textEncoders[0], width: 4)]

    override func setUpWithError() throws {
        models = FileManager.default.temporaryDirectory.appendingPathComponent("emblib-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in ["xqzone.safetensors", "xqztrio.safetensors", "xqzpt.pt"] {
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("embeddings/\(name)"), to: folder.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("hostile/wide.safetensors"), to: folder.appendingPathComponent("wide.safetensors"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: models) }

    func testPromptWordsFindTheirEmbeddingsAndHashes() throws {
        // An admin's link to a file elsewhere is followed, as for checkpoints.
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("linked.safetensors"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("embeddings/xqzflat.safetensors"))
        let library = EmbeddingLibrary(models: models)
        let used = try library.used(by: ["a xqztrio and linked, xqzone", "xqzpt xqztrio", "nothing here"], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x")
        XCTAssertEqual(used.map(\.embedding.name), ["xqztrio", "linked", "xqzone", "xqzpt"])
        XCTAssertEqual(used.map(\.embedding.count), [3, 1, 1, 2])
        let digest = SHA256.hash(data: try Data(contentsOf: folder.appendingPathComponent("xqztrio.safetensors"))).map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(used[0].hash, String(digest.prefix(12)))
        let hashes = try XCTUnwrap(EmbeddingLibrary.tiHashes(used))
        XCTAssertTrue(hashes.hasPrefix("xqztrio: \(used[0].hash), linked: "), hashes)
        var configuration = PipelineConfiguration()
        configuration.generation.prompt = "a xqztrio"
        let text = A1111Parameters.text(configuration: configuration, seed: 1, width: 64, height: 64, modelName: "m", modelHash: nil, tiHashes: hashes)
        XCTAssertTrue(text.contains("TI hashes: \"\(hashes)\", Precision: fp32, Version: Darkroom"), text)
        // A word that names no embedding stays text; no prompt word, no file read.
        XCTAssertEqual(try library.used(by: ["xqzones are plain"], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x").count, 0)
    }

    func testWrongWidthNamesFileAndBothWidths() throws {
        XCTAssertThrowsError(try EmbeddingLibrary(models: models).used(by: ["a wide photo"], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x")) { error in
            let failure = error as? JobFailure
            XCTAssertEqual(failure?.code, "embedding")
            XCTAssertEqual(failure?.file, "embeddings/wide.safetensors")
            XCTAssert(failure?.message.contains("width 8") == true && failure?.message.contains("width 4") == true, "\(error)")
        }
    }

    /// An SDXL file (clip_l + clip_g, models/sdxl_embeddings/xlemb.safetensors from make_sdxl_more_fixtures.py) is
    /// taken by an SDXL checkpoint's two encoders and refused on SD 1.x, naming the file and the widths; a one-tensor
    /// embedding is refused on SDXL.
    func testSDXLEmbeddingsByFamily() throws {
        let sdxlFixtures = Self.fixtures.deletingLastPathComponent().appendingPathComponent("models/sdxl_embeddings")
        try FileManager.default.copyItem(at: sdxlFixtures.appendingPathComponent("xlemb.safetensors"), to: folder.appendingPathComponent("xlemb.safetensors"))
        let library = EmbeddingLibrary(models: models)
        let tokenizer = try CLIPTokenizer.bundled()
        let sdxl = zip(ModelFamily.sdxl.textEncoders, [4, 8]).map { (description: $0, width: $1) }
        XCTAssertEqual(try library.used(by: ["an xlemb photo"], tokenizer: tokenizer, textEncoders: sdxl, family: "SDXL").map(\.embedding.count), [1])
        for (prompt, encoders, family, file, fragment) in [("an xlemb photo", sd1, "SD 1.x", "embeddings/xlemb.safetensors", "SDXL embedding"),
                                                          ("a xqzone photo", sdxl, "SDXL", "embeddings/xqzone.safetensors", "one-tensor")] {
            XCTAssertThrowsError(try library.used(by: [prompt], tokenizer: tokenizer, textEncoders: encoders, family: family)) { error in
                let failure = error as? JobFailure
                XCTAssertEqual(failure?.code, "embedding")
                XCTAssertEqual(failure?.file, file)
                XCTAssert(failure?.message.contains(fragment) == true && failure?.message.contains("width 4") == true, "\(error)")
            }
        }
    }

    func testNamesAreConfinedToTheFolder() throws {
        let library = EmbeddingLibrary(models: models)
        for name in ["../xqzone", "sub/xqzone", "..", ".hidden", "/etc/passwd"] {
            XCTAssertThrowsError(try library.resolve(name), name) { XCTAssert("\($0)".contains("not a path") || "\($0)".contains("No embedding"), "\($0)") }
        }
        // A link to a folder (or to nothing) is refused when used; so is a name two files share.
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("escape.pt"), withDestinationURL: URL(fileURLWithPath: "/"))
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("dangling.pt"), withDestinationURL: models.appendingPathComponent("none"))
        try FileManager.default.copyItem(at: folder.appendingPathComponent("xqzone.safetensors"), to: folder.appendingPathComponent("xqzone.bin"))
        for (prompt, fragment) in [("escape", "not a regular file"), ("dangling", "not a regular file"), ("xqzone", "ambiguous")] {
            XCTAssertThrowsError(try library.used(by: [prompt], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x"), prompt) { error in
                XCTAssert("\(error)".contains(fragment), "\(error)")
            }
        }
        // A truncated embedding named by a prompt fails with its file; unused, it costs nothing.
        let data = try Data(contentsOf: folder.appendingPathComponent("xqzpt.pt"))
        try data.prefix(100).write(to: folder.appendingPathComponent("xqzpt.pt"))
        XCTAssertEqual(try library.used(by: ["xqztrio"], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x").count, 1)
        XCTAssertThrowsError(try library.used(by: ["xqzpt"], tokenizer: try CLIPTokenizer.bundled(), textEncoders: sd1, family: "SD 1.x")) { error in
            XCTAssert("\(error)".contains("embeddings/xqzpt.pt"), "\(error)")
        }
    }
}
