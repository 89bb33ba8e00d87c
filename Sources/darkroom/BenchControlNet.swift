import ArgumentParser
import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights
import Foundation

/// A full-size SD 1.5 ControlNet with random weights (diffusers folder, fp16), for `darkroom bench controlnet`: the
/// random SD 1.5's encoder (`BenchCheckpoint.unetParameters` without the up blocks) plus SD's conditioning embedding
/// (16, 32, 96, 256) and the 13 zero convolutions, as `ControlNetModel.from_unet` makes them. Cached beside the bench
/// checkpoint; never committed.
enum BenchControlNet {
    static let embeddingChannels = [16, 32, 96, 256]

    static func cached() throws -> URL {
        let folder = BenchCheckpoint.cacheFolder.deletingLastPathComponent().appendingPathComponent("controlnet-sd15-random-fp16")
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path) { return folder }
        print("creating a random-weight SD 1.5 ControlNet (diffusers folder, fp16) at \(folder.path) …")
        let staging = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent)-\(getpid())")
        try? FileManager.default.removeItem(at: staging)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        var writer = SafetensorsWriter()
        var random = SplitMix64(seed: 20261203)
        for (name, shape) in parameters() {
            try writer.add(name, shape: shape, floats: BenchCheckpoint.randomValues(name: name, shape: shape, random: &random), as: .f16)
        }
        try writer.write(to: staging.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        var config = BenchCheckpoint.unetConfig
        config["_class_name"] = "ControlNetModel"
        config["conditioning_embedding_out_channels"] = embeddingChannels
        config["conditioning_channels"] = 3
        config["controlnet_conditioning_channel_order"] = "rgb"
        config["global_pool_conditions"] = false
        for key in ["up_block_types", "out_channels", "sample_size", "center_input_sample"] { config.removeValue(forKey: key) }
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(to: staging.appendingPathComponent("config.json"))
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.moveItem(at: staging, to: folder)
        return folder
    }

    static func parameters() -> BenchCheckpoint.Parameters {
        let encoder = BenchCheckpoint.unetParameters().filter {
            !$0.name.hasPrefix("up_blocks.") && !$0.name.hasPrefix("conv_norm_out.") && !$0.name.hasPrefix("conv_out.")
        }
        let e = embeddingChannels
        var list = BenchCheckpoint.conv("controlnet_cond_embedding.conv_in", in: 3, out: e[0], kernel: 3)
        for k in 0..<(e.count - 1) {
            list += BenchCheckpoint.conv("controlnet_cond_embedding.blocks.\(2 * k)", in: e[k], out: e[k], kernel: 3)
            list += BenchCheckpoint.conv("controlnet_cond_embedding.blocks.\(2 * k + 1)", in: e[k], out: e[k + 1], kernel: 3)
        }
        let ch = BenchCheckpoint.unetChannels
        list += BenchCheckpoint.conv("controlnet_cond_embedding.conv_out", in: e[e.count - 1], out: ch[0], kernel: 3)
        var skips = [ch[0]]
        for (i, c) in ch.enumerated() { skips += Array(repeating: c, count: BenchCheckpoint.layersPerBlock + (i == ch.count - 1 ? 0 : 1)) }
        for (i, c) in skips.enumerated() { list += BenchCheckpoint.conv("controlnet_down_blocks.\(i)", in: c, out: c, kernel: 1) }
        return encoder + list + BenchCheckpoint.conv("controlnet_mid_block", in: ch[ch.count - 1], out: ch[ch.count - 1], kernel: 1)
    }
}

