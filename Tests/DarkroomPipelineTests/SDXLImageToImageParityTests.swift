import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// SDXL img2img against diffusers' StableDiffusionXLImg2ImgPipeline on the sdxl model fixture (cases `xl_*` in the
/// `img2img` metadata of models/sdxl/expected.safetensors, tools/reference/make_sdxl_fixtures.py): guidance with the
/// zeroed negative prompt, a negative prompt on a non-square image, no guidance, given micro-conditioning with
/// `prompt_2`, and every sampler at strength 0.6 (`xl_sampler_*`); from the diffusers folder and from the single file.
/// The decoded image within 1e-3, as the SD cases.
final class SDXLImageToImageParityTests: XCTestCase {
    struct Case: Decodable {
        let name: String, sampler: String, prompt: String, strength: Double, seed: UInt64
        let guidance_scale: Float, num_inference_steps: Int
        let negative_prompt: String?, prompt_2: String?
        let original_size: [Int]?, crops_coords_top_left: [Int]?, target_size: [Int]?
        let negative_original_size: [Int]?, negative_crops_coords_top_left: [Int]?, negative_target_size: [Int]?
        let aesthetic_score: Float?, negative_aesthetic_score: Float?
        let timestep_spacing: String?

        var settings: GenerationSettings {
            var s = GenerationSettings()
            s.prompt = prompt
            s.negativePrompt = negative_prompt ?? ""
            s.prompt2 = prompt_2
            s.strength = strength
            s.guidance = guidance_scale
            s.steps = num_inference_steps
            s.seed = seed
            s.sampler = sampler
            s.timestepSpacing = timestep_spacing
            s.microConditioning.originalSize = original_size
            s.microConditioning.targetSize = target_size
            s.microConditioning.negativeOriginalSize = negative_original_size
            s.microConditioning.negativeTargetSize = negative_target_size
            if let crop = crops_coords_top_left { s.microConditioning.cropsCoordsTopLeft = crop }
            if let crop = negative_crops_coords_top_left { s.microConditioning.negativeCropsCoordsTopLeft = crop }
            if let score = aesthetic_score { s.microConditioning.aestheticScore = score }
            if let score = negative_aesthetic_score { s.microConditioning.negativeAestheticScore = score }
            return s
        }
    }

