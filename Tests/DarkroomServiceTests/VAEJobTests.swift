import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomService
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import Logging
import XCTest

/// The VAE override in whole jobs against diffusers' img2img with `vae=` (tools/reference/make_vae_fixtures.py
/// → Tests/Fixtures/vae, `image`: 6 Euler steps at strength 0.6, guidance 7.5, seed 1234): a recipe's `vae`
/// (a diffusers folder in Models/VAE) and A1111's `<checkpoint>.vae.safetensors` (LDM keys, float16) beside a
/// single-file checkpoint, each within one 8-bit level; `"vae": "none"` gives the checkpoint's own VAE.
final class VAEJobTests: XCTestCase {
    static let fixtures = LoRAJobTests.fixtures
    /// The first 10 hex digits of the SHA-256 of tiny-vae-ldm.safetensors (hashlib), as A1111's "VAE hash".
    static let sidecarHash = "e6a206bb02"

    var root: URL!
    var models: URL { root.appendingPathComponent("Models") }

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("vae-jobs-\(UUID().uuidString.prefix(8))")
        let fm = FileManager.default
        try fm.createDirectory(at: models.appendingPathComponent("VAE"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(at: models.appendingPathComponent("sd1"), withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/diffusers"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("single.safetensors"), withDestinationURL: Self.fixtures.appendingPathComponent("models/sd1/sd1.safetensors"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("single.vae.safetensors"), withDestinationURL: Self.fixtures.appendingPathComponent("vae/tiny-vae-ldm.safetensors"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("VAE/tiny-vae"), withDestinationURL: Self.fixtures.appendingPathComponent("vae/tiny-vae"))
        try fm.createSymbolicLink(at: models.appendingPathComponent("VAE/not-a-vae.safetensors"), withDestinationURL: Self.fixtures.appendingPathComponent("lora/kohya_b.safetensors"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    /// The tiny single file needs its diffusers folder for the text encoder's head count (see ModelFixtures).
    func executor() -> JobExecutor {
        let config = Self.fixtures.appendingPathComponent("models/sd1/diffusers")
        return JobExecutor(library: ModelLibrary(folder: models), logger: Logger(label: "test"), loadPipeline: { url in
            StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: url.pathExtension == "safetensors" ? config : nil),
                                    tokenizer: try CLIPTokenizer.bundled())
        })
    }

    func recipe(model: String, extra: String = "") -> String {
        #"{"mode": "img2img", "model": "\#(model)", "prompt": "\#(LoRAJobTests.prompt)", "steps": 6, "strength": 0.6, "guidance": 7.5, "sampler": "euler", "seed": 1234\#(extra)}"#
    }

    func testRecipeVAESidecarVAEAndNone() throws {
        let vaeImage = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("vae/expected.safetensors")).floats("image")
        let baseImage = try SafetensorsFile(url: Self.fixtures.appendingPathComponent("lora/expected.safetensors")).floats("base.image")
        let executor = executor()

        let named = try LoRAJobTests.run(executor, root: root, recipe: recipe(model: "sd1", extra: #", "vae": "tiny-vae""#), name: "named")
        try LoRAJobTests.assertWithinOneLevel(named.png, vaeImage)
        let namedText = try XCTUnwrap(ImageDecoder.decode(data: named.png, name: "n").textChunks["parameters"])
        XCTAssertTrue(namedText.contains("Model: sd1, VAE: tiny-vae, "), namedText)
        XCTAssertEqual(named.report["vae"] as? String, "tiny-vae")

        let sidecar = try LoRAJobTests.run(executor, root: root, recipe: recipe(model: "single"), name: "sidecar")
        try LoRAJobTests.assertWithinOneLevel(sidecar.png, vaeImage)
        let sidecarText = try XCTUnwrap(ImageDecoder.decode(data: sidecar.png, name: "s").textChunks["parameters"])
        XCTAssertTrue(sidecarText.contains("VAE hash: \(Self.sidecarHash), VAE: single.vae.safetensors"), sidecarText)

        let none = try LoRAJobTests.run(executor, root: root, recipe: recipe(model: "single", extra: #", "vae": "none""#), name: "none")
        try LoRAJobTests.assertWithinOneLevel(none.png, baseImage)
        XCTAssertNil(none.report["vae"])
        XCTAssertEqual(ModelLibrary(folder: models).available, ["sd1", "single.safetensors"], "a .vae.safetensors is no checkpoint")
    }

    func testBadVAEsFailTheJobNamingThem() throws {
        for (vae, code, text) in [("missing", "recipe", "is not in"), ("not-a-vae", "model", "no VAE keys")] {
            XCTAssertThrowsError(try LoRAJobTests.run(executor(), root: root, recipe: recipe(model: "sd1", extra: #", "vae": "\#(vae)""#), name: "bad-\(vae)")) { error in
                guard let failure = error as? JobFailure else { return XCTFail("\(error)") }
                XCTAssertEqual(failure.code, code, failure.message)
                XCTAssertEqual(failure.field, "vae", failure.message)
                XCTAssertTrue(failure.message.contains(text), failure.message)
            }
        }
    }
}
