import ArgumentParser
import DarkroomSchedulers
import DarkroomTensor
import Foundation

extension Bench {
    /// Issue 13, part 2: each 3×3 convolution algorithm's error against a float64 direct convolution, and its time.
    struct Winograd: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Error and speed of im2col and each Winograd variant at SD shapes, against float64.",
            discussion: """
                For each shape and input kind, prints every algorithm's max and RMS error relative to the RMS of a \
                float64 direct convolution (ConvolutionError.referenceFloat64, on --measured-channels output channels \
                spread over K), and its best time of --repeats with the effective GFLOP/s (the direct algorithm's \
                2·K·C·9·H·W FLOPs over the time), next to this machine's sgemm peak. Inputs (seeded): gaussian \
                N(0, 1); silu: SiLU(z·(1 + 0.3a) + b) with a, b per channel, as after GroupNorm + SiLU; outliers: \
                silu with 1 channel in 64 scaled by 30, plus 5 everywhere (a DC offset); smooth: noise on an 8-pixel \
                grid, bilinear, then SiLU(2v + 2b) (VAE decoder planes). Weights N(0, 1)/√(9C), bias 0.1·N(0, 1).
                """)

        @Option(help: "Threads (default: all cores).")
        var threads: Int = ProcessInfo.processInfo.activeProcessorCount

        @Option(help: "Repetitions per timing; the best is reported.")
        var repeats: Int = 3

        @Option(help: "Output channels compared with float64 per case.")
        var measuredChannels: Int = 16

        @Option(help: "Shapes: unet, vae or all.")
        var shapes: String = "all"

        @Flag(help: "Time only (no float64 references): for more --repeats on a busy machine.")
        var speedOnly = false

        @Flag(inversion: .prefixedNo, help: "Also bf16 products (oneDNN): im2col as autocast runs it, and Winograd.")
        var bf16 = true

        @Option(help: "Only the algorithms whose name contains this text (e.g. \"1/2,-2\" for the default F(4x4, 3x3)).")
        var only: String?

        @Option(help: "Winograd's chunk budget in MiB of transformed input and products (Tensor.winogradChunkBudget; default 16).")
        var chunkMiB: Int?

        enum InputKind: String, CaseIterable { case gaussian, silu, outliers, smooth }

        func run() throws {
            if let chunkMiB { Tensor.winogradChunkBudget = max(1, chunkMiB) << 18 }
            BLAS.threadCount = threads
            Parallel.workers = threads
            Bench.header()   // prints the sgemm peak
            print("error: max |y - y64| / RMS(y64) and RMS(y - y64) / RMS(y64), y64 a float64 direct convolution")

            var cases: [(String, Int, Int, Int)] = []
            if shapes == "unet" || shapes == "all" {
                cases += [("UNet 320 ch @ 64x64, batch 2", 320, 64, 2), ("UNet 640 ch @ 32x32, batch 2", 640, 32, 2),
                          ("UNet 1280 ch @ 16x16, batch 2", 1280, 16, 2)]
            }
            if shapes == "vae" || shapes == "all" {
                cases += [("VAE 512 ch @ 64x64", 512, 64, 1), ("VAE 512 ch @ 128x128", 512, 128, 1),
                          ("VAE 256 ch @ 256x256", 256, 256, 1), ("VAE 128 ch @ 512x512", 128, 512, 1)]
            }
            let allOptions: [(String, (Tensor, Tensor, Tensor) -> Tensor)] =
                [("im2col", { x, w, bias in Bench.Winograd.im2col(x, w, bias) })]
                + WinogradTransform.all.map { transform in
                    (transform.name, { x, w, bias in x.winogradConvolution(weight: w, bias: bias, transform: transform) })
                }
                + (bf16 ? [("bf16 im2col (as autocast)", { x, w, bias in Bench.Winograd.im2colBF16(x, w, bias) })]
                    + [WinogradTransform.f23, .f43].map { transform in
                        ("bf16 " + transform.name, { x, w, bias in
                            (try? x.winogradConvolution(weight: w, bias: bias, transform: transform, products: .bf16))
                                ?? Tensor(zeros: x.shape) })
                    } : [])
            let options = allOptions.filter { option in only.map { option.0.contains($0) } ?? true }
            var random = TorchRandomSource(seed: 1302)
            for (name, channels, size, batch) in cases {
                let w = Tensor(shape: [channels, channels, 3, 3],
                               scalars: random.normal(count: channels * channels * 9).map { $0 / Float(9 * channels).squareRoot() })
                let bias = Tensor(shape: [channels], scalars: random.normal(count: channels).map { 0.1 * $0 })
                let measured = (0..<min(measuredChannels, channels)).map { $0 * channels / min(measuredChannels, channels) }
                let flops = 2.0 * Double(batch * channels * channels * 9 * size * size)
                print("\n\(name)")
                print(pad("algorithm", 38) + pad("seconds", 9) + pad("GFLOP/s", 9)
                      + InputKind.allCases.map { pad($0.rawValue + " max / rms", 20) }.joined())
                var rows = options.map { (pad($0.0, 38), "") }
                for kind in speedOnly ? [.gaussian] : InputKind.allCases {
                    let x = Self.input(kind, batch: batch, channels: channels, size: size, random: &random)
                    if speedOnly {
                        for (index, option) in options.enumerated() {
                            let seconds = best { _ = option.1(x, w, bias) }
                            rows[index].0 += pad(String(format: "%.4f", seconds), 9) + pad(String(format: "%.0f", flops / seconds / 1e9), 9)
                        }
                        continue
                    }
                    let reference = ConvolutionError.referenceFloat64(input: x, weight: w, bias: bias, outputChannels: measured)
                    for (index, option) in options.enumerated() {
                        let error = ConvolutionError(option.1(x, w, bias), reference: reference, outputChannels: measured)
                        if kind == .gaussian {
                            let seconds = best { _ = option.1(x, w, bias) }
                            rows[index].0 += pad(String(format: "%.4f", seconds), 9) + pad(String(format: "%.0f", flops / seconds / 1e9), 9)
                        }
                        rows[index].1 += pad(String(format: "%.1e / %.1e", error.maxRelative, error.rmsRelative), 20)
                    }
                }
                for row in rows { print(row.0 + row.1) }
            }
        }

        static func im2col(_ x: Tensor, _ w: Tensor, _ bias: Tensor) -> Tensor {
            let saved = Tensor.convolutionAlgorithm
            defer { Tensor.convolutionAlgorithm = saved }
            Tensor.convolutionAlgorithm = .im2col
            return x.conv2d(weight: w, bias: bias, padding: .uniform(1))
        }

        /// bf16 im2col with Float32 accumulation: the products of `torch.autocast`'s bf16 convolution (whose output
        /// is rounded to bf16 besides; this is not).
        static func im2colBF16(_ x: Tensor, _ w: Tensor, _ bias: Tensor) -> Tensor {
            let (savedAlgorithm, savedPrecision) = (Tensor.convolutionAlgorithm, Tensor.precision)
            defer { (Tensor.convolutionAlgorithm, Tensor.precision) = (savedAlgorithm, savedPrecision) }
            (Tensor.convolutionAlgorithm, Tensor.precision) = (.im2col, .bf16)
            return x.conv2d(weight: Weight(w), bias: bias, padding: .uniform(1))
        }

        func best(_ body: () -> Void) -> Double { Bench.bestSeconds(repeats: repeats, body) }

        static func input(_ kind: InputKind, batch: Int, channels: Int, size: Int, random: inout TorchRandomSource) -> Tensor {
            let plane = size * size
            func silu(_ v: Float) -> Float { v / (1 + exp(-v)) }
            let gain = random.normal(count: channels).map { 1 + 0.3 * $0 }, offset = random.normal(count: channels)
            var x: [Float]
            switch kind {
            case .gaussian:
                x = random.normal(count: batch * channels * plane)
            case .silu, .outliers:
                x = random.normal(count: batch * channels * plane)
                for i in x.indices { let c = (i / plane) % channels; x[i] = silu(x[i] * gain[c] + offset[c]) }
                if kind == .outliers {
                    for i in x.indices { x[i] = ((i / plane) % channels % 64 == 7 ? 30 * x[i] : x[i]) + 5 }
                }
            case .smooth:
                let grid = size / 8 + 2
                let coarse = random.normal(count: batch * channels * grid * grid)
                x = [Float](repeating: 0, count: batch * channels * plane)
                for p in 0..<(batch * channels) {
                    let c = p % channels
                    for y in 0..<size {
                        let fy = Float(y) / 8, y0 = Int(fy), ty = fy - Float(y0)
                        for column in 0..<size {
                            let fx = Float(column) / 8, x0 = Int(fx), tx = fx - Float(x0)
                            let g = { (i: Int, j: Int) in coarse[(p * grid + i) * grid + j] }
                            let v = (g(y0, x0) * (1 - tx) + g(y0, x0 + 1) * tx) * (1 - ty)
                                + (g(y0 + 1, x0) * (1 - tx) + g(y0 + 1, x0 + 1) * tx) * ty
                            x[p * plane + y * size + column] = silu(2 * v + 2 * offset[c])
                        }
                    }
                }
            }
            return Tensor(shape: [batch, channels, size, size], scalars: x)
        }
    }
}
