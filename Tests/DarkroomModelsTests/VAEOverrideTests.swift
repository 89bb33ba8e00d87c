import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// A separate VAE (tools/reference/make_vae_fixtures.py → Tests/Fixtures/vae): the same random VAE as a diffusers
/// `vae/` folder and as an LDM-keyed standalone file in float16, decoding a fixed latent within 1e-4 of diffusers.
final class VAEOverrideTests: XCTestCase {
    static let folder = ModelFixtures.root.deletingLastPathComponent().appendingPathComponent("vae")

    func testBothLayoutsDecodeAsDiffusers() throws {
        let expected = try SafetensorsFile(url: Self.folder.appendingPathComponent("expected.safetensors"))
        let base = try ModelFixtures.load("sd1", .diffusers)
        for name in ["tiny-vae", "tiny-vae-ldm.safetensors"] {
            let models = try base.replacingVAE(with: Self.folder.appendingPathComponent(name))
            XCTAssertEqual(models.vae.config.scalingFactor, 0.18215)
            let latent = try expected.tensor("latent")
            assertClose(models.vae.decode(latent * (1 / models.vae.config.scalingFactor)), try expected.tensor("decoded"),
                        relative: 1e-4, name)
            // The receiver keeps its own VAE.
            XCTAssertNotEqual(base.vae.decode(latent).scalars, models.vae.decode(latent).scalars)
        }
    }

    func testAFileWithoutVAEKeysOrAnotherFamilysVAEIsRefused() throws {
        let base = try ModelFixtures.load("sd1", .diffusers)
        // A LoRA file is no VAE.
        let lora = Self.folder.deletingLastPathComponent().appendingPathComponent("lora/kohya_b.safetensors")
        XCTAssertThrowsError(try base.replacingVAE(with: lora)) { error in
            XCTAssertTrue("\(error)".contains("no VAE keys"), "\(error)")
        }
        // A whole checkpoint's VAE keys carry first_stage_model.: that is accepted (A1111 users do point at one).
        XCTAssertNoThrow(try base.replacingVAE(with: ModelFixtures.singleFile("sd1")))
    }
}
