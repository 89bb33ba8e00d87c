import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// ControlNet img2img and inpainting against diffusers' `StableDiffusionControlNetImg2ImgPipeline` and
/// `StableDiffusionControlNetInpaintPipeline` (0.42.1), from `Tests/Fixtures/controlnet/` (written by
/// `tools/reference/make_controlnet_fixtures.py`; `cases.json` holds every setting, `expected.safetensors` the control
/// images given to diffusers and its `output_type="np"` images). Cases: tile-like (the image itself), inpaint on a
/// 4-channel model and on a 9-channel one (masked pixels −1), a binary edge image, two units at once, a start/end
/// window, guess mode, no CFG. Images within 1e-3, as the other pipeline parity tests.
final class ControlNetPipelineParityTests: XCTestCase {
    static let root = PipelineFixtures.root.deletingLastPathComponent().appendingPathComponent("controlnet")

    struct Unit { let model: String, scale: Float, start: Double, end: Double }
    struct Case {
        let name: String, pipeline: String, model: String, settings: GenerationSettings
        let guessMode: Bool, image: String, mask: String?, units: [Unit]
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: root.appendingPathComponent("cases.json"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(json["cases"] as? [[String: Any]]).map { c in
            var s = GenerationSettings()
            s.prompt = try XCTUnwrap(c["prompt"] as? String)
            s.negativePrompt = (c["negative_prompt"] as? String) ?? ""
            s.steps = try XCTUnwrap(c["steps"] as? Int)
            s.strength = try XCTUnwrap(c["strength"] as? Double)
            s.guidance = Float(try XCTUnwrap(c["guidance"] as? Double))
            s.sampler = try XCTUnwrap(c["sampler"] as? String)
            s.seed = UInt64(try XCTUnwrap(c["seed"] as? Int))
            let units = try XCTUnwrap(c["units"] as? [[String: Any]]).map { u in
                Unit(model: try XCTUnwrap(u["model"] as? String), scale: Float(try XCTUnwrap(u["scale"] as? Double)),
                     start: try XCTUnwrap(u["start"] as? Double), end: try XCTUnwrap(u["end"] as? Double))
            }
            return Case(name: try XCTUnwrap(c["name"] as? String), pipeline: try XCTUnwrap(c["pipeline"] as? String),
                        model: try XCTUnwrap(c["model"] as? String), settings: s, guessMode: try XCTUnwrap(c["guess_mode"] as? Bool),
                        image: try XCTUnwrap(c["image"] as? String), mask: c["mask"] as? String, units: units)
        }
    }

    /// sd1_a from its diffusers folder (or, with `singleFile`, its LDM file); sd1_b from its fp32 LDM file.
    static func controlNetURL(_ name: String, singleFile: Bool = false) -> URL {
        name == "sd1_a" && !singleFile ? root.appendingPathComponent("sd1_a/diffusers") : root.appendingPathComponent("\(name).safetensors")
    }

    func run(_ c: Case, singleFile: Bool = false) throws -> GenerationResult {
        let pipeline = try PipelineFixtures.pipeline(c.model)
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let units = try c.units.enumerated().map { j, u in
            ControlNetUnit(model: try pipeline.models.loadControlNet(Self.controlNetURL(u.model, singleFile: singleFile)),
                           image: try expected.tensor("\(c.name).control.\(j)"), weight: u.scale, start: u.start, end: u.end,
                           guessMode: c.guessMode)
        }
        let image = ImageTensor.tensor(from: try PipelineFixtures.input(c.image))
        if c.pipeline == "inpaint" {
            let mask = ImageTensor.mask(from: try PipelineFixtures.input(try XCTUnwrap(c.mask)))
            return try pipeline.inpaint(image, mask: mask, settings: c.settings, pasteBack: false, controlNets: units)
        }
        return try pipeline.imageToImage(image, settings: c.settings, controlNets: units)
    }

    func testEveryCaseMatchesDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let cases = try Self.cases()
        XCTAssertEqual(cases.count, 8)
        for c in cases {
            let result = try run(c)
            let want = try expected.tensor("\(c.name).image")
            let got = result.image.permuted([0, 2, 3, 1]).reshaped(want.shape)
            assertWithin(got, want, absolute: 1e-3, c.name)
            let worst = zip(got.scalars, want.scalars).map { abs($0 - $1) }.max() ?? 0
            print("\(c.name): max |Δ| against diffusers \(worst)")
        }
    }

    /// The tile case with the ControlNet read from its LDM single file gives the same image.
    func testSingleFileControlNetGivesTheSameImage() throws {
        let expected = try SafetensorsFile(url: Self.root.appendingPathComponent("expected.safetensors"))
        let c = try XCTUnwrap(try Self.cases().first { $0.name == "cn_i2i_tile" })
        let want = try expected.tensor("\(c.name).image")
        let result = try run(c, singleFile: true)
        assertWithin(result.image.permuted([0, 2, 3, 1]).reshaped(want.shape), want, absolute: 1e-3, c.name)
    }

    /// A control image of another size, a window with start ≥ end and a ControlNet loaded for another model are
    /// refused before anything runs, naming the unit's field.
    func testBadUnitsAreRefused() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let controlNet = try pipeline.models.loadControlNet(Self.controlNetURL("sd1_a"))
        let image = ImageTensor.tensor(from: try PipelineFixtures.input("photo.png"))
        var settings = GenerationSettings()
        settings.steps = 2
        let small = ControlNetUnit(model: controlNet, image: Tensor(zeros: [1, 3, 32, 32]))
        XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings, controlNets: [small])) { error in
            guard case let PipelineError.invalidValue(field, _, expected) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "controlnet[0].image")
            XCTAssert(expected.contains("[1, 3, 64, 64]"), expected)
        }
        let window = ControlNetUnit(model: controlNet, image: Tensor(zeros: [1, 3, 64, 64]), start: 0.5, end: 0.5)
        XCTAssertThrowsError(try pipeline.imageToImage(image, settings: settings, controlNets: [window])) { error in
            guard case let PipelineError.invalidValue(field, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "controlnet[0].start/end")
        }
        let inpaintPipeline = try PipelineFixtures.pipeline("sd1_inpaint")
        XCTAssertThrowsError(try inpaintPipeline.imageToImage(image, settings: settings,
                                                              controlNets: [ControlNetUnit(model: controlNet, image: Tensor(zeros: [1, 3, 64, 64]))])) { error in
            guard case let PipelineError.invalidValue(field, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "controlnet[0].model")
        }
    }
}
