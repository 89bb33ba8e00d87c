import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Images larger than `VAETiling.automaticAbove` (1024 px): the VAE works in tiles, and restoration runs img2img
/// over tiles at the model's resolution, so memory stays bounded (sd1 fixture model; tiled VAE parity with
/// diffusers itself is in VAETilingTests).
final class LargeImageTests: XCTestCase {
    /// A smooth RGB test image in [-1, 1], [1, 3, height, width].
    func gradient(height: Int, width: Int) -> Tensor {
        Tensor(shape: [1, 3, height, width], initializingWith: { p in
            for c in 0..<3 { for y in 0..<height { for x in 0..<width {
                p[(c * height + y) * width + x] = Float(sin(Double(x) / 37 + Double(c)) * cos(Double(y) / 11)) * 0.8
            } } }
        })
    }

    func settings(_ mode: VAETilingMode) -> GenerationSettings {
        var s = GenerationSettings()
        s.prompt = "a photograph"; s.steps = 2; s.strength = 0.5; s.sampler = "euler"; s.seed = 3
        s.vaeTiling = mode
        return s
    }

    func testAutomaticVAETilingOnlyAboveTheThreshold() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let sample = pipeline.models.vae.config.sampleSize
        // At most the threshold: auto is the untiled (diffusers default) result, bit for bit, even when the image
        // is larger than one tile (where `always` tiles).
        let small = gradient(height: 16, width: max(2 * sample, 64) / 8 * 8)
        let untiled = try pipeline.imageToImage(small, settings: settings(.never)).image
        XCTAssertEqual(try pipeline.imageToImage(small, settings: settings(.auto)).image.scalars, untiled.scalars)
        XCTAssertNotEqual(try pipeline.imageToImage(small, settings: settings(.always)).image.scalars, untiled.scalars)
        // Above it: auto tiles, as `always` does, and differs from the untiled pass.
        let wide = gradient(height: 16, width: VAETiling.automaticAbove + 16)
        let auto = try pipeline.imageToImage(wide, settings: settings(.auto)).image
        XCTAssertEqual(auto.scalars, try pipeline.imageToImage(wide, settings: settings(.always)).image.scalars)
        XCTAssertNotEqual(auto.scalars, try pipeline.imageToImage(wide, settings: settings(.never)).image.scalars)
        XCTAssertEqual(Array(auto.shape), [1, 3, 16, VAETiling.automaticAbove + 16])
    }

    func testLargeRestorationRunsInModelSizedTiles() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let (height, width) = (24, VAETiling.automaticAbove + 40)
        let image = gradient(height: height, width: width)
        let samples = image.scalars.map { UInt16((($0 + 1) / 2 * 255).rounded()) }
        let planar = (0..<(height * width)).flatMap { i in (0..<3).map { samples[$0 * height * width + i] } }
        let input = try Image(width: width, height: height, layout: .rgb, bitDepth: 8, samples: planar)
        var c = PipelineConfiguration()
        c.mode = .restore
        c.generation = settings(.auto)
        c.colorize = true
        c.autoColor = false                 // the tiling alone (auto_color: AutoColorTests, TiledUpscaleTests)
        c.tileSize = 64; c.tileOverlap = 16
        let restored = try pipeline.run(c, image: input)[0].image
        XCTAssertEqual(Array(restored.shape), [1, 3, height, width])
        let start = Tensor(shape: [1, 3, height, width], scalars: samples.map { Float($0) / 255 * 2 - 1 })
        let tiled = try pipeline.tiledImageToImage(start, settings: c.generation, tile: 64, overlap: 16)
        XCTAssertEqual(restored.scalars, tiled.scalars)
    }
}