extension Bench {
    struct ControlNet: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "controlnet",
            abstract: "Time one ControlNet unit per guided step against the bare UNet step, in the same run.",
            discussion: """
                Without arguments: the cached full-size random SD 1.5 and a full-size random SD 1.5 ControlNet (created \
                once in ~/.cache/darkroom/bench). The bare step and the step with the unit are timed alternately, the best \
                of --repeats each, so both see the same machine state. Build with -c release.
                """)

        @Argument(help: "A .safetensors checkpoint or a diffusers folder (default: the cached random SD 1.5).")
        var checkpoint: String?

        @Option(help: "A ControlNet file or folder (default: the cached random SD 1.5 ControlNet).")
        var controlnet: String?

        @Option(help: "Image side in pixels (latents are 1/8).")
        var size = 512

        @Option(help: "Runs of each; the best is reported.")
        var repeats = 3

        @Flag(help: "Instead: a whole tile restoration job (restore, tile_resample unit, 20 steps x 0.5, DPM++ 2M Karras) in this process; its time and peak RSS.")
        var restoreJob = false

        func run() throws {
            let url = try Bench.checkpoint(checkpoint)
            Bench.header()   // with the sgemm peak
            var loaded: StableDiffusionModels?
            try Bench.measure("load checkpoint", repeats: 1) { loaded = try StableDiffusionModels.load(url) }
            guard let models = loaded else { return }
            let controlURL = try controlnet.map { URL(fileURLWithPath: $0) } ?? BenchControlNet.cached()
            var unit: ControlNetModel?
            try Bench.measure("load ControlNet", repeats: 1) { unit = try models.loadControlNet(controlURL) }
            guard let unit else { return }
            if restoreJob { return try tileRestoration(models, unit) }

            let ids = Array(repeating: Array(repeating: 49407, count: 77), count: 2)
            let context = models.textEncoder(ids)
            let latent = size / models.vae.config.downscale
            let sample = Tensor(shape: [2, models.unet.config.inChannels, latent, latent], repeating: 0.1)
            var samples = [Float](repeating: 0, count: 3 * size * size)
            for i in samples.indices { samples[i] = Float((i * 7919) % 256) / 255 }
            let image = Tensor(shape: [1, 3, size, size], scalars: samples)
            var embedding = Tensor(zeros: [0])
            Bench.measure("control image embedding", repeats: repeats) { embedding = unit.embed(image) }   // once a job

            // Alternate the two so that both see the same machine state (other processes, thermal).
            var bare = Double.infinity, controlled = Double.infinity, controlOnly = Double.infinity
            var unetFlops = 0.0, controlFlops = 0.0
            for _ in 0..<max(1, repeats) {
                var flops = BLAS.flopCount
                bare = min(bare, Self.seconds { _ = models.unet(sample, timesteps: [500], context: context) })
                unetFlops = BLAS.flopCount - flops
                controlled = min(controlled, Self.seconds {
                    let start = DispatchTime.now().uptimeNanoseconds
                    flops = BLAS.flopCount
                    let residuals = unit(sample, timesteps: [500], context: context, embedding: embedding)
                    controlFlops = BLAS.flopCount - flops
                    controlOnly = min(controlOnly, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                    _ = models.unet(sample, timesteps: [500], context: context, residuals: residuals)
                })
            }
            // The work, independent of what else runs on the machine: the GEMM FLOPs of each.
            print(String(format: "GEMM work: UNet step %.3f TFLOP, ControlNet %.3f TFLOP (%.2fx the UNet's)",
                         unetFlops / 1e12, controlFlops / 1e12, controlFlops / max(unetFlops, 1)))
            print(String(format: "guided UNet step %dpx, batch 2:            %6.2f s", size, bare))
            print(String(format: "the same step with one ControlNet unit:     %6.2f s  (the ControlNet alone %.2f s)", controlled, controlOnly))
            // With other processes on the cores the two bests can come from different moments; 1 + ControlNet / bare
            // step is the estimate that does not depend on the UNet's two timings agreeing.
            print(String(format: "ratio: %.2fx the bare step measured, %.2fx as 1 + ControlNet / bare step (goal <= 1.5x)   peak RSS %.2f GiB",
                         controlled / bare, 1 + controlOnly / bare, peakRSSGiB()))
        }

        /// A restoration of a size×size photo with the tile unit, as the service runs it (peak RSS: the process's).
        func tileRestoration(_ models: StableDiffusionModels, _ unit: ControlNetModel) throws {
            let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
            var samples = [UInt16](repeating: 0, count: size * size * 3)
            for y in 0..<size { for x in 0..<size { for c in 0..<3 { samples[(y * size + x) * 3 + c] = UInt16((x + 2 * y + 60 * c) % 256) } } }
            let image = try Image(width: size, height: size, layout: .rgb, bitDepth: 8, samples: samples)
            var configuration = PipelineConfiguration()
            configuration.mode = .restore
            configuration.generation.prompt = PipelineConfiguration.restorationPrompt
            configuration.generation.negativePrompt = PipelineConfiguration.restorationNegativePrompt
            configuration.generation.strength = PipelineConfiguration.tileRestorationStrength
            configuration.generation.seed = 1
            let request = ControlNetRequest(model: unit, preprocessor: .tileResample(downSamplingRate: 1))
            try Bench.measure("tile restoration \(size)px, 20 steps x 0.5", repeats: 1) {
                _ = try pipeline.run(configuration, image: image, controlNets: [request])
            }
        }

        static func seconds(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
    }
}