    func testImageToImageAsDiffusersInBothLayouts() throws {
        let models = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl")
        let expected = try SafetensorsFile(url: models.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["img2img"]).utf8))
        XCTAssertEqual(cases.count, 22)
        let folder = models.appendingPathComponent("diffusers")
        for (layout, url) in [("diffusers", folder), ("single file", models.appendingPathComponent("sdxl.safetensors"))] {
            let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: folder),
                                                   tokenizer: try CLIPTokenizer.bundled())
            for c in cases {
                let result = try pipeline.imageToImage(try expected.tensor("\(c.name).input"), settings: c.settings)
                try assertImage(result.image, expected, c.name, "img2img", layout: layout)
            }
        }
        // The cases are sensitive to what they test: without its micro-conditioning, xl_micro is far from diffusers'.
        let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(folder), tokenizer: try CLIPTokenizer.bundled())
        XCTAssertEqual(pipeline.models.defaultResolution, 1024)
        let micro = try XCTUnwrap(cases.first { $0.name == "xl_micro" })
        var plain = micro.settings
        plain.microConditioning = MicroConditioning()
        let got = try pipeline.imageToImage(try expected.tensor("xl_micro.input"), settings: plain).image.scalars
        let want = try expected.tensor("xl_micro.image")
        let difference = zip(got, want.permuted([2, 0, 1]).scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
        XCTAssertGreaterThan(difference, 1e-2, "micro-conditioning barely changes the image")
    }

    /// The refiner (sdxl_refiner: bigG alone as text_encoder_2, requires_aesthetics_score, no forced zeros): its
    /// defaults (scores 6 and 2.5, no negative prompt encoded as "") and given scores, sizes and negative crop.
    func testRefinerImageToImageAsDiffusers() throws {
        let models = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl_refiner")
        let expected = try SafetensorsFile(url: models.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["img2img"]).utf8))
        XCTAssertEqual(cases.count, 2)
        let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(models.appendingPathComponent("diffusers")),
                                               tokenizer: try CLIPTokenizer.bundled())
        XCTAssertEqual(pipeline.models.checkpoint.family, .sdxlRefiner)
        XCTAssertTrue(pipeline.models.requiresAestheticsScore)
        XCTAssertFalse(pipeline.models.forceZerosForEmptyPrompt)
        XCTAssertNil(pipeline.models.textEncoder2)
        XCTAssertEqual(pipeline.models.unet.config.addedConditioning?.timeEmbedDim, 8)
        for c in cases {
            let result = try pipeline.imageToImage(try expected.tensor("\(c.name).input"), settings: c.settings)
            try assertImage(result.image, expected, c.name, "img2img", layout: "refiner")
        }
    }

    /// Inpainting with the 4-channel base UNet (the latent blend) against StableDiffusionXLInpaintPipeline (cases in
    /// the `inpaint` metadata): strength 0.75, and 1.0 (from noise) on a non-square image with a negative prompt;
    /// both layouts, the image within 1e-3 (no paste-back, as diffusers).
    func testInpaintAsDiffusers() throws {
        let models = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl")
        let expected = try SafetensorsFile(url: models.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["inpaint"]).utf8))
        XCTAssertEqual(cases.count, 2)
        let folder = models.appendingPathComponent("diffusers")
        for (layout, url) in [("diffusers", folder), ("single file", models.appendingPathComponent("sdxl.safetensors"))] {
            let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: folder),
                                                   tokenizer: try CLIPTokenizer.bundled())
            for c in cases {
                let result = try pipeline.inpaint(try expected.tensor("\(c.name).input"), mask: try expected.tensor("\(c.name).mask"),
                                                  settings: c.settings, pasteBack: false)
                try assertImage(result.image, expected, c.name, "inpaint", layout: layout)
            }
        }
    }

    /// A 9-channel SDXL inpainting UNet (sdxl_inpaint, assembled by `SDXLInpaintFixture`) against
    /// StableDiffusionXLInpaintPipeline (cases in the `inpaint` metadata of models/sdxl_inpaint/expected.safetensors,
    /// tools/reference/make_sdxl_more_fixtures.py `INPAINT9`): the UNet sees [latents, mask, masked-image latents].
    /// Euler from noise and at diffusers' default strength 0.9999, DPM++ 2M Karras, Euler a without guidance, Heun with
    /// `prompt_2`, UniPC with micro-conditioning; non-square sizes and masks with odd edges (diffusers' nearest
    /// downsampling). Both layouts, the image within 1e-3 (no paste-back, as diffusers).
    func testNineChannelInpaintAsDiffusers() throws {
        let expected = try SafetensorsFile(url: SDXLInpaintFixture.overlay.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["inpaint"]).utf8))
        XCTAssertEqual(cases.count, 6)
        let (folder, singleFile) = try SDXLInpaintFixture.layouts()
        for (layout, url) in [("diffusers", folder), ("single file", singleFile)] {
            let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: folder),
                                                   tokenizer: try CLIPTokenizer.bundled())
            XCTAssertEqual(pipeline.models.checkpoint.family, .sdxl)
            XCTAssertEqual(pipeline.models.unet.config.inChannels, 9)
            for c in cases {
                let result = try pipeline.inpaint(try expected.tensor("\(c.name).input"), mask: try expected.tensor("\(c.name).mask"),
                                                  settings: c.settings, pasteBack: false)
                try assertImage(result.image, expected, c.name, "9-channel inpaint", layout: layout)
            }
        }
    }

    /// SDXL-Turbo's settings against StableDiffusionXLImg2ImgPipeline (models/sdxl_turbo/expected.safetensors,
    /// tools/reference/make_sdxl_more_fixtures.py `TURBO`): `euler_a` with `timestep_spacing` "trailing", guidance 0 or 1
    /// (no unconditional pass; a negative prompt unused), 2 steps at strength 0.5 (timestep 499), 4 at 0.5 (499, 249),
    /// 1 at strength 1 (999); non-square sizes. Both layouts, the image within 1e-3.
    func testTurboSettingsAsDiffusers() throws {
        let models = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl")
        let expected = try SafetensorsFile(url: PipelineFixtures.modelsRoot.appendingPathComponent("sdxl_turbo/expected.safetensors"))
        let cases = try JSONDecoder().decode([Case].self, from: Data(try XCTUnwrap(expected.metadata["img2img"]).utf8))
        XCTAssertEqual(cases.count, 3)
        let folder = models.appendingPathComponent("diffusers")
        for (layout, url) in [("diffusers", folder), ("single file", models.appendingPathComponent("sdxl.safetensors"))] {
            let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: folder),
                                                   tokenizer: try CLIPTokenizer.bundled())
            for c in cases {
                XCTAssertLessThanOrEqual(c.guidance_scale, 1)
                let result = try pipeline.imageToImage(try expected.tensor("\(c.name).input"), settings: c.settings)
                try assertImage(result.image, expected, c.name, "turbo", layout: layout)
            }
        }
    }

    /// A one-tensor (SD 1.x-style) embedding in an SDXL prompt is refused, naming the file and the widths SDXL takes.
    func testOneTensorEmbeddingIsRefusedOnSDXL() throws {
        let models = PipelineFixtures.modelsRoot.appendingPathComponent("sdxl")
        let pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(models.appendingPathComponent("diffusers")),
                                               tokenizer: try CLIPTokenizer.bundled())
        let image = Tensor(zeros: [1, 3, 32, 32])
        var settings = GenerationSettings()
        settings.prompt = "a style photo"
        settings.embeddings = [try TextualInversionEmbedding(name: "style", file: "embeddings/style.safetensors", count: 1, width: 4,
                                                             vectors: [0.1, 0.2, 0.3, 0.4])]
        XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings)) {
            guard case .embedding(let error)? = $0 as? PipelineError else { return XCTFail("\($0)") }
            XCTAssertEqual(error.file, "embeddings/style.safetensors")
            XCTAssert("\($0)".contains("width 4") && "\($0)".contains("clip_l (width 4) and clip_g (width 8)"), "\($0)")
        }
    }

    /// The decoded image [1, 3, H, W] against diffusers' `<name>.image` [H, W, 3] in `expected`, within 1e-3 (the
    /// pipeline tolerance), printing the largest difference.
    func assertImage(_ image: Tensor, _ expected: SafetensorsFile, _ name: String, _ what: String, layout: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let want = try expected.tensor("\(name).image")
        let got = image.permuted([0, 2, 3, 1]).reshaped(want.shape)
        let error = zip(got.scalars, want.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
        print("SDXL \(what) parity \(name) \(layout): max |error| = \(error)")
        assertWithin(got, want, absolute: 1e-3, "\(name) \(layout)", file: file, line: line)
    }
}
