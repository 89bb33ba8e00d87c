import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import XCTest

/// SDXL ControlNet img2img and inpainting against diffusers' `StableDiffusionXLControlNetImg2ImgPipeline` and
/// `StableDiffusionXLControlNetInpaintPipeline` (0.42.1) on the sdxl model
/// fixture, from `Tests/Fixtures/controlnet_sdxl/` (written by `tools/reference/make_sdxl_controlnet_fixtures.py`;
/// `cases.json` holds every setting, `expected.safetensors` the input, the control images given to diffusers and its
/// `output_type="np"` images). Cases `xlcn_*`: euler, dpmpp_2m_karras on a non-square image with a negative prompt and
/// scale 0.8, no guidance with euler_a, a start/end window with ddim, guess mode with unipc, and two ControlNets (the
/// small one without mid attention) with heun; inpainting on the 4-channel UNet (centre half masked, no paste-back) with
/// a tile control, and with the inpaint condition (masked pixels −1) on a non-square image in guess mode. Images within
/// 1e-3, as the other pipeline parity tests.
final class SDXLControlNetPipelineParityTests: XCTestCase {
    static let root = PipelineFixtures.root.deletingLastPathComponent().appendingPathComponent("controlnet_sdxl")
    static let controlNets = ["sdxl_a": root.appendingPathComponent("sdxl_a/diffusers"),
                              "sdxl_b": root.appendingPathComponent("sdxl_b.safetensors")]

    struct Unit: Decodable { let model: String, scale: Float, start: Double, end: Double }
    struct Case: Decodable {
        let name: String, pipeline: String, sampler: String, prompt: String, negative_prompt: String
        let strength: Double, steps: Int, guidance: Float, guess_mode: Bool, seed: UInt64
        let units: [Unit]

        var settings: GenerationSettings {
            var s = GenerationSettings()
            s.prompt = prompt
            s.negativePrompt = negative_prompt
            s.strength = strength
            s.steps = steps
            s.guidance = guidance
            s.sampler = sampler
            s.seed = seed
            return s
        }
    }
    struct Cases: Decodable { let cases: [Case] }

    func testEveryCaseMatchesDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.root.appendingPathComponent("cases.json"))).cases
        XCTAssertEqual(cases.count, 8)
        let models = try StableDiffusionModels.load(PipelineFixtures.modelsRoot.appendingPathComponent("sdxl/diffusers"))
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
        let loaded = try Self.controlNets.mapValues { try models.loadControlNet($0) }
        for c in cases {
            let units = try c.units.enumerated().map { j, u in
                ControlNetUnit(model: try XCTUnwrap(loaded[u.model]), image: try expected.tensor("\(c.name).control.\(j)"),
                               weight: u.scale, start: u.start, end: u.end, guessMode: c.guess_mode)
            }
            let input = try expected.tensor("\(c.name).input")
            let result = c.pipeline == "inpaint"
                ? try pipeline.inpaint(input, mask: try expected.tensor("\(c.name).mask"), settings: c.settings, pasteBack: false,
                                       controlNets: units)
                : try pipeline.imageToImage(input, settings: c.settings, controlNets: units)
            let want = try expected.tensor("\(c.name).image")                       // [H, W, 3]
            let got = result.image.permuted([0, 2, 3, 1]).reshaped(want.shape)
            assertWithin(got, want, absolute: 1e-3, c.name)
            let worst = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? 0
            print("\(c.name): max |Δ| against diffusers \(worst)")
        }
    }

}
