import DarkroomModels
import DarkroomTokenizer
import Foundation
import DarkroomTensor
import DarkroomWeights
import DarkroomTestSupport
import XCTest

/// Every model output against diffusers on the fixture variants (tools/reference/make_model_fixtures.py,
/// tensors named below), in both layouts. Tolerance 1e-4 of the output's largest magnitude: fp32 math
/// in another summation order than PyTorch's, on fp16-representable weights (identical in both layouts).
final class ModelParityTests: XCTestCase {
    static let tolerance: Float = 1e-4

    func checkTextEncoder(_ variant: String, _ layout: ModelFixtures.Layout) throws {
        let models = try ModelFixtures.load(variant, layout)
        let expected = try ModelFixtures.expected(variant)
        let hidden = models.textEncoder(try expected.ids("tokens.ids"))
        assertClose(hidden, try expected.tensor("text.hidden"), relative: Self.tolerance, "\(variant) \(layout) text.hidden")
    }

    func checkUNet(_ variant: String, _ unet: UNet2DConditionModel, _ label: String) throws {
        let e = try ModelFixtures.expected(variant)
        let context = try e.tensor("unet.context")
        // out0: one timestep for the batch; out1: one per sample; _ns: non-square 8×4; _odd: 6×10 (odd sizes on the way down).
        for (sample, t, out, ctx) in [("unet.sample", "unet.t0", "unet.out0", context),
                                      ("unet.sample", "unet.t1", "unet.out1", context),
                                      ("unet.sample_ns", "unet.t_ns", "unet.out_ns", context),
                                      ("unet.sample_odd", "unet.t_odd", "unet.out_odd", context.slice(0..<1, axis: 0))] {
            let result = unet(try e.tensor(sample), timesteps: try e.tensor(t).scalars, context: ctx)
            assertClose(result, try e.tensor(out), relative: Self.tolerance, "\(label) \(out)")
        }
    }

    func checkVAE(_ variant: String, _ layout: ModelFixtures.Layout) throws {
        let vae = try ModelFixtures.load(variant, layout).vae
        let e = try ModelFixtures.expected(variant)
        for suffix in ["", "_ns"] {
            let posterior = vae.encode(try e.tensor("vae.image\(suffix)"))
            assertClose(posterior.mean, try e.tensor("vae.mean\(suffix)"), relative: Self.tolerance, "\(variant) \(layout) vae.mean\(suffix)")
            assertClose(posterior.std, try e.tensor("vae.std\(suffix)"), relative: Self.tolerance, "\(variant) \(layout) vae.std\(suffix)")
            assertClose(vae.decode(try e.tensor("vae.latent\(suffix)")), try e.tensor("vae.decoded\(suffix)"),
                        relative: Self.tolerance, "\(variant) \(layout) vae.decoded\(suffix)")
        }
    }

    func checkAll(_ variant: String) throws {
        for layout in ModelFixtures.Layout.allCases {
            try checkTextEncoder(variant, layout)
            try checkUNet(variant, try ModelFixtures.load(variant, layout).unet, "\(variant) \(layout)")
            try checkVAE(variant, layout)
        }
    }

    func testSD1() throws { try checkAll("sd1") }
    func testSD2VPrediction() throws { try checkAll("sd2v") }
    /// Its single file is BF16 (weights rounded to values exact in both bf16 and fp16), its folder F16.
    func testSD1Inpainting9ChannelAndBF16() throws {
        XCTAssertEqual(try Checkpoint.open(ModelFixtures.singleFile("sd1_inpaint")).dtypes[.bf16, default: 0] > 100, true)
        try checkAll("sd1_inpaint")
    }

    /// A second SD1-family UNet of other widths, heads per level, one layer per block, two transformer
    /// layers per block and another context width: the loader reads all of it from shapes and config.
    func testDifferentlySizedSD1UNet() throws {
        let checkpoint = try Checkpoint.open(ModelFixtures.diffusers("sd1_wide"), components: ["unet"])
        let json = try Checkpoint.jsonObject(ModelFixtures.diffusers("sd1_wide").appendingPathComponent("unet/config.json"))
        let heads = try XCTUnwrap(AttentionHeads(diffusersConfig: json))
        let config = try UNetConfig.detect(from: WeightScope(checkpoint, prefix: "unet"), heads: heads)
        XCTAssertEqual(config.levels.map(\.channels), [32, 64])
        XCTAssertEqual(config.levels.map(\.transformerDepth), [2, 0])
        XCTAssertEqual(config.layersPerBlock, 1)
        XCTAssertEqual(config.contextDim, 24)
        try checkUNet("sd1_wide", try UNet2DConditionModel(WeightScope(checkpoint, prefix: "unet"), config: config), "sd1_wide")
    }

