import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// The SDXL pieces against diffusers on the sdxl fixture (tools/reference/make_sdxl_fixtures.py, tensors named
/// below), in both layouts. Tolerance 1e-4 of the largest magnitude, as `ModelParityTests`.
final class SDXLParityTests: XCTestCase {
    static let tolerance = ModelParityTests.tolerance

    /// `assertClose`, printing the error relative to the expected tensor's largest magnitude (the figure the
    /// tolerance bounds) so runs show the margin.
    func check(_ actual: Tensor, _ expected: Tensor, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        assertClose(actual, expected, relative: Self.tolerance, label, file: file, line: line)
        guard actual.shape == expected.shape else { return }
        let scale = expected.scalars.reduce(0) { max($0, abs($1)) }
        let error = zip(actual.scalars, expected.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
        print("SDXL parity \(label): max |error| / max |expected| = \(scale > 0 ? error / scale : error)")
    }

    /// The single file is described by the fixture's diffusers folder (its text towers use 2 heads, not the
    /// 64-channel rule of real ones), as diffusers' `from_single_file(config=)`.
    func checkpoint(_ layout: ModelFixtures.Layout) throws -> (Checkpoint, URL) {
        let folder = ModelFixtures.diffusers("sdxl")
        switch layout {
        case .diffusers: return (try Checkpoint.open(folder), folder)
        case .singleFile: return (try Checkpoint.open(ModelFixtures.singleFile("sdxl")), folder)
        }
    }

    /// Each tower on its tokenizer's ids: `hidden_states[-2]` of both, the bigG tower's pooled, projected output.
    func testTextEncodersPenultimateAndPooled() throws {
        let e = try ModelFixtures.expected("sdxl")
        for layout in ModelFixtures.Layout.allCases {
            let (checkpoint, config) = try checkpoint(layout)
            let encoder = try SDXLPromptEncoder.load(checkpoint, configFolder: config)
            XCTAssertEqual(encoder.encoders.map(\.description.component), ["text_encoder", "text_encoder_2"])
            XCTAssertEqual(encoder.encoders.map(\.model.config.padToken), [49407, 0], "each tower's tokenizer pads with its own id")
            XCTAssertEqual(encoder.contextWidth, 12)
            let (clip, bigG) = (encoder.encoders[0].model, encoder.encoders[1].model)
            XCTAssertNil(clip.projectionWidth)
            XCTAssertEqual(bigG.projectionWidth, 6)

            let one = clip.encode(try e.ids("tokens.ids"), output: .penultimateHiddenState)
            check(one.hiddenStates, try e.tensor("text.penultimate"), "\(layout) text.penultimate")
            XCTAssertNil(one.pooled)
            check(clip(try e.ids("tokens.ids")), try e.tensor("text.last"), "\(layout) text.last")
            let two = bigG.encode(try e.ids("tokens.ids_2"), output: .penultimateHiddenState)
            check(two.hiddenStates, try e.tensor("text_2.penultimate"), "\(layout) text_2.penultimate")
            check(try XCTUnwrap(two.pooled), try e.tensor("text_2.pooled"), "\(layout) text_2.pooled")
        }
    }

    /// `encode_prompt` of StableDiffusionXLImg2ImgPipeline: no negative prompt → zeros (force_zeros_for_empty_prompt),
    /// "" → encoded, a negative prompt, and `prompt_2` with an empty `negative_prompt_2` (falls back).
    func testEncodePromptAsDiffusers() throws {
        let e = try ModelFixtures.expected("sdxl")
        let tokenizer = try CLIPTokenizer.bundled()
        let prompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(e.metadata["prompts"]).utf8)) as? [String])
        let negative = try XCTUnwrap(e.metadata["negative_prompt"]), prompt2 = try XCTUnwrap(e.metadata["prompt_2"])
        XCTAssertEqual(prompts.map { tokenizer.tokenize($0, padToken: 0) }, try e.ids("tokens.ids_2"))
        let cases: [(String, String?, String?, String?)] = [("none", nil, nil, nil), ("empty", nil, "", nil),
                                                              ("negative", nil, negative, nil), ("prompt_2", prompt2, negative, "")]
        for layout in ModelFixtures.Layout.allCases {
            let (checkpoint, config) = try checkpoint(layout)
            let encoder = try SDXLPromptEncoder.load(checkpoint, configFolder: config)
            XCTAssertTrue(encoder.forceZerosForEmptyPrompt)
            for (name, p2, neg, neg2) in cases {
                let (positive, negativeEmbeddings) = encoder.encodePrompt(prompts[0], prompt2: p2, negativePrompt: neg,
                                                                          negativePrompt2: neg2, tokenizer: tokenizer)
                let label = "\(layout) encode.\(name)"
                check(positive.promptEmbeds, try e.tensor("encode.\(name).prompt_embeds"), label)
                check(positive.pooled, try e.tensor("encode.\(name).pooled_prompt_embeds"), label)
                let expectedNegative = try e.tensor("encode.\(name).negative_prompt_embeds")
                let expectedPooled = try e.tensor("encode.\(name).negative_pooled_prompt_embeds")
                if name == "none" {
                    XCTAssertTrue(expectedNegative.scalars.allSatisfy { $0 == 0 }, "diffusers zeros the absent negative prompt")
                    XCTAssertEqual(negativeEmbeddings.promptEmbeds.scalars, expectedNegative.scalars, label)
                    XCTAssertEqual(negativeEmbeddings.pooled.scalars, expectedPooled.scalars, label)
                } else {
                    check(negativeEmbeddings.promptEmbeds, expectedNegative, label)
                    check(negativeEmbeddings.pooled, expectedPooled, label)
                }
            }
        }
    }
}
