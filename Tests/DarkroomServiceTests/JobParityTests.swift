import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomService
import DarkroomTokenizer
import DarkroomWeights
import XCTest

/// A recipe through `StableDiffusionPipeline.run` — the path the CLI and the daemon share — against
/// diffusers' StableDiffusionInpaintPipeline (case `inp4_euler_s075` of Tests/Fixtures/pipelines, made by
/// tools/reference/make_pipeline_fixtures.py): with `mask_blur: 0, paste_back: false, inpaint_area:
/// whole` the 8-bit output equals diffusers' image quantised as `numpy_to_pil` does, within one level.
final class JobParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    func testRecipeInpaintEqualsDiffusers() throws {
        let recipe = try Recipe.parse(Data("""
            {"mode": "inpaint", "prompt": "a photograph of an astronaut riding a horse", "steps": 10, "strength": 0.75,
             "guidance": 7.5, "sampler": "euler", "seed": 1234, "count": 2, "mask_blur": 0, "paste_back": false}
            """.utf8), file: "recipe.json")
        var configuration = recipe.configuration
        configuration.generation.seed = try XCTUnwrap(recipe.seed)
        let models = try StableDiffusionModels.load(Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
        let inputs = Self.fixtures.appendingPathComponent("pipelines/inputs")
        let image = try ImageDecoder.decode(fileAt: inputs.appendingPathComponent("photo.png")).image
        let mask = try ImageDecoder.decode(fileAt: inputs.appendingPathComponent("mask.png")).image
        let results = try pipeline.run(configuration, image: image, mask: mask)
        XCTAssertEqual(results.map(\.seed), [1234, 1235])

        let expected = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("pipelines/expected.safetensors"))
        let want = try expected.floats("inp4_euler_s075.image")                  // [64, 64, 3] in [0, 1]
        let got = try ImageTensor.image(fromUnitRange: results[0].image)
        var worst = 0
        for (i, value) in want.enumerated() { worst = max(worst, abs(Int(got.samples[i]) - Int((value * 255).rounded()))) }
        XCTAssertLessThanOrEqual(worst, 1)
        XCTAssertNotEqual(results[0].image.scalars, results[1].image.scalars, "seed + 1 gives another image")
    }
}

extension JobParityTests {
    /// Restoration of a grayscale photo stays grayscale (every output pixel has R = G = B).
    func testRestoreKeepsGrayscale() throws {
        let models = try StableDiffusionModels.load(Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
        let color = try ImageDecoder.decode(fileAt: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image
        var gray = [UInt16]()
        for i in 0..<(color.width * color.height) {
            let (r, g, b) = (Int(color.samples[i * 3]), Int(color.samples[i * 3 + 1]), Int(color.samples[i * 3 + 2]))
            gray.append(UInt16((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16))
        }
        let input = try Image(width: color.width, height: color.height, layout: .gray, bitDepth: 8, samples: gray)
        var configuration = try Recipe.parse(Data(#"{"mode": "restore", "steps": 4, "seed": 3}"#.utf8), file: "r.json").configuration
        configuration.generation.seed = 3
        let out = try ImageTensor.image(fromUnitRange: try pipeline.run(configuration, image: input)[0].image)
        XCTAssertTrue(out.isGrayscale)
        configuration.colorize = true
        let colored = try ImageTensor.image(fromUnitRange: try pipeline.run(configuration, image: input)[0].image)
        XCTAssertFalse(colored.isGrayscale, "with color: true the model's colours are kept")
    }
}
