import DarkroomImageIO
import DarkroomService
import DarkroomWeights
import Foundation
import Logging
import XCTest

/// The recipe's `controlnet` list in whole jobs, against diffusers' ControlNet pipelines
/// (tools/reference/make_controlnet_fixtures.py → Tests/Fixtures/controlnet: `cn_i2i_tile`, `cn_inp4_inpaint`,
/// `cn_i2i_canny`), each within one 8-bit level: the preprocessor path (tile_resample, inpaint), a control image
/// of the user's, the A1111 parameters and report, restoration's tile preset, and the errors.
final class ControlNetJobTests: XCTestCase {
    static let fixtures = LoRAJobTests.fixtures
    var root: URL!
    var models: URL { root.appendingPathComponent("Models") }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("controlnet-jobs-\(UUID().uuidString.prefix(8))")
        let controls = models.appendingPathComponent("ControlNet")
        try FileManager.default.createDirectory(at: controls, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("sd1"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        let links = ["sd1_a": "controlnet/sd1_a/diffusers", "sd1_b.safetensors": "controlnet/sd1_b.safetensors",
                     "sd2v.safetensors": "controlnet/sd2v.safetensors"]
        for (name, target) in links {
            try FileManager.default.createSymbolicLink(at: controls.appendingPathComponent(name), withDestinationURL: Self.fixtures.appendingPathComponent(target))
        }
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func executor() -> JobExecutor { JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test")) }

    static func expected(_ key: String) throws -> [Float] {
        try SafetensorsFile(url: fixtures.appendingPathComponent("controlnet/expected.safetensors")).floats(key)
    }

    /// A job with an optional mask and control image files placed beside the recipe.
    func run(_ recipe: String, name: String, mask: URL? = nil, controls: [Int: (name: String, png: [UInt8])] = [:]) throws
        -> (png: [UInt8], report: [String: Any], text: String) {
        let folder = root.appendingPathComponent("job-\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let recipeURL = folder.appendingPathComponent("\(name).json")
        try Data(recipe.utf8).write(to: recipeURL)
        var images: [Int: (url: URL, name: String)] = [:]
        for (i, control) in controls {
            let url = folder.appendingPathComponent(control.name)
            try Data(control.png).write(to: url)
            images[i] = (url, control.name)
        }
        let inputs = JobExecutor.Inputs(recipe: recipeURL, image: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png"),
                                        mask: mask, recipeName: "\(name).json", imageName: "photo.png", maskName: mask?.lastPathComponent,
                                        seed: 1234, outputs: ["\(name).png"], report: "\(name).report.json", controlImages: images)
        let staging = folder.appendingPathComponent("out")
        try executor().execute(inputs, staging: staging)
        let png = [UInt8](try Data(contentsOf: staging.appendingPathComponent("\(name).png")))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: staging.appendingPathComponent("\(name).report.json"))) as? [String: Any]
        let text = try XCTUnwrap(ImageDecoder.decode(data: png, name: name).textChunks["parameters"])
        return (png, report ?? [:], text)
    }

    func recipe(_ extra: String, mode: String = "img2img", sampler: String = "euler", strength: Double = 0.6) -> String {
        #"{"mode": "\#(mode)", "model": "sd1", "prompt": "\#(LoRAJobTests.prompt)", "steps": 10, "strength": \#(strength), "guidance": 7.5, "sampler": "\#(sampler)", "seed": 1234, \#(extra)}"#
    }

    /// tile_resample at rate 1 is the image itself: diffusers' `cn_i2i_tile` (control = the photo in [0, 1]).
    func testTileResampleJobMatchesDiffusers() throws {
        let job = try run(recipe(#""controlnet": [{"model": "sd1_a", "module": "tile_resample"}]"#), name: "tile")
        try LoRAJobTests.assertWithinOneLevel(job.png, try Self.expected("cn_i2i_tile.image"))
        XCTAssertTrue(job.text.contains(#"ControlNet 0: "Module: tile_resample, Model: sd1_a, Weight: 1.0, Resize Mode: Crop and Resize, Guidance Start: 0.0, Guidance End: 1.0, Threshold A: 1.0, Control Mode: Balanced""#), job.text)
        let units = try XCTUnwrap(job.report["controlnet"] as? [[String: Any]])
        XCTAssertEqual(units.first?["model"] as? String, "sd1_a")
        XCTAssertEqual(units.first?["module"] as? String, "tile_resample")
    }

    /// The inpaint condition from the job's own mask, on the 4-channel model: diffusers' `cn_inp4_inpaint`.
    func testInpaintModuleJobMatchesDiffusers() throws {
        let mask = Self.fixtures.appendingPathComponent("pipelines/inputs/mask.png")
        let job = try run(recipe(#""mask_blur": 0, "paste_back": false, "controlnet": [{"model": "sd1_a", "module": "inpaint"}]"#, mode: "inpaint", strength: 0.75),
                          name: "inpaint", mask: mask)
        try LoRAJobTests.assertWithinOneLevel(job.png, try Self.expected("cn_inp4_inpaint.image"))
    }

    /// A control image of the user's (the fixture's edge map as a PNG beside the recipe), with a weight: `cn_i2i_canny`.
    func testOwnControlImageMatchesDiffusers() throws {
        let edges = try Self.expected("cn_i2i_canny.control.0")    // [1, 3, 64, 64], 0 or 1
        let plane = 64 * 64
        let samples = (0..<plane).flatMap { i in (0..<3).map { UInt16((edges[$0 * plane + i] * 255).rounded()) } }
        let png = try PNGEncoder.encode(try Image(width: 64, height: 64, layout: .rgb, bitDepth: 8, samples: samples))
        let job = try run(recipe(#""controlnet": [{"model": "sd1_b", "image": "edges.control.png", "weight": 0.8}]"#, sampler: "dpmpp_2m_karras"),
                          name: "own", controls: [0: ("edges.control.png", png)])
        try LoRAJobTests.assertWithinOneLevel(job.png, try Self.expected("cn_i2i_canny.image"))
        XCTAssertTrue(job.text.contains(#"ControlNet 0: "Module: none, Model: sd1_b ["#), "a single file's hash follows its name: \(job.text)")
    }

    /// Restoration without a `controlnet` key uses a tile model from Models/ControlNet at strength 0.5; an empty list
    /// turns the preset off.
    func testRestorationTilePreset() throws {
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("ControlNet/control_sd1_tile"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("controlnet/sd1_a/diffusers"))
        let restore = #"{"mode": "restore", "model": "sd1", "steps": 4, "seed": 1234"#
        let preset = try run(restore + "}", name: "preset")
        let units = try XCTUnwrap(preset.report["controlnet"] as? [[String: Any]])
        XCTAssertEqual(units.first?["model"] as? String, "control_sd1_tile")
        XCTAssertEqual(units.first?["preset"] as? String, "restore tile")
        XCTAssertEqual(preset.report["strength"] as? Double, 0.5)
        let off = try run(restore + #", "controlnet": []}"#, name: "off")
        XCTAssertNil(off.report["controlnet"])
        XCTAssertEqual(off.report["strength"] as? Double, 0.3)
        let own = try run(restore + #", "strength": 0.4}"#, name: "own-strength")
        XCTAssertEqual(own.report["strength"] as? Double, 0.4)
    }

    func testBadUnitsFailNamingTheField() throws {
        let cases: [(String, String, String)] = [
            (#"[{"model": "missing", "module": "canny"}]"#, "controlnet", "is not in"),
            (#"[{"model": "sd2v", "module": "none"}]"#, "controlnet[0].model", "Cannot use ControlNet 'sd2v.safetensors'"),
            (#"[{"model": "sd1_a", "image": "nothere.control.png"}]"#, "controlnet[0].image", "was not found"),
        ]
        for (units, field, text) in cases {
            XCTAssertThrowsError(try run(recipe(#""controlnet": \#(units)"#), name: "bad")) { error in
                guard let failure = error as? JobFailure else { return XCTFail("\(error)") }
                XCTAssertEqual(failure.field, field, failure.message)
                XCTAssertTrue(failure.message.contains(text), failure.message)
            }
        }
        for (units, problem) in [(#"[{"model": "sd1_a", "module": "inpaint"}]"#, "controlnet[0].module: 'inpaint' is made from the job's mask"),
                                 (#"[{"model": "sd1_a", "module": "cany"}]"#, "controlnet[0].module:"),
                                 (#"[{"model": "sd1_a"}]"#, "controlnet[0].module: missing"),
                                 (#"[{"model": "sd1_a", "module": "none", "start": 0.8, "end": 0.2}]"#, "controlnet[0].start: start (0.8) must be before end (0.2)"),
                                 (#"[{"model": "../x", "module": "none"}]"#, "controlnet[0].model: must be a ControlNet name")] {
            XCTAssertThrowsError(try Recipe.parse(Data(recipe(#""controlnet": \#(units)"#).utf8), file: "r.json")) { error in
                XCTAssertTrue("\(error)".contains(problem), "\(error)")
            }
        }
    }
}
