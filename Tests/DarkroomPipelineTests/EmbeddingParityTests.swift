import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// Textual inversion against `Tests/Fixtures/embeddings/expected.safetensors` (tools/reference/
/// make_embedding_fixtures.py, diffusers 0.42.1 on the tiny sd1 model, text width 4):
/// - `te<i>.hidden`: diffusers' `encode_prompt` after `load_textual_inversion` of every fixture embedding;
///   the prompts use each name as a standalone word in one chunk, where diffusers' token rewriting and
///   A1111's insertion agree. Within 1e-4, the model tests' text-encoder tolerance.
/// - `long.hidden`: the script's port of A1111's tokenize_line + EmbeddingsWithFixes on a 3-chunk prompt
///   (comma backtrack and BREAK), 1e-4; `long.fixes` the (chunk, position, vectors) it placed.
/// - `i2i.image`: one whole StableDiffusionImg2ImgPipeline run with embeddings in both prompts, 1e-3.
final class EmbeddingParityTests: XCTestCase {
    static let root = PipelineFixtures.modelsRoot.deletingLastPathComponent().appendingPathComponent("embeddings")

    static func embeddings() throws -> [TextualInversionEmbedding] {
        try ["xqzone.safetensors", "xqztrio.safetensors", "xqzflat.safetensors", "xqzpt.pt", "xqzhalf.pt"].map {
            try TextualInversionEmbedding.load(root.appendingPathComponent("embeddings").appendingPathComponent($0))
        }
    }

    func testTextEncoderMatchesDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let prompts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(expected.metadata["prompts"]).utf8)) as? [String])
        XCTAssertEqual(prompts.count, 5)
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let embeddings = try Self.embeddings()
        let counts = Dictionary(uniqueKeysWithValues: embeddings.map { ($0.name, $0.count) })
        let byName = Dictionary(uniqueKeysWithValues: embeddings.map { ($0.name, $0) })
        for (i, prompt) in prompts.enumerated() {
            let chunks = pipeline.tokenizer.weightedChunks(prompt, padToken: 49407, embeddings: counts)
            XCTAssertEqual(chunks.chunks.count, 1, prompt)
            let got = pipeline.models.textEncoder(chunks, embeddings: byName)
            assertWithin(got, try expected.tensor("te\(i).hidden"), absolute: 1e-4, prompt)
        }
        // A1111's chunking with embeddings (long prompt).
        let long = try XCTUnwrap(expected.metadata["long_prompt"])
        let chunks = pipeline.tokenizer.weightedChunks(long, padToken: 49407, embeddings: counts)
        let fixes = try expected.floats("long.fixes")
        let flat = chunks.fixes.enumerated().flatMap { c, list in list.map { [Float(c), Float($0.position), Float(counts[$0.name] ?? 0)] } }
        XCTAssertEqual(flat.flatMap { $0 }, fixes)
        XCTAssertEqual(chunks.chunks.flatMap { $0 }.map(Float.init), try expected.floats("long.ids"))
        assertWithin(pipeline.models.textEncoder(chunks, embeddings: byName), try expected.tensor("long.hidden"), absolute: 1e-4, "long")
    }

    func testImageToImageMatchesDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let i2i = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(expected.metadata["i2i"]).utf8)) as? [String: Any])
        var settings = GenerationSettings()
        settings.prompt = try XCTUnwrap(i2i["prompt"] as? String)
        settings.negativePrompt = try XCTUnwrap(i2i["negative_prompt"] as? String)
        settings.steps = try XCTUnwrap(i2i["steps"] as? Int)
        settings.strength = try XCTUnwrap(i2i["strength"] as? Double)
        settings.guidance = Float(try XCTUnwrap(i2i["guidance"] as? Double))
        settings.seed = UInt64(try XCTUnwrap(i2i["seed"] as? Int))
        settings.sampler = try XCTUnwrap(i2i["sampler"] as? String)
        settings.embeddings = try Self.embeddings()
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        let result = try pipeline.imageToImage(image, settings: settings)
        let want = try expected.tensor("i2i.image")
        assertWithin(result.image.permuted([0, 2, 3, 1]).reshaped(want.shape), want, absolute: 1e-3, "i2i with embeddings")
        // Without the embeddings the same words are plain text: a different image.
        settings.embeddings = []
        let plain = try pipeline.imageToImage(image, settings: settings)
        XCTAssertNotEqual(plain.image.scalars, result.image.scalars)
    }

    func testWrongWidthFailsNamingFileAndWidths() throws {
        var settings = GenerationSettings()
        settings.prompt = "a photo of wide"
        settings.steps = 2; settings.strength = 0.5; settings.sampler = "euler"
        settings.embeddings = [try TextualInversionEmbedding.load(Self.root.appendingPathComponent("hostile/wide.safetensors"))]
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings)) { error in
            let text = "\(error)"
            XCTAssert(text.contains("wide.safetensors") && text.contains("width 8") && text.contains("width 4"), text)
        }
    }
}
