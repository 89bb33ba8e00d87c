import DarkroomImageIO
import DarkroomPipeline
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// The A1111 options on top of diffusers' inpainting, on the sd1 (4-channel) fixture model.
final class InpaintOptionsTests: XCTestCase {
    func photo() throws -> Image { try PipelineFixtures.input("photo.png") }
    func rectangleMask(x: Range<Int>, y: Range<Int>, width: Int = 64, height: Int = 64) throws -> Image {
        var samples = [UInt16](repeating: 0, count: width * height)
        for row in y { for column in x { samples[row * width + column] = 255 } }
        return try Image(width: width, height: height, layout: .gray, bitDepth: 8, samples: samples)
    }
    func configuration(_ edit: (inout PipelineConfiguration) -> Void) -> PipelineConfiguration {
        var c = PipelineConfiguration()
        c.mode = .inpaint
        c.generation.prompt = "a photograph"
        c.generation.steps = 6
        c.generation.sampler = "euler"
        c.generation.seed = 11
        edit(&c)
        return c
    }

    /// mask_blur 4 (A1111's default): pixels beyond the blur's reach are the input's exactly; pixels just
    /// outside the hard mask edge are blended (not all equal to the input).
    func testBlurredPasteBackBlendsTheEdgeOnly() throws {
        let input = try photo()
        let mask = try rectangleMask(x: 24..<40, y: 24..<40)
        let result = try PipelineFixtures.pipeline("sd1").run(configuration { $0.maskBlur = 4 }, image: input, mask: mask)[0]
        let out = try ImageTensor.image(fromUnitRange: result.image)
        var farChanged = 0, edgeChanged = 0
        for y in 0..<64 { for x in 0..<64 {
            let distance = max(max(24 - x, x - 39), max(24 - y, y - 39))      // Chebyshev distance outside the box
            let changed = (0..<3).contains { out.samples[(y * 64 + x) * 3 + $0] != input.samples[(y * 64 + x) * 3 + $0] }
            if distance > 11 && changed { farChanged += 1 }                     // kernel 2·⌊2.5·4 + 0.5⌋ + 1 = 21: reach 10
            if (1...3).contains(distance) && changed { edgeChanged += 1 }
        } }
        XCTAssertEqual(farChanged, 0)
        XCTAssertGreaterThan(edgeChanged, 20)
    }

    /// Object removal with a plain checkpoint: a magenta square (a colour the photo does not have) under the mask. With `fill` the image that is
    /// encoded has none of the object's colour left under the mask (so the object cannot come back from the start latents);
    /// with `original` it is all there. (The final image cannot show this with the fixtures: a model with
    /// random weights paints arbitrary colours.) The option reaches the pipeline: the
    /// two results differ.
    func testFillRemovesTheObjectBeforeEncoding() throws {
        var samples = try photo().samples
        for y in 20..<44 { for x in 20..<44 { samples[(y * 64 + x) * 3] = 255; samples[(y * 64 + x) * 3 + 1] = 0; samples[(y * 64 + x) * 3 + 2] = 255 } }
        let input = try Image(width: 64, height: 64, layout: .rgb, bitDepth: 8, samples: samples)
        let maskImage = try rectangleMask(x: 16..<48, y: 16..<48)
        let mask = ImageTensor.mask(from: maskImage)
        func objectPixels(_ t: Tensor) throws -> Int {
            let out = try ImageTensor.image(fromUnitRange: ImageTensor.unitRange(t))
            var red = 0
            for y in 16..<48 { for x in 16..<48 {
                let (r, g, b) = (Int(out.samples[(y * 64 + x) * 3]), Int(out.samples[(y * 64 + x) * 3 + 1]), Int(out.samples[(y * 64 + x) * 3 + 2]))
                if r >= 215 && g <= 40 && b >= 215 { red += 1 }                  // within 40 levels of magenta
            } }
            return red
        }
        let tensor = ImageTensor.tensor(from: input)
        XCTAssertEqual(try objectPixels(StableDiffusionPipeline.startImage(tensor, mask: mask, maskedContent: .original)), 24 * 24)
        XCTAssertEqual(try objectPixels(StableDiffusionPipeline.startImage(tensor, mask: mask, maskedContent: .fill)), 0)

        let pipeline = try PipelineFixtures.pipeline("sd1")
        let original = try pipeline.run(configuration { $0.maskedContent = .original; $0.generation.strength = 0.5 }, image: input, mask: maskImage)[0]
        let filled = try pipeline.run(configuration { $0.maskedContent = .fill; $0.generation.strength = 0.5 }, image: input, mask: maskImage)[0]
        XCTAssertNotEqual(original.latents.scalars, filled.latents.scalars)
    }

    func testSizesThatAreNotMultiplesOfEight() throws {
        let input = try photo()
        var cropped = [UInt16]()
        for y in 0..<45 { for x in 0..<61 { for c in 0..<3 { cropped.append(input.samples[(y * 64 + x) * 3 + c]) } } }
        let odd = try Image(width: 61, height: 45, layout: .rgb, bitDepth: 8, samples: cropped)
        for (handling, expected) in [(PipelineConfiguration.SizeHandling.pad, [61, 45]), (.resize, [61, 45]), (.crop, [56, 40])] {
            var c = PipelineConfiguration()
            c.generation.steps = 3
            c.sizeHandling = handling
            let result = try PipelineFixtures.pipeline("sd1").run(c, image: odd)[0]
            XCTAssertEqual([result.image.shape[3], result.image.shape[2]], expected, "\(handling)")
        }
    }
}

