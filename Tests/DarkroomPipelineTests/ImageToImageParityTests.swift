import DarkroomPipeline
import DarkroomTensor
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
