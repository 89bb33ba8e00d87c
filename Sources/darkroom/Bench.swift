import ArgumentParser
import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomSchedulers
import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed (build with -c release).",
        subcommands: [Kernels.self, Winograd.self, PrecisionError.self, Model.self, Job.self, ControlNet.self, Upscaler.self, Inbox.self, Isolation.self],
        defaultSubcommand: Kernels.self)

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Micro-benchmarks of the tensor kernels at Stable Diffusion shapes: GFLOP/s and seconds.")

        @Option(help: "OpenBLAS threads (default: all cores).")
        var threads: Int = ProcessInfo.processInfo.activeProcessorCount

        @Option(help: "Repetitions per case; the best is reported.")
        var repeats: Int = 3

        @Option(help: "Only the cases whose name contains this text.")
        var only: String?

        func run() throws {
            BLAS.threadCount = threads
            Parallel.workers = threads
            print("OpenBLAS \(BLAS.coreName) kernels, \(BLAS.threadCount) threads (\(BLAS.configuration))")
            if let warning = BLAS.slowerThanAvailable { print("warning: \(warning)") }
            print(pad("case", 52) + pad("seconds", 10) + "GFLOP/s")

            // GEMMs as the UNet meets them at 64×64 latents (4096 tokens).
            for (name, m, n, k) in [
                ("sgemm 320x4096x2880 (conv 3x3, 320 ch)", 320, 4096, 2880),
                ("sgemm 4096x2560x320 (GEGLU proj, 320 ch)", 4096, 2560, 320),
                ("sgemm 1280x64x11520 (conv 3x3, 1280 ch, 8x8)", 1280, 64, 11520),
            ] {
                let a = Tensor(shape: [m, k], repeating: 0.01), b = Tensor(shape: [k, n], repeating: 0.02)
                report(name, flops: 2.0 * Double(m * n * k)) { _ = a.matmul(b) }
            }
            // The same GEMMs in bfloat16 (cblas_sbgemm; Float32 accumulation), when this OpenBLAS has it.
            if BLAS.hasNativeBF16 {
                for (name, m, n, k) in [("sbgemm 320x4096x2880 (bf16)", 320, 4096, 2880), ("sbgemm 4096x2560x320 (bf16)", 4096, 2560, 320)] {
                    let a = [UInt16](repeating: 0x3c23, count: m * k), b = [UInt16](repeating: 0x3ca3, count: k * n)
                    var c = [Float](repeating: 0, count: m * n)
                    report(name, flops: 2.0 * Double(m * n * k)) {
                        BLAS.sbgemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &c, ldc: n)
                    }
                }
            }
            if only == nil { oneDNNKernels() }
            // 3×3 convolutions, each algorithm; GFLOP/s counts the direct algorithm's FLOPs for both, so
            // Winograd's figure is its effective rate.
            let savedAlgorithm = Tensor.convolutionAlgorithm
            defer { Tensor.convolutionAlgorithm = savedAlgorithm }
            for (name, c, size, batch) in [
                ("conv2d 3x3 320->320 @ 64x64, batch 2", 320, 64, 2),
                ("conv2d 3x3 640->640 @ 32x32, batch 2", 640, 32, 2),
                ("conv2d 3x3 1280->1280 @ 16x16, batch 2", 1280, 16, 2),
                ("conv2d 3x3 1280->1280 @ 8x8, batch 2", 1280, 8, 2),
                ("conv2d 3x3 128->128 @ 512x512 (VAE), batch 1", 128, 512, 1),
                ("conv2d 3x3 512->512 @ 128x128 (VAE), batch 1", 512, 128, 1),
            ] {
                let x = Tensor(shape: [batch, c, size, size], repeating: 0.1)
                let w = Tensor(shape: [c, c, 3, 3], repeating: 0.01), bias = Tensor(zeros: [c])
                for algorithm in [ConvolutionAlgorithm.im2col, .winograd] {
                    Tensor.convolutionAlgorithm = algorithm
                    report(name + " " + algorithm.rawValue, flops: 2.0 * Double(batch * c * c * 9 * size * size)) {
                        _ = x.conv2d(weight: w, bias: bias, padding: .uniform(1))
                    }
                }
            }
            // Attention at 4096 tokens (64×64 latents, SD 1.5 level 1: 8 heads of 40, batch 2).
            for (name, tokens, keys, heads, d) in [
                ("attention self 4096 tok, 8x40, batch 2", 4096, 4096, 8, 40),
                ("attention cross 4096 tok x 77, 8x40, batch 2", 4096, 77, 8, 40),
                ("attention self 9216 tok (96x96), 8x40, batch 2", 9216, 9216, 8, 40),
            ] {
                let q = Tensor(shape: [2, tokens, heads * d], repeating: 0.01)
                let kv = Tensor(shape: [2, keys, heads * d], repeating: 0.02)
                for onOneDNN in [false, true] {
                    Tensor.attentionOnOneDNN = onOneDNN
                    report(name + (onOneDNN ? ", oneDNN f32" : ", OpenBLAS"), flops: 2.0 * 2 * Double(2 * heads * tokens * keys * d)) {
                        _ = Tensor.attention(query: q, key: kv, value: kv, heads: heads)
                    }
                }
                Tensor.attentionOnOneDNN = true
                Tensor.precision = .bf16
                for pads in [false, true] {
                    Tensor.attentionPadsValues = pads
                    report(name + ", oneDNN bf16" + (pads ? ", V padded" : ""), flops: 2.0 * 2 * Double(2 * heads * tokens * keys * d)) {
                        _ = Tensor.attention(query: q, key: kv, value: kv, heads: heads)
                    }
                }
                Tensor.precision = .fp32
            }
            // 16-bit weights are expanded per use (Weight.withFloat32): the largest SD 1.5 kernel, 1280×1280×3×3.
            let halfBits = [UInt16](repeating: 0x3c00, count: 1280 * 1280 * 9)
            halfBits.withUnsafeBytes { raw in
                let weight = Weight(shape: [1280, 1280, 3, 3], format: .float16, borrowing: raw.baseAddress!, owner: BenchOwner())
                report("f16 -> f32 weight 1280x1280x3x3 (GB/s of output)", flops: Double(weight.count * 4)) {
                    weight.withFloat32 { _ in }
                }
            }
            // Rounding to bf16 (activations before each bf16 product, softmax numerators): one worker's 256 KiB share,
            // with AVX512_BF16's conversion where the CPU has it and with the Swift loop.
            let floats = [Float](repeating: 0.3, count: 1 << 16)
            var halves = [UInt16](repeating: 0, count: 1 << 16)
            let savedEncoder = HalfConversion.encodesWithAVX512BF16
            for (path, useInstruction) in [("vcvtne2ps2bf16", true), ("Swift loop", false)]
                where useInstruction ? HalfConversion.cpuConvertsBFloat16 : true {
                HalfConversion.encodesWithAVX512BF16 = useInstruction
                report("f32 -> bf16, 64K values, \(path) (GB/s of input)", flops: Double(floats.count * 4 * 100)) {
                    for _ in 0..<100 { HalfConversion.encodeBFloat16Serial(from: floats, into: &halves, count: floats.count) }
                }
            }
            HalfConversion.encodesWithAVX512BF16 = savedEncoder
            // Attention score blocks per thread (Tensor.attentionThreadScoreBudget, floats): smaller ones stay in cache.
            let saved = Tensor.attentionThreadScoreBudget
            for budget in [1 << 16, 1 << 18, 1 << 20, 1 << 21] {
                Tensor.attentionThreadScoreBudget = budget
                let q = Tensor(shape: [2, 4096, 320], repeating: 0.01), kv = Tensor(shape: [2, 4096, 320], repeating: 0.02)
                report("attention 4096 tok, score block \(budget / 4096) rows", flops: 2.0 * 2 * Double(2 * 8 * 4096 * 4096 * 40)) {
                    _ = Tensor.attention(query: q, key: kv, value: kv, heads: 8)
                }
            }
            Tensor.attentionThreadScoreBudget = saved
            let scores = Tensor(shape: [1024, 4096], repeating: 0.3)
            report("softmax 1024x4096", flops: nil) { _ = scores.softmax() }
            report("silu 1024x4096", flops: nil) { _ = scores.silu() }
            let x = Tensor(shape: [2, 320, 64, 64], repeating: 0.3)
            let g = Tensor(shape: [320], repeating: 1), b = Tensor(zeros: [320])
            report("groupNorm+SiLU 2x320x64x64", flops: nil) { _ = x.groupNorm(groups: 32, weight: g, bias: b, epsilon: 1e-5, silu: true) }

            let tokenizer = try CLIPTokenizer.bundled()
            let prompt = "portrait of an old sailor with a grey beard, on the deck of a wooden ship in a storm, waves crashing, "
                + "lightning, dramatic lighting, oil painting, dutch masters, rich colors, impasto, rim light, cinematic, detailed"
            report("CLIP tokenize + weight a 75-token prompt", flops: nil) { _ = tokenizer.weightedChunks(prompt, padToken: 49407) }

            var random = TorchRandomSource(seed: 42)
            report("torch-exact randn 1x4x128x128", flops: nil) { _ = random.normal(shape: [1, 4, 128, 128]) }

            // Image codecs on a smooth 2048×2048 RGB test pattern.
            let side = 2048
            var samples = [UInt16](repeating: 0, count: side * side * 3)
            for y in 0..<side { for x in 0..<side { for c in 0..<3 {
                samples[(y * side + x) * 3 + c] = UInt16((x * (c + 1) / 9 + y / 8 + c * 40) % 256)
            } } }
            let image = try Image(width: side, height: side, layout: .rgb, bitDepth: 8, samples: samples)
            let jpeg = try JPEGEncoder.encode(image, quality: 95), png = try PNGEncoder.encode(image)
            try reportThrowing("JPEG decode 2048x2048 q95") { _ = try ImageDecoder.decode(data: jpeg, name: "bench.jpg") }
            try reportThrowing("PNG decode 2048x2048") { _ = try ImageDecoder.decode(data: png, name: "bench.png") }
            try reportThrowing("PNG encode 2048x2048") { _ = try PNGEncoder.encode(image) }
        }

        func report(_ name: String, flops: Double?, _ body: () -> Void) {
            if let only, !name.contains(only) { return }
            var best = Double.infinity
            for _ in 0..<max(1, repeats) {
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            let rate = flops.map { String(format: "%.1f", $0 / best / 1e9) } ?? "-"
            print(pad(name, 52) + pad(String(format: "%.4f", best), 10) + rate)
        }

        func reportThrowing(_ name: String, _ body: () throws -> Void) throws {
            var failure: Error?
            report(name, flops: nil) { do { try body() } catch { failure = error } }
            if let failure { throw failure }
        }

    }
}