extension InpaintOptionsTests {
    /// "Only masked" against diffusers' `padding_mask_crop=8` (case `inp9_euler_s075_crop8`, 9-channel model,
    /// work size 64×64): the same crop box, Pillow Lanczos in and out, composited with the binary mask.
    func testOnlyMaskedMatchesDiffusersPaddingMaskCrop() throws {
        let c = try XCTUnwrap(try PipelineFixtures.cases().first { $0.name == "inp9_euler_s075_crop8" })
        var configuration = PipelineConfiguration()
        configuration.mode = .inpaint
        configuration.generation = c.settings
        configuration.inpaintArea = .masked
        configuration.padding = try XCTUnwrap(c.paddingMaskCrop)
        configuration.resolution = 64
        configuration.maskBlur = 0
        let result = try PipelineFixtures.pipeline(c.model).run(configuration, image: try PipelineFixtures.input(c.image),
                                                                 mask: try PipelineFixtures.input(try XCTUnwrap(c.mask)))[0]
        let want = try PipelineFixtures.expected().tensor("\(c.name).image")          // quantised PIL result / 255
        let got = try ImageTensor.image(fromUnitRange: result.image)
        var worst = 0
        for (i, value) in want.scalars.enumerated() { worst = max(worst, abs(Int(got.samples[i]) - Int((value * 255).rounded()))) }
        print("only-masked vs diffusers: max difference \(worst) levels")
        XCTAssertLessThanOrEqual(worst, 1)
    }
}

/// Restoration's 2× "SD upscale": tiles cover the image with the overlap asked for, and the blend of one
/// tile that covers everything is exactly that tile's img2img.
final class TiledUpscaleTests: XCTestCase {
    func testTileOriginsCoverWithOverlap() {
        for (size, tile, overlap) in [(1024, 512, 64), (1000, 512, 64), (128, 64, 16), (96, 64, 16), (64, 64, 16), (2048, 768, 64)] {
            let origins = TileLayout.origins(size: size, tile: tile, overlap: overlap)
            XCTAssertEqual(origins.first, 0)
            XCTAssertEqual((origins.last ?? 0) + min(tile, size), size, "covers to the end: \(size)")
            for (a, b) in zip(origins, origins.dropFirst()) { XCTAssertGreaterThanOrEqual(a + tile - b, overlap, "overlap \(size)") }
        }
    }

    func testUpscaleDoublesTheSizeAndOneTileIsPlainImg2Img() throws {
        let pipeline = try PipelineFixtures.pipeline("sd1")
        let photo = try PipelineFixtures.input("photo_ns.png")                                   // 64×48
        var c = PipelineConfiguration()
        c.mode = .restore
        c.generation.steps = 4; c.generation.strength = 0.5; c.generation.seed = 8
        c.upscale = 2; c.tileSize = 64; c.tileOverlap = 16
        let tiled = try pipeline.run(c, image: photo)[0].image
        XCTAssertEqual(Array(tiled.shape), [1, 3, 96, 128])
        XCTAssertTrue(tiled.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })

        c.tileSize = 128                                                                          // one tile
        let single = try pipeline.run(c, image: photo)[0].image
        // A colour photo: `auto_color` (on by default) first, then Lanczos, then img2img.
        let corrected = try ImageOps.autoColor(PlanarImage8(width: 64, height: 48, channels: 3,
            pixels: (0..<3).flatMap { ch in (0..<(64 * 48)).map { UInt8(photo.samples[$0 * 3 + ch]) } }))
        let enlarged = try ImageOps.resizeLanczos(corrected, width: 128, height: 96)
        let input = Tensor(shape: [1, 3, 96, 128], scalars: enlarged.pixels.map { (Float($0) / 255) * 2 - 1 })
        XCTAssertEqual(single.scalars, try pipeline.imageToImage(input, settings: c.generation).image.scalars)
    }
}

extension InpaintOptionsTests {
    /// `latent_noise` and `latent_nothing` change what the masked area starts from (so the results differ
    /// from `original` and from each other) and, with paste-back, nothing outside the mask.
    func testLatentMaskedContentModes() throws {
        let input = try photo()
        let mask = try rectangleMask(x: 16..<48, y: 16..<48)
        var images: [PipelineConfiguration.MaskedContent: Image] = [:]
        for content in [PipelineConfiguration.MaskedContent.original, .latentNoise, .latentNothing] {
            let c = configuration { $0.maskedContent = content; $0.maskBlur = 0 }
            images[content] = try ImageTensor.image(fromUnitRange: try PipelineFixtures.pipeline("sd1").run(c, image: input, mask: mask)[0].image)
        }
        XCTAssertNotEqual(images[.original]?.samples, images[.latentNoise]?.samples)
        XCTAssertNotEqual(images[.original]?.samples, images[.latentNothing]?.samples)
        XCTAssertNotEqual(images[.latentNoise]?.samples, images[.latentNothing]?.samples)
        for (_, image) in images {
            for y in 0..<64 { for x in 0..<64 where !(16..<48).contains(x) || !(16..<48).contains(y) {
                for c in 0..<3 { XCTAssertEqual(image.samples[(y * 64 + x) * 3 + c], input.samples[(y * 64 + x) * 3 + c]) }
            } }
        }
    }
}
