import DarkroomImageIO
import DarkroomService
import DarkroomWeights
import Foundation
import Logging
import XCTest

/// The `precision` recipe key and the executor's default (`--precision`), on a whole job against diffusers
/// (tools/reference/make_bf16_fixtures.py → Tests/Fixtures/models/sd1/bf16_job.safetensors: sd1, Euler, 6 steps
/// at strength 0.6, guidance 7.5, seed 1234, in float32 and under `torch.autocast("cpu", dtype=torch.bfloat16)`).
final class PrecisionJobTests: XCTestCase {
    static let fixtures = LoRAJobTests.fixtures
    var root: URL!
    var models: URL { root.appendingPathComponent("Models") }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("precision-jobs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("sd1"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func recipe(_ extra: String = "") -> String {
        #"{"mode": "img2img", "model": "sd1", "prompt": "\#(LoRAJobTests.prompt)", "steps": 6, "strength": 0.6, "guidance": 7.5, "sampler": "euler", "seed": 1234\#(extra)}"#
    }

    static func relativeL2(_ png: [UInt8], _ reference: [Float]) throws -> Double {
        let got = try ImageDecoder.decode(data: png, name: "result.png").image
        XCTAssertEqual(got.samples.count, reference.count)
        var difference = 0.0, norm = 0.0
        for (g, r) in zip(got.samples, reference) {
            let d = Double(g) / 255 - Double(r)
            difference += d * d
            norm += Double(r) * Double(r)
        }
        return (difference / max(norm, .leastNormalMagnitude)).squareRoot()
    }

    /// bf16 from the recipe: recorded in the report and the PNG, and as close to diffusers' fp32 image as
    /// diffusers' own autocast is (its relative L2 error, 2.3e-2 on this tiny random model, is the bound; the
    /// PNG's 8-bit rounding adds about 2e-3 of its own). The next job, without the key, is fp32 again and
    /// matches diffusers' fp32 image within one 8-bit level.
    func testRecipePrecisionBF16ThenDefaultFP32() throws {
        let file = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("models/sd1/bf16_job.safetensors"))
        let fp32 = try file.floats("image_fp32")
        let autocastError = try Self.relativeL2FromFloats(file.floats("image_autocast"), fp32)
        let executor = JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"))

        let bf16 = try LoRAJobTests.run(executor, root: root, recipe: recipe(#", "precision": "bf16""#), name: "bf16")
        XCTAssertEqual(bf16.report["precision"] as? String, "bf16")
        let text = try XCTUnwrap(ImageDecoder.decode(data: bf16.png, name: "b").textChunks["parameters"])
        XCTAssertTrue(text.contains(", Precision: bf16, "), text)
        let error = try Self.relativeL2(bf16.png, fp32)
        print("bf16 job: Darkroom relative L2 \(error), diffusers autocast \(autocastError)")
        XCTAssertLessThanOrEqual(error, autocastError + 2e-3)
        XCTAssertGreaterThan(error, 2e-3, "the bf16 job gave the fp32 image: bf16 did not run")

        let plain = try LoRAJobTests.run(executor, root: root, recipe: recipe(), name: "fp32")
        XCTAssertEqual(plain.report["precision"] as? String, "fp32")
        try LoRAJobTests.assertWithinOneLevel(plain.png, fp32)
    }

    /// The executor's default (what `run --precision bf16` sets) applies to recipes that name none; a recipe's
    /// own "fp32" wins over it.
    func testDefaultPrecisionAndRecipeOverride() throws {
        let fp32 = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("models/sd1/bf16_job.safetensors")).floats("image_fp32")
        let executor = JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"))
        executor.defaultPrecision = .bf16
        let byDefault = try LoRAJobTests.run(executor, root: root, recipe: recipe(), name: "default")
        XCTAssertEqual(byDefault.report["precision"] as? String, "bf16")
        XCTAssertGreaterThan(try Self.relativeL2(byDefault.png, fp32), 2e-3)
        let pinned = try LoRAJobTests.run(executor, root: root, recipe: recipe(#", "precision": "fp32""#), name: "pinned")
        XCTAssertEqual(pinned.report["precision"] as? String, "fp32")
        try LoRAJobTests.assertWithinOneLevel(pinned.png, fp32)
    }

    func testUnknownPrecisionIsARecipeError() {
        XCTAssertThrowsError(try Recipe.parse(Data(recipe(#", "precision": "fp16""#).utf8), file: "r.json")) { error in
            XCTAssertTrue("\(error)".contains("precision: 'fp16' is not one of fp32, bf16"), "\(error)")
        }
    }

    static func relativeL2FromFloats(_ x: [Float], _ reference: [Float]) -> Double {
        var difference = 0.0, norm = 0.0
        for (a, r) in zip(x, reference) {
            difference += Double(a - r) * Double(a - r)
            norm += Double(r) * Double(r)
        }
        return (difference / norm).squareRoot()
    }
}
