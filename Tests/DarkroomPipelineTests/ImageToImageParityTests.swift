import DarkroomModels
import DarkroomPipeline
import DarkroomTokenizer
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// img2img against diffusers' StableDiffusionImg2ImgPipeline (cases `i2i_*` of cases.json): every
/// sampler at strengths 0.6 and 0.3 (and 1.0 for some), guidance 1 (no CFG), a negative prompt, a non-square input, seeds
/// 1234 and 1235, DDIM η = 1, and SD 2.x v-prediction. Same seed → same random draws (torch-exact
/// randn, diffusers' order). The decoded image (float, [0, 1], before quantisation) must be within
/// 1e-3 of diffusers' everywhere — a quarter of one 8-bit level.
final class ImageToImageParityTests: XCTestCase {
    /// The one exception, measured: DDIM from strength 1.0 (t = 901) with guidance 7.5 amplifies float32
    /// rounding. Darkroom against *itself*, with only the convolution tiling (summation order) changed,
    /// differs by 2.5e-3 on this case (2e-5 on `i2i_sd1_ddim`, 3e-6 on `i2i_sd1_euler_s100`); diffusers
    /// differs by 3.6e-3. That is the brief's whole-pipeline bound of one 8-bit level, 1/255.
    static let tolerance: [String: Float] = ["i2i_sd1_ddim_s100": 1.0 / 255]

    func testAllImageToImageCases() throws {
        let expected = try PipelineFixtures.expected()
        let cases = try PipelineFixtures.cases().filter { $0.pipeline == "img2img" }
        XCTAssertGreaterThanOrEqual(cases.count, 27)
        for c in cases {
            let pipeline = try PipelineFixtures.pipeline(c.model)
            let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image))
            let result = try pipeline.imageToImage(image, settings: c.settings)
            let want = try expected.tensor("\(c.name).image")                       // [1, H, W, 3] or [H, W, 3]
            let got = result.image.permuted([0, 2, 3, 1]).reshaped(want.shape)
            assertWithin(got, want, absolute: Self.tolerance[c.name] ?? 1e-3, c.name)
        }
    }

    func testBadSettingsNameTheField() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        for (mutate, field) in [({ (s: inout GenerationSettings) in s.strength = 0 }, "strength"),
                                ({ (s: inout GenerationSettings) in s.strength = 1.5 }, "strength"),
                                ({ (s: inout GenerationSettings) in s.steps = 0 }, "steps"),
                                ({ (s: inout GenerationSettings) in s.sampler = "k_euler_magic" }, "sampler")] {
            var settings = GenerationSettings()
            mutate(&settings)
            XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings)) { error in
                XCTAssert("\(error)".contains("'\(field)'"), "\(error)")
            }
        }
    }
}

/// The same diffusers cases from the single-file checkpoints (LDM keys; sd1 F16, sd2v F16 with its
/// `.yaml`, sd1_inpaint BF16), each described by its diffusers folder as diffusers' `from_single_file(config=)`
/// does: same images, same 1e-3.
final class SingleFileLayoutParityTests: XCTestCase {
    func testRepresentativeCasesFromSingleFiles() throws {
        let expected = try PipelineFixtures.expected()
        let cases = try PipelineFixtures.cases().filter {
            ["i2i_sd1_euler", "i2i_sd1_dpmpp_2m_karras", "i2i_sd2v_euler", "i2i_sd2v_ddim", "inp9_euler_s075", "inp4_euler_s100"].contains($0.name)
        }
        XCTAssertEqual(cases.count, 6)
        var loaded: [String: StableDiffusionPipeline] = [:]
        for c in cases {
            let folder = PipelineFixtures.modelsRoot.appendingPathComponent(c.model)
            let pipeline = try loaded[c.model] ?? StableDiffusionPipeline(
                models: try StableDiffusionModels.load(folder.appendingPathComponent("\(c.model).safetensors"),
                                                       config: folder.appendingPathComponent("diffusers")),
                tokenizer: try CLIPTokenizer.bundled())
            loaded[c.model] = pipeline
            XCTAssertEqual(pipeline.models.checkpoint.layout, .singleFile)
            let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image))
            let result = c.pipeline == "img2img"
                ? try pipeline.imageToImage(image, settings: c.settings)
                : try pipeline.inpaint(image, mask: ImageTensor.mask(from: try PipelineFixtures.input(try XCTUnwrap(c.mask))),
                                       settings: c.settings, pasteBack: false)
            let want = try expected.tensor("\(c.name).image")
            assertWithin(result.image.permuted([0, 2, 3, 1]).reshaped(want.shape), want, absolute: 1e-3, "\(c.name) single file")
        }
    }
}
