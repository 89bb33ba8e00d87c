import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomService
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import Logging
import XCTest

/// LoRAs in whole jobs, against diffusers' StableDiffusionImg2ImgPipeline with `load_lora_weights` and
/// `set_adapters` (tools/reference/make_lora_fixtures.py → Tests/Fixtures/lora: cases `kohya_a` at 0.8 and
/// `two` = kohya_a 0.5 + peft_c −1; 6 Euler steps at strength 0.6, guidance 7.5, seed 1234, on the tiny SD1
/// model and Tests/Fixtures/pipelines/inputs/photo.png): images within 1e-3, 8-bit results within one level.
final class LoRAJobTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let prompt = "a photograph of an astronaut riding a horse"
    /// A1111's addnet short hashes, by hashlib over the bytes after each file's safetensors header.
    static let hashes = ["kohya_a": "0a29c6a561b7", "peft_c": "a5bd5902d620"]

    var root: URL!
    var models: URL { root.appendingPathComponent("Models") }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("lora-jobs-\(UUID().uuidString.prefix(8))")
        let lora = models.appendingPathComponent("Lora")
        try FileManager.default.createDirectory(at: lora, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("sd1"),
                                                   withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        for name in ["kohya_a", "peft_c", "foreign"] {
            try FileManager.default.createSymbolicLink(at: lora.appendingPathComponent("\(name).safetensors"),
                                                       withDestinationURL: Self.fixtures.appendingPathComponent("lora/\(name).safetensors"))
        }
        let file = try Data(contentsOf: Self.fixtures.appendingPathComponent("lora/kohya_a.safetensors"))
        try file.prefix(file.count / 2).write(to: lora.appendingPathComponent("truncated.safetensors"))
        try Data("not a pickle we read".utf8).write(to: lora.appendingPathComponent("old.pt"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func configuration() -> PipelineConfiguration {
        var c = PipelineConfiguration()
        c.mode = .img2img
        c.generation.prompt = Self.prompt
        c.generation.steps = 6
        c.generation.strength = 0.6
        c.generation.guidance = 7.5
        c.generation.sampler = "euler"
        c.generation.seed = 1234
        return c
    }

    func photo() throws -> Image {
        try ImageDecoder.decode(fileAt: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image
    }

    func testImagesMatchDiffusers() throws {
        let base = try StableDiffusionModels.load(Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        let expected = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("lora/expected.safetensors"))
        let url = { (name: String) in Self.fixtures.appendingPathComponent("lora/\(name).safetensors") }
        let a = try LoRA.open(url("kohya_a"), model: base.checkpoint), c = try LoRA.open(url("peft_c"), model: base.checkpoint)
        for (name, loras) in [("kohya_a", [(a, Float(0.8))]), ("two", [(a, Float(0.5)), (c, Float(-1))])] {
            let pipeline = StableDiffusionPipeline(models: try base.applying(loras), tokenizer: try CLIPTokenizer.bundled())
            let image = try pipeline.run(configuration(), image: try photo())[0].image   // [1, 3, H, W] in [0, 1]
            let want = try expected.floats("\(name).image")                              // [H, W, 3]
            let got = image.scalars, plane = image.shape[2] * image.shape[3]
            var worst: Float = 0
            for p in 0..<plane { for ch in 0..<3 { worst = max(worst, abs(got[ch * plane + p] - want[p * 3 + ch])) } }
            XCTAssertLessThanOrEqual(worst, 1e-3, name)
        }
    }

    func run(_ executor: JobExecutor, recipe: String, name: String) throws -> (png: [UInt8], report: [String: Any]) {
        try Self.run(executor, root: root, recipe: recipe, name: name)
    }

    /// Runs one img2img job of `recipe` on the pipelines' photo through `executor`, staged under `root`.
    static func run(_ executor: JobExecutor, root: URL, recipe: String, name: String) throws -> (png: [UInt8], report: [String: Any]) {
        let folder = root.appendingPathComponent("job-\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let recipeURL = folder.appendingPathComponent("\(name).json")
        try Data(recipe.utf8).write(to: recipeURL)
        let inputs = JobExecutor.Inputs(recipe: recipeURL, image: Self.fixtures.appendingPathComponent("pipelines/inputs/photo.png"),
                                        mask: nil, recipeName: "\(name).json", imageName: "photo.png", maskName: nil, seed: 1234,
                                        outputs: ["\(name).png"], report: "\(name).report.json")
        let staging = folder.appendingPathComponent("out")
        try executor.execute(inputs, staging: staging)
        let png = [UInt8](try Data(contentsOf: staging.appendingPathComponent("\(name).png")))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: staging.appendingPathComponent("\(name).report.json"))) as? [String: Any]
        return (png, report ?? [:])
    }

    func recipe(prompt: String, extra: String = "") -> String {
        #"{"mode": "img2img", "model": "sd1", "prompt": "\#(prompt)", "steps": 6, "strength": 0.6, "guidance": 7.5, "sampler": "euler", "seed": 1234\#(extra)}"#
    }

    func executor() -> JobExecutor {
        JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"))
    }

    /// The prompt tag is removed before tokenising (the tag sits right after the last word so the remaining
    /// text is exactly the reference prompt), the image is diffusers' within one 8-bit level, and the
    /// parameters chunk keeps the tag and lists `Lora hashes` as A1111 writes them.
    func testPromptTagJobThenJobWithoutIt() throws {
        let executor = executor()
        let withLoRA = try run(executor, recipe: recipe(prompt: Self.prompt + "<lora:kohya_a:0.8>"), name: "with")
        let expected = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("lora/expected.safetensors"))
        try assertWithinOneLevel(withLoRA.png, try expected.floats("kohya_a.image"))
        let text = try XCTUnwrap(ImageDecoder.decode(data: withLoRA.png, name: "with.png").textChunks["parameters"])
        XCTAssertTrue(text.hasPrefix(Self.prompt + "<lora:kohya_a:0.8>\n"), text)
        XCTAssertTrue(text.contains(#"Lora hashes: "kohya_a: \#(Self.hashes["kohya_a"]!)""#), text)
        let loras = try XCTUnwrap(withLoRA.report["loras"] as? [[String: Any]])
        XCTAssertEqual(loras.first?["hash"] as? String, Self.hashes["kohya_a"])

        // The same executor, the same job without the LoRA: exactly the image of a fresh process.
        let without = try run(executor, recipe: recipe(prompt: Self.prompt), name: "without")
        let fresh = try run(self.executor(), recipe: recipe(prompt: Self.prompt), name: "fresh")
        XCTAssertEqual(try ImageDecoder.decode(data: without.png, name: "a").image.samples,
                       try ImageDecoder.decode(data: fresh.png, name: "b").image.samples)
        try assertWithinOneLevel(without.png, try expected.floats("base.image"))
    }

    /// Two LoRAs from the `loras` key and a tag add up (kohya_a 0.5 via the key, peft_c −1 via the tag).
    func testLorasKeyAndTagTogether() throws {
        let result = try run(executor(), recipe: recipe(prompt: Self.prompt + "<lora:peft_c:-1>",
                                                        extra: #", "loras": [{"name": "kohya_a", "weight": 0.5}]"#), name: "two")
        let expected = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("lora/expected.safetensors"))
        try assertWithinOneLevel(result.png, try expected.floats("two.image"))
        let text = try XCTUnwrap(ImageDecoder.decode(data: result.png, name: "two.png").textChunks["parameters"])
        XCTAssertTrue(text.contains(#"Lora hashes: "kohya_a: \#(Self.hashes["kohya_a"]!), peft_c: \#(Self.hashes["peft_c"]!)""#), text)
    }

    func testBadLoRAsFailTheJobNamingTheProblem() throws {
        let cases: [(prompt: String, code: String, contains: String)] = [
            (Self.prompt + "<lora:missing:1>", "recipe", "'missing' is not in"),
            (Self.prompt + "<lora:foreign:1>", "model", "match no weight of the model"),
            (Self.prompt + "<lora:truncated:1>", "model", "truncated"),
            (Self.prompt + "<lora:old:1>", "model", "pickle"),
        ]
        for (index, c) in cases.enumerated() {
            XCTAssertThrowsError(try run(executor(), recipe: recipe(prompt: c.prompt), name: "bad\(index)")) { error in
                guard let failure = error as? JobFailure else { return XCTFail("\(error)") }
                XCTAssertEqual(failure.code, c.code, failure.message)
                XCTAssertEqual(failure.field, "loras", failure.message)
                XCTAssertTrue(failure.message.lowercased().contains(c.contains.lowercased()), failure.message)
            }
        }
    }

    func assertWithinOneLevel(_ png: [UInt8], _ want: [Float], file: StaticString = #filePath, line: UInt = #line) throws {
        try Self.assertWithinOneLevel(png, want, file: file, line: line)
    }

    /// The PNG's 8-bit samples within one level of diffusers' float image ([H, W, 3] in [0, 1]).
    static func assertWithinOneLevel(_ png: [UInt8], _ want: [Float], file: StaticString = #filePath, line: UInt = #line) throws {
        let got = try ImageDecoder.decode(data: png, name: "result.png").image
        XCTAssertEqual(got.samples.count, want.count, file: file, line: line)
        var worst = 0
        for (i, value) in want.enumerated() where i < got.samples.count {
            worst = max(worst, abs(Int(got.samples[i]) - Int((value * 255).rounded())))
        }
        XCTAssertLessThanOrEqual(worst, 1, file: file, line: line)
    }
}
