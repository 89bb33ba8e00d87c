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

    /// The UNet with added conditioning (text_embeds, time_ids), a first level without attention and per-level
    /// transformer depth, against diffusers' UNet2DConditionModel: one timestep for the batch, one per sample, H ≠ W.
    func testUNetWithAddedConditioning() throws {
        let e = try ModelFixtures.expected("sdxl")
        let added = UNetAddedConditioning(textEmbeds: try e.tensor("unet.text_embeds"), timeIDs: try e.tensor("unet.time_ids"))
        let context = try e.tensor("unet.context")
        for layout in ModelFixtures.Layout.allCases {
            let models = try ModelFixtures.load("sdxl", layout)
            XCTAssertEqual(models.checkpoint.family, .sdxl)
            let config = models.unet.config
            XCTAssertEqual(config.levels.map(\.channels), [32, 64])
            XCTAssertEqual(config.levels.map(\.hasAttention), [false, true])
            XCTAssertEqual(config.levels.map(\.transformerDepth), [0, 2])
            XCTAssertEqual(config.levels.map(\.heads)[1], 4)
            XCTAssertEqual(config.middleTransformerDepth, 2)
            XCTAssertTrue(config.linearProjection)
            XCTAssertEqual(config.contextDim, 12)
            XCTAssertEqual(config.addedConditioning, UNetConfig.AddedConditioning(inputWidth: 54, timeEmbedDim: 8))
            XCTAssertEqual(models.vae.config.scalingFactor, 0.13025)
            XCTAssertEqual(models.textEncoder2?.projectionWidth, 6)
            XCTAssertTrue(models.forceZerosForEmptyPrompt)
            for (sample, t, out) in [("unet.sample", "unet.t0", "unet.out0"), ("unet.sample", "unet.t1", "unet.out1"),
                                     ("unet.sample_ns", "unet.t1", "unet.out_ns")] {
                let result = models.unet(try e.tensor(sample), timesteps: try e.tensor(t).scalars, context: context, added: added)
                check(result, try e.tensor(out), "\(layout) \(out)")
            }
        }
    }

    /// A single file alone takes what shapes cannot show from the SDXL family: 64-channel heads (here 1 per
    /// 64-channel level, 1 per text tower), the VAE scaling factor 0.13025, force_zeros_for_empty_prompt, and
    /// `addition_time_embed_dim` = (add_embedding inputs 54 − pooled 6) / 6 time ids = 8.
    func testSingleFileAloneTakesTheFamilysValues() throws {
        let models = try StableDiffusionModels.load(ModelFixtures.singleFile("sdxl"))
        XCTAssertEqual(models.unet.config.addedConditioning?.timeEmbedDim, 8)
        XCTAssertEqual(models.unet.config.levels.map(\.heads)[1], 1)
        XCTAssertEqual(models.unet.config.middleHeads, 1)
        XCTAssertEqual(models.textEncoder.config.heads, 1)
        XCTAssertEqual(models.textEncoder2?.config.heads, 1)
        XCTAssertEqual(models.textEncoder.config.activation, .quickGELU)
        XCTAssertEqual(models.textEncoder2?.config.activation, .gelu)
        XCTAssertEqual(models.textEncoder2?.config.padToken, 0)
        XCTAssertEqual(models.vae.config.scalingFactor, 0.13025)
        XCTAssertTrue(models.forceZerosForEmptyPrompt)
        XCTAssertEqual(models.sdxlPromptEncoder?.contextWidth, 12)
    }

    /// A kohya SDXL LoRA (`lora_te1_`, `lora_te2_`, `lora_unet_` with LDM module names; sdxl/lora_kohya.safetensors)
    /// patches both text encoders and the UNet: encode_prompt and the UNet against the reference's merged models.
    func testKohyaSDXLLoRAPatchesBothTextEncodersAndTheUNet() throws {
        let e = try ModelFixtures.expected("sdxl")
        let tokenizer = try CLIPTokenizer.bundled()
        let prompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(e.metadata["prompts"]).utf8)) as? [String])
        let negative = try XCTUnwrap(e.metadata["negative_prompt"])
        let added = UNetAddedConditioning(textEmbeds: try e.tensor("unet.text_embeds"), timeIDs: try e.tensor("unet.time_ids"))
        for layout in ModelFixtures.Layout.allCases {
            let base = try ModelFixtures.load("sdxl", layout)
            let lora = try LoRA.open(ModelFixtures.folder("sdxl").appendingPathComponent("lora_kohya.safetensors"), model: base.checkpoint)
            let patched = try base.applying([(lora, 1)])
            let (positive, negativeEmbeddings) = try XCTUnwrap(patched.sdxlPromptEncoder)
                .encodePrompt(prompts[0], negativePrompt: negative, tokenizer: tokenizer)
            check(positive.promptEmbeds, try e.tensor("lora.prompt_embeds"), "\(layout) lora.prompt_embeds")
            check(negativeEmbeddings.promptEmbeds, try e.tensor("lora.negative_prompt_embeds"), "\(layout) lora.negative_prompt_embeds")
            check(positive.pooled, try e.tensor("lora.pooled_prompt_embeds"), "\(layout) lora.pooled_prompt_embeds")
            let out = patched.unet(try e.tensor("unet.sample"), timesteps: try e.tensor("unet.t0").scalars,
                                   context: try e.tensor("unet.context"), added: added)
            check(out, try e.tensor("lora.unet.out0"), "\(layout) lora.unet.out0")
            // The receiver keeps its weights.
            check(base.unet(try e.tensor("unet.sample"), timesteps: try e.tensor("unet.t0").scalars,
                            context: try e.tensor("unet.context"), added: added), try e.tensor("unet.out0"), "\(layout) base after LoRA")
        }
    }

    /// An SD 1.x LoRA (the LoRA fixtures' kohya_a) on SDXL: its UNet modules match nothing (SDXL's first level has
    /// no attention), so it is refused listing them, before any weight is patched.
    func testSD1LoRAOnSDXLIsRefused() throws {
        let base = try ModelFixtures.load("sdxl", .diffusers)
        XCTAssertThrowsError(try LoRA.open(LoRATests.url("kohya_a"), model: base.checkpoint)) { error in
            guard case WeightsError.loraUnmatchedKeys(_, let modules, _)? = error as? WeightsError else { return XCTFail("\(error)") }
            XCTAssertTrue(modules.contains { $0.hasPrefix("lora_unet_down_blocks_0_attentions_") }, "\(modules)")
            XCTAssertTrue("\(error)".contains("another model family"), "\(error)")
        }
    }

    /// A1111's prompt syntax on both towers (`weighted<i>.*`: the reference's port of A1111's `tokenize_line` and
    /// `process_tokens` per SDXL embedder): a weighted prompt, and a 3-chunk one with `BREAK`.
    func testA1111WeightedPromptsOnBothTowers() throws {
        let e = try ModelFixtures.expected("sdxl")
        let tokenizer = try CLIPTokenizer.bundled()
        let prompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(e.metadata["weighted_prompts"]).utf8)) as? [String])
        XCTAssertEqual(prompts.count, 2)
        for layout in ModelFixtures.Layout.allCases {
            let (checkpoint, config) = try checkpoint(layout)
            let encoder = try SDXLPromptEncoder.load(checkpoint, configFolder: config)
            for (index, prompt) in prompts.enumerated() {
                let embeddings = encoder.encode(prompt, tokenizer: tokenizer)
                check(embeddings.promptEmbeds, try e.tensor("weighted\(index).prompt_embeds"), "\(layout) weighted\(index).prompt_embeds")
                check(embeddings.pooled, try e.tensor("weighted\(index).pooled"), "\(layout) weighted\(index).pooled")
            }
        }
    }
}
