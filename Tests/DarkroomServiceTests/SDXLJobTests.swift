import DarkroomImageIO
import DarkroomService
import DarkroomWeights
import Foundation
import Logging
import XCTest

/// An SDXL checkpoint through the service's job executor, as a recipe names it: the 64 × 64 photo at 6 Euler steps
/// × 0.6, guidance 7.5, seed 1234, against diffusers' StableDiffusionXLImg2ImgPipeline on the same tiny SDXL
/// (tools/reference/make_sdxl_more_fixtures.py job → models/sdxl_job/expected.safetensors `job.image`), within one
/// 8-bit level; the PNG's A1111 parameters and the report name the model and the size. And the same job with a VAE
/// override from Models/VAE.
final class SDXLJobTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("sdxl-jobs-\(UUID().uuidString.prefix(8))")
        let models = root.appendingPathComponent("Models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("sdxl"),
                                                   withDestinationURL: LoRAJobTests.fixtures.appendingPathComponent("models/sdxl/diffusers"))
        try FileManager.default.createDirectory(at: models.appendingPathComponent("VAE"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("VAE/tiny-vae"),
                                                   withDestinationURL: LoRAJobTests.fixtures.appendingPathComponent("vae/tiny-vae"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func testImageToImageJobAsDiffusers() throws {
        let expected = try SafetensorsFile(url: LoRAJobTests.fixtures.appendingPathComponent("models/sdxl_job/expected.safetensors"))
        let executor = JobExecutor(library: ModelLibrary(folder: root.appendingPathComponent("Models")), logger: Logger(label: "test"))
        let recipe = #"{"mode": "img2img", "model": "sdxl", "prompt": "\#(LoRAJobTests.prompt)", "steps": 6, "strength": 0.6, "guidance": 7.5, "sampler": "euler", "seed": 1234}"#
        let result = try LoRAJobTests.run(executor, root: root, recipe: recipe, name: "xl")
        try LoRAJobTests.assertWithinOneLevel(result.png, try expected.floats("job.image"))
        let parameters = try XCTUnwrap(ImageDecoder.decode(data: result.png, name: "xl.png").textChunks["parameters"])
        XCTAssertTrue(parameters.contains("Size: 64x64"), parameters)
        XCTAssertTrue(parameters.contains("Model: sdxl"), parameters)
        XCTAssertEqual(result.report["model"] as? String, "sdxl", "\(result.report)")

        // A VAE override on SDXL (as an fp16-fix VAE is named): Tests/Fixtures/vae/tiny-vae, its config's scaling
        // factor (0.18215) in place of the checkpoint's 0.13025; `job_vae.image` from the same script.
        let withVAE = try LoRAJobTests.run(executor, root: root, recipe: recipe.replacingOccurrences(of: "}", with: #", "vae": "tiny-vae"}"#),
                                           name: "xl-vae")
        try LoRAJobTests.assertWithinOneLevel(withVAE.png, try expected.floats("job_vae.image"))
        XCTAssertEqual(withVAE.report["vae"] as? String, "tiny-vae")
    }
}
