import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import Foundation
import XCTest

/// Tiled upscaling against a whole-image run of the same network (the forward itself is checked against spandrel
/// in UpscalerParityTests): within one 8-bit level everywhere, with tiles much smaller than the image.
final class UpscalerTilingTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/upscalers")

    /// A smooth image with detail: gradients plus a checker of 3 px cells, [1, 3, height, width] in [0, 1].
    static func image(width: Int, height: Int) -> Tensor {
        var values = [Float](repeating: 0, count: 3 * width * height)
        for c in 0..<3 { for y in 0..<height { for x in 0..<width {
            let checker: Float = ((x / 3 + y / 3) % 2 == 0) ? 0.15 : 0
            values[(c * height + y) * width + x] = min(1, Float(x) / Float(width) * 0.5 + Float(y) / Float(height) * 0.3 + Float(c) * 0.05 + checker)
        } } }
        return Tensor(shape: [1, 3, height, width], scalars: values)
    }

    func load(_ name: String) throws -> UpscalerModel { try UpscalerModel.load(Self.folder.appendingPathComponent("\(name).safetensors")) }

    func testTiledWithinOneLevelOfWholeImage() throws {
        let image = Self.image(width: 70, height: 53)
        for name in ["rrdb_x4_new", "rrdb_x2_unshuffle", "compact_x4"] {
            let model = try load(name)
            let whole = try model.upscale(image, tiling: UpscalerTiling(tile: 4096, overlap: 0))
            // The single tile is the whole image: exactly the network's output, clamped and rounded.
            let direct = model(image).scalars.map { v -> UInt8 in UInt8((min(1, max(0, v)) * 255).rounded()) }
            XCTAssertEqual(whole.pixels, direct, name)
            var tiles = 0
            let tiled = try model.upscale(image, tiling: UpscalerTiling(tile: 24, overlap: 16)) { _, total in tiles = total; return true }
            XCTAssertGreaterThanOrEqual(tiles, 9, name)
            XCTAssertEqual([tiled.width, tiled.height], [70 * model.scale, 53 * model.scale], name)
            let worst = zip(tiled.pixels, whole.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1, name)
            let differing = zip(tiled.pixels, whole.pixels).filter { $0 != $1 }.count
            print("\(name): \(tiles) tiles, largest difference \(worst) level(s), \(differing) of \(whole.pixels.count) samples differ")
        }
    }

    func testEnlargeRunsTheNetworkThenLanczosAsA1111() throws {
        let model = try load("compact_x4")
        let image = Self.image(width: 20, height: 16)
        // upscale 2 with a 4× model: one pass to 80×64, then Lanczos down to 40×32.
        let two = try ImageUpscaling.enlarge(image, factor: 2, with: model)
        let pass = try model.upscale(image)
        XCTAssert(two == (try ImageOps.resizeLanczos(pass, width: 40, height: 32)))
        // The model's own factor: the network alone. Lanczos without a model.
        XCTAssert((try ImageUpscaling.enlarge(image, factor: 4, with: model)) == pass)
        XCTAssertEqual([try ImageUpscaling.enlarge(image, factor: 3, with: nil)].map { [$0.width, $0.height] }, [[60, 48]])
        // A 2× model asked for 4×: two passes.
        let x2 = try load("rrdb_x2_old")
        let four = try ImageUpscaling.enlarge(image, factor: 4, with: x2)
        XCTAssert(four == (try x2.upscale(try x2.upscale(image).unitTensorForTest)))
    }

    func testCancellingStopsBetweenTiles() throws {
        let model = try load("compact_x4")
        XCTAssertThrowsError(try model.upscale(Self.image(width: 60, height: 60), tiling: UpscalerTiling(tile: 24, overlap: 8)) { done, _ in done < 2 }) {
            XCTAssertEqual($0 as? PipelineError, .cancelled(step: 2))
        }
    }
}

extension PlanarImage8 {
    /// [1, C, H, W] in [0, 1] (levels / 255).
    var unitTensorForTest: Tensor { Tensor(shape: [1, channels, height, width], scalars: pixels.map { Float($0) / 255 }) }
}