    func testDetectedConfiguration() throws {
        let sd1 = try ModelFixtures.load("sd1", .singleFile)
        XCTAssertEqual(sd1.checkpoint.family, .sd1)
        XCTAssertEqual(sd1.unet.config.levels.map(\.channels), [32, 32, 64])
        XCTAssertEqual(sd1.unet.config.levels.map(\.hasAttention), [true, true, false])
        XCTAssertFalse(sd1.unet.config.linearProjection)
        XCTAssertEqual(sd1.textEncoder.config.padToken, 49407)
        XCTAssertEqual(sd1.predictionType, "epsilon")

        // sd2v's single file, alone: the A1111 yaml beside it gives v-prediction and the head size
        // (num_head_channels 32 for this fixture; 64 in real SD 2.x files).
        let sd2 = try StableDiffusionModels.load(ModelFixtures.singleFile("sd2v"))
        XCTAssertEqual(sd2.checkpoint.family, .sd2)
        XCTAssertEqual(sd2.predictionType, "v_prediction")
        XCTAssertTrue(sd2.unet.config.linearProjection)
        XCTAssertEqual(sd2.unet.config.levels.map(\.heads), [1, 2])
        XCTAssertEqual(sd2.textEncoder.config.padToken, 0)
        XCTAssertEqual(sd2.textEncoder.config.activation, .gelu)
        // The OpenCLIP tower's last block is not used (SD 2 conditions on the penultimate layer).
        XCTAssertEqual(sd2.textEncoder.config.layers, 2)

        let inpaint = try ModelFixtures.load("sd1_inpaint", .diffusers)
        XCTAssertEqual(inpaint.unet.config.inChannels, 9)
    }
}

/// Prompt → token ids → hidden states, the way the pipelines will call them: the bundled tokenizer
/// must give diffusers' ids (`tokens.ids`, `tokens.extra_ids`: transformers' CLIPTokenizer of each
/// family, SD 1.x padding with 49407 and SD 2.x with 0).
final class PromptEncodingTests: XCTestCase {
    func testTokenizerMatchesEachFamilysIds() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        for variant in ["sd1", "sd2v", "sd1_inpaint"] {
            let models = try ModelFixtures.load(variant, .diffusers)
            let expected = try ModelFixtures.expected(variant)
            let metadata = try XCTUnwrap(expected.metadata["prompts"]), extra = try XCTUnwrap(expected.metadata["extra_prompts"])
            let prompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(metadata.utf8)) as? [String])
            let extraPrompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(extra.utf8)) as? [String])
            let pad = models.textEncoder.config.padToken
            XCTAssertEqual(prompts.map { tokenizer.tokenize($0, padToken: pad) }, try expected.ids("tokens.ids"), variant)
            XCTAssertEqual(extraPrompts.map { tokenizer.tokenize($0, padToken: pad) }, try expected.ids("tokens.extra_ids"), variant)
            let hidden = models.textEncoder(prompts.map { tokenizer.tokenize($0, padToken: pad) })
            assertClose(hidden, try expected.tensor("text.hidden"), relative: ModelParityTests.tolerance, variant)
        }
    }
}

extension PromptEncodingTests {
    /// A1111 weighting and 75-token chunks end to end: `weighted_prompt.safetensors` from
    /// tools/reference/make_prompt_weighting_fixtures.py (A1111's tokenize_line/process_tokens ported to
    /// Python, transformers' CLIPTextModel on the sd1 fixture). Ids and weights exactly; hidden states 1e-4.
    func testWeightedChunkedPromptEncoding() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let models = try ModelFixtures.load("sd1", .diffusers)
        let expected = try SafetensorsFile(url: ModelFixtures.folder("sd1").appendingPathComponent("weighted_prompt.safetensors"))
        let prompts = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(expected.metadata["prompts"]).utf8)) as? [String])
        for (index, prompt) in prompts.enumerated() {
            let weighted = tokenizer.weightedChunks(prompt, padToken: models.textEncoder.config.padToken)
            XCTAssertEqual(weighted.chunks, try expected.ids("prompt\(index).ids"), "prompt \(index) ids")
            XCTAssertEqual(weighted.weights.flatMap { $0 }, try expected.tensor("prompt\(index).weights").scalars, "prompt \(index) weights")
            assertClose(models.textEncoder(weighted), try expected.tensor("prompt\(index).hidden"),
                        relative: ModelParityTests.tolerance, "prompt \(index)")
        }
    }
}
