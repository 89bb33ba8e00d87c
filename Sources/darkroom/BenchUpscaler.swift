import ArgumentParser
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomWeights
import Dispatch
import Foundation

extension Bench {
    struct Upscaler: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time a 4× upscale with a full-size RRDBNet (Real-ESRGAN x4plus shapes, random weights): load, tiled upscale, peak RSS.",
            discussion: """
                Without a file, a RealESRGAN_x4plus-shaped RRDBNet (nf 64, nb 23, gc 32, 16.7 M parameters, float32) with \
                random weights is written once to ~/.cache/darkroom/bench/rrdbnet-x4-random.safetensors by Darkroom's own \
                writer (never committed). tools/bench/upscaler_bench.py runs spandrel/PyTorch on the same file and \
                the same tiles for the ratio. Run it in its own process: the peak RSS is the run's.
                """)

        @Argument(help: "An upscaler .safetensors (default: the cached random RRDBNet x4).")
        var model: String?

        @Option(help: "Input side in pixels (the output is 4× for a 4× model).")
        var size = 512

        @Option(help: "Tile side in input pixels (0: the whole image in one piece).")
        var tile = UpscalerTiling.standard.tile

        @Option(help: "Smallest tile overlap in input pixels.")
        var overlap = UpscalerTiling.standard.overlap

        @Option(help: "Runs; the best is reported.")
        var repeats = 1

        @Option(help: "Precision of the matrix products: fp32 (OpenBLAS) or bf16 (oneDNN, fp32 accumulation).")
        var precision = Precision.fp32

        func run() throws {
            let url = try model.map { URL(fileURLWithPath: $0) } ?? BenchUpscalerModel.cached()
            Tensor.precision = precision
            Bench.header()
            print("precision \(precision.rawValue); model \(url.path)")
            var loaded: UpscalerModel?
            try Bench.measure("load", repeats: 1) { loaded = try UpscalerModel.load(url) }
            guard let loaded else { return }
            print("  \(loaded.summary), \(loaded.layout.rawValue)")
            let image = BenchUpscalerModel.testImage(side: size)
            let tiling = UpscalerTiling(tile: tile > 0 ? tile : size, overlap: tile > 0 ? overlap : 0)
            var tiles = 0
            let side = size * loaded.scale
            try Bench.measure("upscale \(size)→\(side) px", repeats: repeats) {
                _ = try loaded.upscale(image, tiling: tiling) { _, total in tiles = total; return true }
            }
            print("  \(tiles) tile(s) of at most \(tiling.tile) px, overlap ≥ \(tiling.overlap) px")
        }
    }
}

/// The full-size RRDBNet `darkroom bench upscaler` times: Real-ESRGAN x4plus's shapes (basicsr names: conv_first,
/// body.0…22.rdb1…3.conv1…5, conv_body, conv_up1/2, conv_hr, conv_last; 16 697 987 parameters), float32, random
/// values ~ N(0, 1/fan_in) with small biases, so activations stay in a normal range (no overflow, no denormals).
enum BenchUpscalerModel {
    static let features = 64, blocks = 23, growth = 32

    static var file: URL {
        BenchCheckpoint.cacheFolder.deletingLastPathComponent().appendingPathComponent("rrdbnet-x4-random.safetensors")
    }

    static func cached() throws -> URL {
        if FileManager.default.fileExists(atPath: file.path) { return file }
        let start = Date()
        print("creating a random-weight RRDBNet x4 (nf 64, nb 23, gc 32) at \(file.path) …")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        var random = SplitMix64(seed: 15)
        var writer = SafetensorsWriter()
        var parameters = 0
        func conv(_ name: String, _ cin: Int, _ cout: Int) throws {
            let scale = Float(1 / Double(cin * 9).squareRoot())
            try writer.add("\(name).weight", shape: [cout, cin, 3, 3], floats: (0..<(cout * cin * 9)).map { _ in random.normal() * scale })
            try writer.add("\(name).bias", shape: [cout], floats: (0..<cout).map { _ in random.normal() * 0.01 })
            parameters += cout * cin * 9 + cout
        }
        try conv("conv_first", 3, features)
        for i in 0..<blocks {
            for k in 1...3 {
                for j in 1...5 { try conv("body.\(i).rdb\(k).conv\(j)", features + (j - 1) * growth, j < 5 ? growth : features) }
            }
        }
        try conv("conv_body", features, features)
        try conv("conv_up1", features, features)
        try conv("conv_up2", features, features)
        try conv("conv_hr", features, features)
        try conv("conv_last", features, 3)
        let staging = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent)-\(getpid())")
        try writer.write(to: staging)
        try FileManager.default.moveItem(at: staging, to: file)
        print(String(format: "created in %.1f s: %d parameters", Date().timeIntervalSince(start), parameters))
        return file
    }

    /// A deterministic test pattern [1, 3, side, side] in [0, 1]: gradients, rings and a fine checker, so the
    /// network sees edges and flat areas (tools/bench/upscaler_bench.py builds the same one).
    static func testImage(side: Int) -> Tensor {
        var values = [Float](repeating: 0, count: 3 * side * side)
        for c in 0..<3 {
            for y in 0..<side {
                for x in 0..<side {
                    let (dx, dy) = (Float(x - side / 2), Float(y - side / 2))
                    let ring: Float = Int((dx * dx + dy * dy).squareRoot() / 8) % 2 == 0 ? 0.2 : 0
                    let checker: Float = (x / 2 + y / 2) % 2 == 0 ? 0.1 : 0
                    values[(c * side + y) * side + x] = min(1, Float(x + 2 * y + 60 * c) / Float(4 * side) + ring + checker)
                }
            }
        }
        return Tensor(shape: [1, 3, side, side], scalars: values)
    }
}
