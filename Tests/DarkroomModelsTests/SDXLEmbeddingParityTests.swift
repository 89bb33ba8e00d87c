import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// SDXL textual-inversion embeddings (`clip_l` + `clip_g`) on the sdxl fixture against diffusers: models/sdxl_embeddings/
/// (tools/reference/make_sdxl_more_fixtures.py `embeddings`, cases `te0`–`te2` in the `cases` metadata), where diffusers
/// loads each file's `clip_l` into `text_encoder` and `clip_g` into `text_encoder_2` and runs `encode_prompt` with
/// guidance. Both layouts; 1e-4 of the largest magnitude, as `SDXLParityTests`.
final class SDXLEmbeddingParityTests: XCTestCase {
    static let root = ModelFixtures.folder("sdxl_embeddings")

    struct Case: Decodable { let name: String, prompt: String, negative_prompt: String? }

    static func embeddings() throws -> [TextualInversionEmbedding] {
        try ["xlemb.safetensors", "xltrio.safetensors", "xlpt.pt"].map { try TextualInversionEmbedding.load(root.appendingPathComponent($0)) }
    }

    func testFilesReadAsTwoParts() throws {
        let embeddings = try Self.embeddings()
        XCTAssertEqual(embeddings.map(\.count), [1, 3, 2])
        for embedding in embeddings {
            XCTAssertEqual(embedding.parts.map(\.key), ["clip_g", "clip_l"], embedding.file)
            XCTAssertEqual(embedding.parts.map(\.width), [8, 4], embedding.file)
            XCTAssertEqual(embedding.width, 12)
        }
        // Vector counts that differ between the parts are refused, naming the file and both counts.
        XCTAssertThrowsError(try TextualInversionEmbedding.load(Self.root.appendingPathComponent("hostile/uneven.safetensors"))) {
            XCTAssert("\($0)".contains("uneven.safetensors") && "\($0)".contains("has 2 vectors") && "\($0)".contains("has 1"), "\($0)")
        }
    }

    /// Prompt and negative prompt embeddings and both pooled outputs. The pooled references are diffusers' bigG tower on
    /// diffusers' ids, pooled at the end token (`<case>.pooled`): diffusers' own `pooled_prompt_embeds` is taken at the
    /// added token (argmax of the ids under the legacy `eos_token_id` 2; the script prints how far apart: 1.2–1.7), A1111's
    /// and Darkroom's at the end token. Without a negative prompt (te0) the negatives are diffusers' zeros.
    func testPromptEmbeddingsAsDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["cases"]).utf8))
        XCTAssertEqual(cases.count, 3)
        let tokenizer = try CLIPTokenizer.bundled()
        let embeddings = try Self.embeddings()
        for layout in ModelFixtures.Layout.allCases {
            let sdxl = try XCTUnwrap(try ModelFixtures.load("sdxl", layout).sdxlPromptEncoder)
            let tables = try sdxl.embeddingTables(embeddings, family: "SDXL")
            for c in cases {
                let (positive, negative) = sdxl.encodePrompt(c.prompt, negativePrompt: c.negative_prompt, tokenizer: tokenizer, embeddings: tables)
                for (got, name) in [(positive.promptEmbeds, "prompt_embeds"), (negative.promptEmbeds, "negative_prompt_embeds"),
                                    (positive.pooled, "pooled"), (negative.pooled, "negative_pooled")] {
                    let want = try expected.tensor("\(c.name).\(name)")
                    assertClose(got, want, relative: SDXLParityTests.tolerance, "\(c.name).\(name) \(layout)")
                    let scale = want.scalars.reduce(0) { max($0, abs($1)) }
                    let error = zip(got.scalars, want.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
                    print("SDXL embedding parity \(c.name).\(name) \(layout): max |error| / max |expected| = \(scale > 0 ? error / scale : error)")
                }
            }
        }
    }

    /// An SD 1.x-style embedding (one tensor) on SDXL, even of clip_l's width, and an SDXL embedding on SD 1.x (whose
    /// text encoder is as wide as clip_l here) are refused, naming the file and the widths.
    func testOtherFamiliesEmbeddingsAreRefused() throws {
        let sdxl = try XCTUnwrap(try ModelFixtures.load("sdxl", .diffusers).sdxlPromptEncoder)
        let sd1Style = try TextualInversionEmbedding.load(Self.root.appendingPathComponent("hostile/xlsd1.safetensors"))
        XCTAssertThrowsError(try sdxl.embeddingTables([sd1Style], family: "SDXL")) {
            XCTAssert("\($0)".contains("xlsd1.safetensors") && "\($0)".contains("width 4") && "\($0)".contains("clip_l (width 4) and clip_g (width 8)"), "\($0)")
        }
        let sd1 = try ModelFixtures.load("sd1", .diffusers)
        let xl = try TextualInversionEmbedding.load(Self.root.appendingPathComponent("xlemb.safetensors"))
        XCTAssertThrowsError(try xl.perTextEncoder(sd1.textEncoders, family: sd1.checkpoint.family.name)) {
            XCTAssert("\($0)".contains("xlemb.safetensors") && "\($0)".contains("SDXL embedding (clip_g width 8 + clip_l width 4)")
                      && "\($0)".contains("SD 1.x") && "\($0)".contains("width 4"), "\($0)")
        }
        // The refiner (bigG alone) takes the clip_g part, as A1111 does.
        let refiner = try StableDiffusionModels.load(ModelFixtures.diffusers("sdxl_refiner"))
        XCTAssertEqual(try xl.perTextEncoder(refiner.textEncoders, family: "SDXL refiner").map(\.width), [8])
    }
}