extension Bench {
    /// The checkpoint a bench measures: the one given, else the cached random-weight SD 1.5 (created once).
    static func checkpoint(_ path: String?, float32: Bool = false, random: RandomModel = .sd15) throws -> URL {
        if let path { return URL(fileURLWithPath: path) }
        switch random {
        case .sd15: return float32 ? try BenchCheckpoint.cachedFloat32() : try BenchCheckpoint.cached()
        case .sdxl: return try BenchCheckpoint.cached(.sdxl)
        }
    }

    /// The random full-size model a bench writes and uses when no checkpoint is given.
    enum RandomModel: String, ExpressibleByArgument, CaseIterable { case sd15, sdxl }

    /// `--bf16-large-planes`: `Precision.bf16OnLargePlanesSetting` from the command line.
    enum LargePlaneChoice: String, ExpressibleByArgument {
        case measure, bf16, fp32
        func apply() { Precision.bf16OnLargePlanesSetting = switch self { case .measure: nil; case .bf16: true; case .fp32: false } }
    }

    /// Which large-plane convolution the bf16 mode ran, and why (`Precision.bf16OnLargePlanes`).
    static func largePlaneChoice() -> String {
        let name = Precision.bf16OnLargePlanes ? "bf16 F(2x2, 3x3)" : "fp32 F(4x4, 3x3)"
        guard Precision.bf16OnLargePlanesSetting == nil else { return "bf16 large planes: \(name) (set)" }
        let measured = LargePlaneMeasurement.shared
        return String(format: "bf16 large planes: %@ (measured at 256 ch, 128x128: bf16 F(2x2) %.3f s, fp32 F(4x4) %.3f s)",
                      name, measured.bf16Seconds, measured.fp32Seconds)
    }

