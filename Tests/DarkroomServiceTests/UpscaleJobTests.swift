import DarkroomImageIO
import DarkroomPipeline
import DarkroomService
import Foundation
import Logging
import XCTest

/// Upscaler models in jobs: `mode: upscale` with no checkpoint in the models folder at all, `restore` with
/// `upscale: 2` and an `upscaler`, the PNG text A1111 writes for each, and the recipe rules.
final class UpscaleJobTests: XCTestCase {
    static let fixtures = LoRAJobTests.fixtures
    var root: URL!
    var models: URL { root.appendingPathComponent("Models") }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("upscale-jobs-\(UUID().uuidString.prefix(8))")
        let esrgan = models.appendingPathComponent("ESRGAN")
        try FileManager.default.createDirectory(at: esrgan, withIntermediateDirectories: true)
        for name in ["compact_x4", "rrdb_x2_old"] {
            try FileManager.default.createSymbolicLink(at: esrgan.appendingPathComponent("\(name).safetensors"),
                                                       withDestinationURL: Self.fixtures.appendingPathComponent("upscalers/\(name).safetensors"))
        }
        try Data("pickled".utf8).write(to: esrgan.appendingPathComponent("RealESRGAN_x4plus.pth"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// No checkpoint in Models/: a pipeline load would fail the test.
    func executor() -> JobExecutor {
        JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"), loadPipeline: { url in
            XCTFail("mode upscale loaded a checkpoint: \(url.path)")
            throw JobFailure(code: "model", message: "no checkpoint", file: nil, field: "model")
        })
    }

    func decoded(_ png: [UInt8]) throws -> DecodedImage { try ImageDecoder.decode(data: png, name: "result.png") }

    func testUpscaleModeNeedsNoCheckpoint() throws {
        let input = try ImageDecoder.decode(fileAt: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image
        let job = try LoRAJobTests.run(executor(), root: root, recipe: #"{"mode": "upscale", "upscaler": "compact_x4"}"#, name: "own")
        let result = try decoded(job.png)
        XCTAssertEqual([result.image.width, result.image.height], [input.width * 4, input.height * 4])
        XCTAssertEqual(result.textChunks["postprocessing"], "Postprocess upscale by: 4, Postprocess upscaler: compact_x4")
        XCTAssertEqual(result.textChunks["extras"], result.textChunks["postprocessing"])
        XCTAssertNil(result.textChunks["parameters"])
        XCTAssertEqual(job.report["mode"] as? String, "upscale")
        XCTAssertEqual(job.report["upscale"] as? Int, 4)
        XCTAssertEqual(job.report["upscaler"] as? String, "compact_x4")
        XCTAssert((job.report["upscaler_network"] as? String ?? "").hasPrefix("SRVGGNetCompact 4×"))

        // Another factor than the model's: the network, then Lanczos (A1111).
        let half = try decoded(try LoRAJobTests.run(executor(), root: root, recipe: #"{"mode": "upscale", "upscaler": "compact_x4.safetensors", "upscale": 2}"#, name: "two").png)
        XCTAssertEqual([half.image.width, half.image.height], [input.width * 2, input.height * 2])
        XCTAssertEqual(half.textChunks["postprocessing"], "Postprocess upscale by: 2, Postprocess upscaler: compact_x4")
        // Lanczos alone, A1111's default factor 4.
        let lanczos = try decoded(try LoRAJobTests.run(executor(), root: root, recipe: #"{"mode": "upscale"}"#, name: "lanczos").png)
        XCTAssertEqual([lanczos.image.width, lanczos.image.height], [input.width * 4, input.height * 4])
        XCTAssertEqual(lanczos.textChunks["postprocessing"], "Postprocess upscale by: 4, Postprocess upscaler: Lanczos")
    }

    func testUpscalerErrorsNameTheFileAndField() throws {
        func failure(_ recipe: String, _ name: String) -> JobFailure? {
            do { _ = try LoRAJobTests.run(executor(), root: root, recipe: recipe, name: name); return nil } catch { return error as? JobFailure }
        }
        let pickle = failure(#"{"mode": "upscale", "upscaler": "RealESRGAN_x4plus"}"#, "pickle")
        XCTAssertEqual(pickle?.code, "model")
        XCTAssertEqual(pickle?.field, "upscaler")
        XCTAssert(pickle?.message.contains("params_ema") == true, pickle?.message ?? "")
        let missing = failure(#"{"mode": "upscale", "upscaler": "4x-UltraSharp"}"#, "missing")
        XCTAssertEqual(missing?.field, "upscaler")
        XCTAssert(missing?.message.contains("compact_x4") == true, missing?.message ?? "")
        let huge = failure(#"{"mode": "upscale", "upscaler": "compact_x4", "upscale": 8}"#, "huge")
        XCTAssertNil(huge, "64 px × 8 fits")
    }

    func testRecipeRules() throws {
        func parse(_ json: String) throws -> Recipe { try Recipe.parse(Data(json.utf8), file: "r.json") }
        func fields(_ json: String) -> [String] {
            do { _ = try parse(json); return [] } catch let error as RecipeError { return error.problems.map(\.field) } catch { return ["?"] }
        }
        XCTAssertEqual(try parse(#"{"mode": "upscale"}"#).configuration.upscale, 0, "the model's own scale")
        XCTAssertNil(try parse(#"{"mode": "upscale", "upscaler": "Lanczos"}"#).configuration.upscaler)
        XCTAssertEqual(try parse(#"{"mode": "restore", "upscale": 2, "upscaler": "4x-UltraSharp"}"#).configuration.upscaler, "4x-UltraSharp")
        XCTAssertEqual(fields(#"{"mode": "upscale", "prompt": "a cat", "steps": 20}"#), ["prompt", "steps"])
        XCTAssertEqual(fields(#"{"mode": "restore", "upscaler": "4x-UltraSharp"}"#), ["upscaler"])
        XCTAssertEqual(fields(#"{"mode": "img2img", "upscaler": "lanczos"}"#), ["upscaler"])
        XCTAssertEqual(fields(#"{"mode": "restore", "upscale": 4}"#), ["upscale"])
        XCTAssertEqual(fields(#"{"mode": "upscale", "upscaler": "../x"}"#), ["upscaler"])
    }

    /// restore + upscale 2 with an upscaler model on the tiny SD fixture: the model enlarges, SD upscale runs over
    /// it, and the PNG records A1111's "SD upscale overlap" and "SD upscale upscaler".
    func testRestoreWithUpscalerRecordsSDUpscale() throws {
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("sd1"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        let executor = JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"))
        let job = try LoRAJobTests.run(executor, root: root, recipe: #"{"mode": "restore", "model": "sd1", "steps": 2, "strength": 0.5, "upscale": 2, "upscaler": "compact_x4", "tile_size": 64, "tile_overlap": 16}"#, name: "restore")
        let result = try decoded(job.png)
        let input = try ImageDecoder.decode(fileAt: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image
        XCTAssertEqual([result.image.width, result.image.height], [input.width * 2, input.height * 2])
        let text = try XCTUnwrap(result.textChunks["parameters"])
        XCTAssert(text.contains("SD upscale overlap: 16, SD upscale upscaler: compact_x4"), text)
        XCTAssertEqual(job.report["upscaler"] as? String, "compact_x4")
    }
}
