import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// Tiled VAE encode/decode against diffusers' `enable_vae_tiling` on the sd1 fixture VAE
/// (tools/reference/make_vae_tiling_fixtures.py): 64 px tiles over a 104×136 image and a 13×17 latent, so there
/// are three rows and three columns of tiles, partial ones at the edges. Tolerance 1e-4 of the largest magnitude,
/// as for the untiled VAE: the blend is the same arithmetic; only the summation order inside each tile differs.
/// Tiled and untiled outputs differ by up to 1.6 here (each tile normalises on its own), so a wrong tile grid,
/// blend extent or blend order fails by far more than the tolerance.
final class VAETilingTests: XCTestCase {
    func testTiledEncodeAndDecodeMatchDiffusers() throws {
        let reference = try SafetensorsFile(url: ModelFixtures.folder("sd1").appendingPathComponent("vae_tiling.safetensors"))
        let tile = Int(try reference.tensor("tile_sample_size").scalars[0])
        let tiling = VAETiling(sampleSize: tile)
        for layout in ModelFixtures.Layout.allCases {
            let vae = try ModelFixtures.load("sd1", layout).vae
            let moments = try reference.tensor("moments").chunked(2, axis: 1)
            let posterior = vae.encode(try reference.tensor("image"), tiling: tiling)
            assertClose(posterior.mean, moments[0], relative: 1e-4, "\(layout) tiled encode mean")
            let expectedStd = moments[1].scalars.map { Foundation.exp(0.5 * min(max($0, -30), 20)) }
            assertClose(posterior.std, Tensor(shape: moments[1].shape, scalars: expectedStd), relative: 1e-4, "\(layout) tiled encode std")
            assertClose(vae.decode(try reference.tensor("latent"), tiling: tiling), try reference.tensor("decoded"),
                        relative: 1e-4, "\(layout) tiled decode")
        }
    }

    func testTilingOnlyAboveOneTile() throws {
        // An input no larger than one tile takes the untiled path, bit for bit.
        let vae = try ModelFixtures.load("sd1", .diffusers).vae
        let e = try ModelFixtures.expected("sd1")
        let latent = try e.tensor("vae.latent")  // 8×8 latents = 64 px
        XCTAssertEqual(vae.decode(latent, tiling: VAETiling(sampleSize: 64)).scalars, vae.decode(latent).scalars)
        XCTAssertNotEqual(vae.decode(latent, tiling: VAETiling(sampleSize: 32)).scalars, vae.decode(latent).scalars)
    }
}