    static func header() {
        print("OpenBLAS \(BLAS.coreName) kernels, \(BLAS.threadCount) threads (\(BLAS.configuration))")
        if let warning = BLAS.slowerThanAvailable { print("warning: \(warning)") }
        print(String(format: "sgemm peak (OpenBLAS, 2048-3072 square): %.1f GFLOP/s", sgemmPeak))
    }

    /// The best of `repeats` (at least one) timings of `body`, in seconds.
    static func bestSeconds(repeats: Int, _ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }

    /// This machine's sgemm rate on large square products (the best of three runs each of 2048² and 3072²), in
    /// GFLOP/s: printed beside every timing, since machines of one kind differ (about 190 and 430 have been seen).
    static let sgemmPeak: Double = {
        var peak = 0.0
        for size in [2048, 3072] {
            let a = Tensor(shape: [size, size], repeating: 0.01), b = Tensor(shape: [size, size], repeating: 0.02)
            let flops = 2.0 * Double(size * size * size)
            _ = a.matmul(b)
            for _ in 0..<3 {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = a.matmul(b)
                peak = max(peak, flops / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) / 1e9)
            }
        }
        return peak
    }()

    /// Runs `body` `repeats` times; prints the best time, the achieved GFLOP/s of its GEMMs and the peak RSS so far.
    static func measure(_ name: String, repeats: Int, _ body: () throws -> Void) rethrows {
        var best = Double.infinity, flops = 0.0, fresh = 0, cpu = Double.infinity
        for _ in 0..<max(1, repeats) {
            let (start, startFlops) = (DispatchTime.now().uptimeNanoseconds, BLAS.flopCount)
            let (startMissed, startCPU) = (LargeBlockCache.shared.missedBytes, processCPUSeconds())
            try body()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            flops = BLAS.flopCount - startFlops
            fresh = LargeBlockCache.shared.missedBytes - startMissed
            cpu = min(cpu, processCPUSeconds() - startCPU)
            best = min(best, seconds)
        }
        let rate = flops > 0 ? String(format: "%7.1f GFLOP/s (%.3f TFLOP)", flops / best / 1e9, flops / 1e12) : ""
        print(name.padding(toLength: 30, withPad: " ", startingAt: 0)
              + String(format: "%8.2f s  %@   peak RSS %.2f GiB, fresh blocks %.2f GiB, CPU %.2f s", best,
                       rate.padding(toLength: 32, withPad: " ", startingAt: 0), peakRSSGiB(), Double(fresh) / 1_073_741_824, cpu))
    }

    struct Model: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time each network of a checkpoint: text encoder, a guided UNet step, VAE encode and decode.",
            discussion: """
                Without a checkpoint, a full-size random-weight SD 1.5 (fp16 diffusers folder) is created once in \
                ~/.cache/darkroom/bench and used. Prints the best of --repeats runs, the GFLOP/s achieved by its \
                matrix products, and the process's peak RSS. Build with -c release.
                """)

        @Argument(help: "A .safetensors checkpoint or a diffusers folder (default: the cached random SD 1.5).")
        var checkpoint: String?

        @Flag(help: "Without a checkpoint: the random SD 1.5 with float32 weights instead of float16.")
        var float32Weights = false

        @Option(help: "Without a checkpoint: which random full-size model to write once and use (sd15, sdxl).")
        var random = RandomModel.sd15

        @Option(parsing: .upToNextOption, help: "Image sizes in pixels for the UNet step (latents are 1/8).")
        var sizes: [Int] = [512, 768]

        @Option(help: "Image size for the VAE.")
        var vaeSize = 512

        @Option(help: "Runs per stage; the best is reported.")
        var repeats = 2

        @Flag(help: "Skip the VAE.")
        var noVAE = false

        @Option(help: "3x3 convolution algorithm: automatic, im2col or winograd.")
        var convolution = ConvolutionAlgorithm.automatic

        @Option(help: "Precision of the matrix products: fp32 (OpenBLAS) or bf16 (oneDNN, fp32 accumulation).")
        var precision = Precision.fp32

        @Option(help: "Side of the smallest plane that automatic runs through Winograd F(4x4, 3x3); smaller Winograd planes run F(2x2, 3x3). 0: F(4x4, 3x3) on all of them.")
        var winogradLargeSide = 128

        @Option(help: "Side of the smallest plane that automatic runs through Winograd at all in this precision (smaller planes: im2col; default: 32 in fp32, 16 in bf16).")
        var winogradSmallestSide: Int?

        @Flag(help: "F(4x4, 3x3) with the points 0, ±1, ±2 and the kernel transform in fp32 (before issue 13, part 2).")
        var winogradIntegerPoints = false

        @Flag(help: "bf16: every Winograd convolution with fp32 products (before bf16 F(2x2, 3x3)).")
        var fp32Winograd = false

        @Flag(help: "fp32: attention's two products on OpenBLAS instead of oneDNN's f32 matmul (before).")
        var attentionOnOpenBLAS = false

        @Flag(help: "bf16: attention's e^S·V with each head's dv columns as they are, not padded to a multiple of 16 (before).")
        var unpaddedAttentionValues = false

        @Option(help: "bf16: the large planes' 3x3 convolutions as bf16 F(2x2, 3x3) (bf16), as fp32 F(4x4, 3x3) (fp32, before), or whichever a measurement at the first one finds faster (measure).")
        var bf16LargePlanes = Bench.LargePlaneChoice.measure

        func run() throws {
            bf16LargePlanes.apply()
            if fp32Winograd { Tensor.bf16WinogradTransforms = [] }
            Tensor.attentionPadsValues = !unpaddedAttentionValues
            Tensor.attentionOnOneDNN = !attentionOnOpenBLAS
            Tensor.convolutionAlgorithm = convolution
            Tensor.winogradLargePlane = winogradLargeSide * winogradLargeSide
            if let side = winogradSmallestSide {
                if precision == .bf16 { Tensor.bf16WinogradMinimumPlane = side * side } else { Tensor.winogradMinimumPlane = side * side }
            }
            if winogradIntegerPoints { Tensor.winograd = .f43IntegerFloatKernel }
            Tensor.precision = precision
            Bench.applyOpenMPThreadsOverride()
            let url = try Bench.checkpoint(checkpoint, float32: float32Weights, random: random)
            Bench.header()
            print("precision \(precision.rawValue)\(precision == .bf16 ? ", oneDNN \(OneDNN.version)" : "")")
            var models: StableDiffusionModels?
            try Bench.measure("load", repeats: 1) { models = try StableDiffusionModels.load(url) }
            guard let models else { return }
            var context = Tensor(zeros: [0])
            var added: UNetAddedConditioning?
            if let encoder = models.sdxlPromptEncoder {
                // SDXL: both towers on a prompt and an empty negative prompt, as a guided step's conditioning.
                let tokenizer = try CLIPTokenizer.bundled()
                Bench.measure("text encoders, batch 2", repeats: repeats) {
                    let prompt = encoder.encode("a photograph of a lighthouse", tokenizer: tokenizer)
                    let negative = encoder.encode("", tokenizer: tokenizer)
                    context = Tensor.concatenate([negative.promptEmbeds, prompt.promptEmbeds], axis: 0)
                    let pooled = Tensor.concatenate([negative.pooled, prompt.pooled], axis: 0)
                    let count = (models.unet.config.addedConditioning.map { ($0.inputWidth - pooled.dim(1)) / max($0.timeEmbedDim, 1) }) ?? 6
                    added = UNetAddedConditioning(textEmbeds: pooled, timeIDs: Tensor(shape: [2, count], repeating: 1024))
                }
            } else {
                let ids = Array(repeating: Array(repeating: 49407, count: 77), count: 2)
                Bench.measure("text encoder, batch 2", repeats: repeats) { context = models.textEncoder(ids) }
            }
            for size in sizes {
                let latent = size / models.vae.config.downscale
                let sample = Tensor(shape: [2, models.unet.config.inChannels, latent, latent], repeating: 0.1)
                Bench.measure("UNet step \(size)px, batch 2", repeats: repeats) {
                    _ = models.unet(sample, timesteps: [500], context: context, added: added)
                }
            }
            if !noVAE {
                let image = Tensor(shape: [1, 3, vaeSize, vaeSize], repeating: 0.1)
                var mean = Tensor(zeros: [0])
                Bench.measure("VAE encode \(vaeSize)px", repeats: repeats) { mean = models.vae.encode(image).mean }
                Bench.measure("VAE decode \(vaeSize)px", repeats: repeats) { _ = models.vae.decode(mean) }
                if precision == .bf16 { print(Bench.largePlaneChoice()) }
            }
        }
    }

    struct Job: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time a whole img2img job as the service runs it (load, prompt, VAE, UNet steps, decode).",
            discussion: "Run it in its own process: the peak RSS it prints is the job's. Build with -c release.")

        @Argument(help: "A .safetensors checkpoint or a diffusers folder (default: the cached random SD 1.5).")
        var checkpoint: String?

        @Flag(help: "Without a checkpoint: the random SD 1.5 with float32 weights instead of float16.")
        var float32Weights = false

        @Option(help: "Without a checkpoint: which random full-size model to write once and use (sd15, sdxl).")
        var random = RandomModel.sd15

        @Option(help: "Image side in pixels.")
        var size = 512

        @Option(help: "Sampler steps before strength.")
        var steps = 20

        @Option(help: "Denoising strength (20 steps at 0.5 run 10 UNet steps).")
        var strength = 0.5

        @Option(help: "Sampler.")
        var sampler = "dpmpp_2m_karras"

        @Option(help: "A LoRA to measure (a .safetensors path, or 'random': a rank-64 LoRA on every layer an LCM-LoRA patches): the time to apply it, a guided UNet step with and without it, and a few-step job with it.")
        var lora: String?

        @Option(help: "The few-step job with the LoRA: sampler, steps, strength and guidance (8 steps x 0.5 run 4 UNet steps).")
        var fewStepSampler = "lcm"
        @Option var fewSteps = 8
        @Option var fewStepStrength = 0.5
        @Option var fewStepGuidance: Float = 1

        @Option(help: "Precision of the matrix products: fp32 (OpenBLAS) or bf16 (oneDNN, fp32 accumulation).")
        var precision = Precision.fp32

        @Flag(name: .customLong("keep-unet-pages"), help: "fp32 checkpoints: keep the UNet's mapped pages resident through the loop (before issue 13) instead of handing each half back as a step passes it.")
        var keepUNetPages = false

        func run() throws {
            StableDiffusionPipeline.streamsFP32UNetPages = !keepUNetPages
            let url = try Bench.checkpoint(checkpoint, float32: float32Weights, random: random)
            Bench.header()
            print("precision \(precision.rawValue)\(precision == .bf16 ? ", oneDNN \(OneDNN.version)" : "")")
            let start = DispatchTime.now().uptimeNanoseconds
            var pipeline: StableDiffusionPipeline?
            try Bench.measure("load", repeats: 1) {
                pipeline = StableDiffusionPipeline(models: try StableDiffusionModels.load(url), tokenizer: try CLIPTokenizer.bundled())
            }
            var samples = [UInt16](repeating: 0, count: size * size * 3)
            for y in 0..<size { for x in 0..<size { for c in 0..<3 { samples[(y * size + x) * 3 + c] = UInt16((x + 2 * y + 60 * c) % 256) } } }
            let image = try Image(width: size, height: size, layout: .rgb, bitDepth: 8, samples: samples)
            var configuration = PipelineConfiguration()
            configuration.mode = .img2img
            configuration.generation.prompt = "a watercolor painting of a lighthouse on a cliff at dawn, soft light"
            configuration.generation.negativePrompt = "blurry, low quality"
            configuration.generation.steps = steps
            configuration.generation.strength = strength
            configuration.generation.sampler = sampler
            configuration.generation.seed = 1
            configuration.generation.precision = precision
            var marks: [UInt64] = []
            let runStart = DispatchTime.now().uptimeNanoseconds
            try Bench.measure("img2img \(size)px, \(steps) steps x \(strength)", repeats: 1) {
                _ = try pipeline!.run(configuration, image: image) { _, _, _ in
                    marks.append(DispatchTime.now().uptimeNanoseconds)
                    return true
                }
            }
            // Where the time went: before the first UNet step (prompt, VAE encode), the steps, after them (decode).
            if let first = marks.first, let last = marks.last {
                let runEnd = DispatchTime.now().uptimeNanoseconds
                let stepSeconds = zip(marks.dropFirst(), marks).map { Double($0 - $1) / 1e9 }
                print(String(format: "  until step 1 done %.2f s, then %d steps of %.2f s (min %.2f), after %.2f s",
                             Double(first - runStart) / 1e9, stepSeconds.count,
                             stepSeconds.isEmpty ? 0 : stepSeconds.reduce(0, +) / Double(stepSeconds.count),
                             stepSeconds.min() ?? 0, Double(runEnd - last) / 1e9))
            }
            print(String(format: "whole job (load + img2img)      %.2f s   peak RSS %.2f GiB",
                         Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, peakRSSGiB()))
            if precision == .bf16 {
                // As a job does when it ends (JobExecutor), outside the figures above.
                let hits = PackedWeightStore.totalHits, saveStart = DispatchTime.now().uptimeNanoseconds
                PackedWeightStore.saveAll()
                print(String(format: "  packed weights: %d copies read from the store%@; saved for the next process in %.2f s", hits,
                             PackedWeightStore.folder == nil ? " (no store: DARKROOM_PACKED_CACHE_GB=0)" : "",
                             Double(DispatchTime.now().uptimeNanoseconds - saveStart) / 1e9))
            }
            if let lora, let base = pipeline {
                try measureLoRA(lora, base: base, image: image, configuration: configuration)
            }
        }

        /// Applying a LoRA (open + merge), a guided UNet step with and without it, and a few-step job with it.
        func measureLoRA(_ path: String, base: StableDiffusionPipeline, image: Image, configuration: PipelineConfiguration) throws {
            let url = path == "random" ? try BenchLoRA.cached(for: base.models.checkpoint) : URL(fileURLWithPath: path)
            print("LoRA \(url.lastPathComponent)")
            var patched: StableDiffusionPipeline?
            var layers = 0
            try Bench.measure("apply LoRA (open + merge)", repeats: 2) {
                patched = nil   // as the service: the previous patched set goes before the next is built
                let lora = try LoRA.open(url, model: base.models.checkpoint)
                layers = lora.layers.count
                patched = StableDiffusionPipeline(models: try base.models.applying([(lora, 1)]), tokenizer: base.tokenizer)
            }
            guard let patched else { return }
            print("  \(layers) patched layers")
            let latent = size / base.models.vae.config.downscale
            let sample = Tensor(shape: [2, base.models.unet.config.inChannels, latent, latent], repeating: 0.1)
            let context = base.models.textEncoder(Array(repeating: Array(repeating: 49407, count: 77), count: 2))
            for (label, models) in [("UNet step, base", base.models), ("UNet step, with LoRA", patched.models), ("UNet step, base again", base.models)] {
                Bench.measure("\(label) \(size)px b2", repeats: 2) { _ = models.unet(sample, timesteps: [500], context: context) }
            }
            var few = configuration
            few.generation.sampler = fewStepSampler
            few.generation.steps = fewSteps
            few.generation.strength = fewStepStrength
            few.generation.guidance = fewStepGuidance
            try Bench.measure("img2img \(fewStepSampler) \(fewSteps) x \(fewStepStrength) cfg \(fewStepGuidance) + LoRA", repeats: 1) {
                _ = try patched.run(few, image: image)
            }
        }
    }
}

final class BenchOwner {}

/// Peak resident set size of this process (VmHWM), in GiB.
/// CPU seconds (user + system) of the whole process so far: on a shared VM, where other guests steal time, a
/// stage's CPU seconds move less from run to run than its wall time.
func processCPUSeconds() -> Double {
    var usage = rusage()
    guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func peakRSSGiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return 0 }
    return kb / 1024 / 1024
}

extension ConvolutionAlgorithm: ExpressibleByArgument {}
