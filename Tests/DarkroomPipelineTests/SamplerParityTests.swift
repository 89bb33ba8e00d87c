import DarkroomModels
import DarkroomPipeline
import DarkroomSchedulers
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Issue 12's samplers in whole diffusers runs (`Tests/Fixtures/pipelines/samplers/`, written by
/// `tools/reference/make_pipeline_fixtures.py`, `sampler_cases()`): StableDiffusionImg2ImgPipeline on the tiny
/// sd1 model with DPM++ 2M SDE (+Karras), UniPC, Heun, DPM2 (+Karras), DPM2 a (+Karras) and LCM at strengths
/// 0.6 and 0.3 (10 steps, CFG 7.5), LCM at 4 steps with guidance 1, Euler a with trailing spacing at 1 and 4
/// steps (SD-Turbo style), and StableDiffusionInpaintPipeline with Heun (4-channel blend) and DPM2 a (9-channel).
/// Order-2 samplers start at t_start · 2; SDE / ancestral / LCM noise comes from the job's torch generator in
/// diffusers' order. The decoded image must be within 1e-3 of diffusers' everywhere, as the other pipeline tests.
final class SamplerParityTests: XCTestCase {
    func testNewSamplersMatchDiffusers() throws {
        let folder = PipelineFixtures.samplersRoot
        let expected = try PipelineFixtures.expected(in: folder)
        let cases = try PipelineFixtures.cases(in: folder)
        XCTAssertEqual(cases.count, 23)
        var worst: [String: Float] = [:]
        for c in cases {
            let pipeline = try PipelineFixtures.pipeline(c.model)
            let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image))
            let result = c.pipeline == "img2img"
                ? try pipeline.imageToImage(image, settings: c.settings)
                : try pipeline.inpaint(image, mask: ImageTensor.mask(from: try PipelineFixtures.input(try XCTUnwrap(c.mask))),
                                       settings: c.settings, pasteBack: false)
            let want = try expected.tensor("\(c.name).image")
            let got = result.image.permuted([0, 2, 3, 1]).reshaped(want.shape)
            worst[c.name] = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? 0
            assertWithin(got, want, absolute: 1e-3, c.name)
        }
        for (name, value) in worst.sorted(by: { $0.key < $1.key }) { print("  \(name): max |Δ| \(value)") }
    }

    func testTimestepSpacingIsRefusedForLCMNamingTheField() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        for (sampler, spacing, steps, field) in [("lcm", "trailing", 4, "timestep_spacing"), ("euler_a", "sideways", 4, "timestep_spacing"),
                                                 ("lcm", nil, 60, "steps")] as [(String, String?, Int, String)] {
            var settings = GenerationSettings()
            settings.sampler = sampler; settings.timestepSpacing = spacing; settings.steps = steps
            XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings)) { error in
                XCTAssert("\(error)".contains("'\(field)'"), "\(error)")
            }
        }
    }
}
