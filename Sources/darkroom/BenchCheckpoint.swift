import DarkroomTensor
import DarkroomWeights
import Foundation

/// A full-size Stable Diffusion 1.5 checkpoint with random weights, written as a diffusers folder (fp16) by
/// Darkroom's own safetensors writer, for `darkroom bench`. Timings do not depend on weight values, only on the
/// shapes, which are SD 1.5's: UNet 320/640/1280/1280 with 8 heads and 768-wide context, VAE 128/256/512/512, CLIP
/// ViT-L/14 (12 layers, width 768). Loading it back through Darkroom's loader checks every name and shape.
///
/// Values are drawn so activations stay in a normal range (no overflow, no denormals, which would distort
/// timings): matrices and kernels ~ N(0, 1/fan_in), norm scales 1, biases 0.
enum BenchCheckpoint {
    /// The cache folder (outside any repository): `$XDG_CACHE_HOME/darkroom/bench`, else `~/.cache/darkroom/bench`;
    /// this is the SD 1.5 checkpoint's folder inside it.
    static var cacheFolder: URL { cacheFolder(.sd15) }

    static func cacheFolder(_ architecture: Architecture) -> URL {
        let base = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return base.appendingPathComponent("darkroom/bench/\(architecture.folderName)")
    }

    /// The cached checkpoint, created on first use.
    static func cached(_ architecture: Architecture = .sd15) throws -> URL {
        let folder = cacheFolder(architecture)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) { return folder }
        try create(at: folder, architecture: architecture)
        return folder
    }

    /// The same checkpoint with float32 weights (as `v1-5-pruned-emaonly.safetensors` and many shared files
    /// are), converted once from the fp16 one into `sd15-random-fp32`.
    static func cachedFloat32() throws -> URL {
        let folder = cacheFolder.deletingLastPathComponent().appendingPathComponent("sd15-random-fp32")
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("model_index.json").path) { return folder }
        let source = try cached()
        print("converting the random SD 1.5 to float32 at \(folder.path) …")
        let staging = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent)-\(getpid())")
        try? FileManager.default.removeItem(at: staging)
        try FileManager.default.copyItem(at: source, to: staging)
        for component in ["unet", "vae", "text_encoder"] {
            let sub = staging.appendingPathComponent(component)
            for name in try FileManager.default.contentsOfDirectory(atPath: sub.path) where name.hasSuffix(".safetensors") {
                let url = sub.appendingPathComponent(name)
                let file = try SafetensorsFile(url: url)
                var writer = SafetensorsWriter()
                for tensor in file.tensorNames {
                    try writer.add(tensor, shape: try file.info(tensor).shape, floats: try file.floats(tensor), as: .f32)
                }
                try writer.write(to: url.appendingPathExtension("tmp"))
                try FileManager.default.removeItem(at: url)
                try FileManager.default.moveItem(at: url.appendingPathExtension("tmp"), to: url)
            }
        }
        try FileManager.default.moveItem(at: staging, to: folder)
        return folder
    }

    /// (name, shape) of every parameter of one component, in diffusers naming.
    typealias Parameters = [(name: String, shape: [Int])]

    static func create(at folder: URL, architecture: Architecture = .sd15) throws {
        let start = Date()
        print("creating a random-weight \(architecture.name) checkpoint (diffusers folder, fp16) at \(folder.path) …")
        let staging = folder.deletingLastPathComponent().appendingPathComponent(".\(folder.lastPathComponent)-\(getpid())")
        try? FileManager.default.removeItem(at: staging)
        var random = SplitMix64(seed: 20261125)
        var components: [(String, () -> Parameters, [String: Any], String)] = [
            ("unet", { unetParameters(architecture) }, architecture.unetConfig, "diffusion_pytorch_model.safetensors"),
            ("vae", { vaeParameters() }, architecture.vaeConfig, "diffusion_pytorch_model.safetensors"),
        ]
        for encoder in architecture.textEncoders {
            components.append((encoder.folder, { textEncoderParameters(encoder) }, encoder.config, "model.safetensors"))
        }
        for (component, parameters, config, file) in components {
            var writer = SafetensorsWriter()
            for (name, shape) in parameters() {
                try writer.add(name, shape: shape, floats: randomValues(name: name, shape: shape, random: &random), as: .f16)
            }
            let sub = staging.appendingPathComponent(component)
            try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
            try writer.write(to: sub.appendingPathComponent(file))
            try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
                .write(to: sub.appendingPathComponent("config.json"))
        }
        let scheduler = staging.appendingPathComponent("scheduler")
        try FileManager.default.createDirectory(at: scheduler, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: architecture.schedulerConfig, options: [.prettyPrinted, .sortedKeys])
            .write(to: scheduler.appendingPathComponent("scheduler_config.json"))
        try JSONSerialization.data(withJSONObject: architecture.modelIndex, options: [.prettyPrinted, .sortedKeys])
            .write(to: staging.appendingPathComponent("model_index.json"))
        try FileManager.default.createDirectory(at: folder.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.moveItem(at: staging, to: folder)
        print(String(format: "created in %.1f s", Date().timeIntervalSince(start)))
    }

    static func randomValues(name: String, shape: [Int], random: inout SplitMix64) -> [Float] {
        let count = shape.reduce(1, *)
        let isNormScale = name.hasSuffix(".weight") && shape.count == 1
        if isNormScale { return [Float](repeating: 1, count: count) }
        if shape.count == 1 { return [Float](repeating: 0, count: count) }  // biases
        let fanIn = name.contains("embedding") ? 1 : shape.dropFirst().reduce(1, *)
        let scale = Float(1 / Double(fanIn).squareRoot())
        return (0..<count).map { _ in random.normal() * scale }
    }

    // MARK: - Architecture (diffusers names)

    static let unetChannels = [320, 640, 1280, 1280], layersPerBlock = 2, context = 768

    static func resnet(_ p: String, in cin: Int, out cout: Int, time: Int?) -> Parameters {
        var list: Parameters = [("\(p).norm1.weight", [cin]), ("\(p).norm1.bias", [cin]),
                                ("\(p).conv1.weight", [cout, cin, 3, 3]), ("\(p).conv1.bias", [cout])]
        if let time { list += [("\(p).time_emb_proj.weight", [cout, time]), ("\(p).time_emb_proj.bias", [cout])] }
        list += [("\(p).norm2.weight", [cout]), ("\(p).norm2.bias", [cout]),
                 ("\(p).conv2.weight", [cout, cout, 3, 3]), ("\(p).conv2.bias", [cout])]
        if cin != cout { list += [("\(p).conv_shortcut.weight", [cout, cin, 1, 1]), ("\(p).conv_shortcut.bias", [cout])] }
        return list
    }

    static func linear(_ p: String, in i: Int, out o: Int, bias: Bool = true) -> Parameters {
        [("\(p).weight", [o, i])] + (bias ? [("\(p).bias", [o])] : [])
    }

    static func norm(_ p: String, _ c: Int) -> Parameters { [("\(p).weight", [c]), ("\(p).bias", [c])] }

    static func conv(_ p: String, in i: Int, out o: Int, kernel: Int) -> Parameters {
        [("\(p).weight", [o, i, kernel, kernel]), ("\(p).bias", [o])]
    }

    /// Transformer2DModel: conv (SD 1.x) or linear (SD 2.x, SDXL) projections around `depth` BasicTransformerBlocks.
    static func transformer(_ p: String, _ c: Int, depth: Int = 1, linearProjection: Bool = false, context: Int = context) -> Parameters {
        func projection(_ name: String) -> Parameters {
            linearProjection ? linear(name, in: c, out: c) : conv(name, in: c, out: c, kernel: 1)
        }
        var list = norm("\(p).norm", c) + projection("\(p).proj_in")
        for index in 0..<depth {
            let b = "\(p).transformer_blocks.\(index)"
            list += norm("\(b).norm1", c) + linear("\(b).attn1.to_q", in: c, out: c, bias: false)
                + linear("\(b).attn1.to_k", in: c, out: c, bias: false) + linear("\(b).attn1.to_v", in: c, out: c, bias: false)
                + linear("\(b).attn1.to_out.0", in: c, out: c)
                + norm("\(b).norm2", c) + linear("\(b).attn2.to_q", in: c, out: c, bias: false)
                + linear("\(b).attn2.to_k", in: context, out: c, bias: false) + linear("\(b).attn2.to_v", in: context, out: c, bias: false)
                + linear("\(b).attn2.to_out.0", in: c, out: c)
                + norm("\(b).norm3", c) + linear("\(b).ff.net.0.proj", in: c, out: 8 * c) + linear("\(b).ff.net.2", in: 4 * c, out: c)
        }
        return list + projection("\(p).proj_out")
    }

    static func unetParameters(_ architecture: Architecture = .sd15) -> Parameters {
        let ch = architecture.unetChannels, levels = ch.count, depth = architecture.transformerDepth
        let layersPerBlock = architecture.layersPerBlock, timeWidth = 4 * ch[0]
        func attention(_ p: String, _ c: Int, _ depth: Int) -> Parameters {
            transformer(p, c, depth: depth, linearProjection: architecture.linearProjection, context: architecture.context)
        }
        var list = conv("conv_in", in: 4, out: ch[0], kernel: 3)
            + linear("time_embedding.linear_1", in: ch[0], out: timeWidth) + linear("time_embedding.linear_2", in: timeWidth, out: timeWidth)
        if let added = architecture.addedConditioning {
            list += linear("add_embedding.linear_1", in: added.input, out: timeWidth) + linear("add_embedding.linear_2", in: timeWidth, out: timeWidth)
        }
        var cin = ch[0]
        for (i, c) in ch.enumerated() {
            for j in 0..<layersPerBlock {
                list += resnet("down_blocks.\(i).resnets.\(j)", in: j == 0 ? cin : c, out: c, time: timeWidth)
                if depth[i] > 0 { list += attention("down_blocks.\(i).attentions.\(j)", c, depth[i]) }
            }
            if i < levels - 1 { list += conv("down_blocks.\(i).downsamplers.0.conv", in: c, out: c, kernel: 3) }
            cin = c
        }
        let mid = ch[levels - 1]
        list += resnet("mid_block.resnets.0", in: mid, out: mid, time: timeWidth) + attention("mid_block.attentions.0", mid, max(depth[levels - 1], 1))
            + resnet("mid_block.resnets.1", in: mid, out: mid, time: timeWidth)
        let reversed = Array(ch.reversed()), reversedDepth = Array(depth.reversed())
        var previous = reversed[0]
        for (i, c) in reversed.enumerated() {
            let input = reversed[min(i + 1, levels - 1)]
            for j in 0...layersPerBlock {
                let skip = j == layersPerBlock ? input : c
                list += resnet("up_blocks.\(i).resnets.\(j)", in: (j == 0 ? previous : c) + skip, out: c, time: timeWidth)
                if reversedDepth[i] > 0 { list += attention("up_blocks.\(i).attentions.\(j)", c, reversedDepth[i]) }
            }
            if i < levels - 1 { list += conv("up_blocks.\(i).upsamplers.0.conv", in: c, out: c, kernel: 3) }
            previous = c
        }
        return list + norm("conv_norm_out", ch[0]) + conv("conv_out", in: ch[0], out: 4, kernel: 3)
    }

    static func vaeParameters() -> Parameters {
        let ch = [128, 256, 512, 512], levels = ch.count, top = ch[levels - 1]
        func mid(_ p: String) -> Parameters {
            resnet("\(p).resnets.0", in: top, out: top, time: nil) + norm("\(p).attentions.0.group_norm", top)
                + linear("\(p).attentions.0.to_q", in: top, out: top) + linear("\(p).attentions.0.to_k", in: top, out: top)
                + linear("\(p).attentions.0.to_v", in: top, out: top) + linear("\(p).attentions.0.to_out.0", in: top, out: top)
                + resnet("\(p).resnets.1", in: top, out: top, time: nil)
        }
        var list = conv("encoder.conv_in", in: 3, out: ch[0], kernel: 3)
        var cin = ch[0]
        for (i, c) in ch.enumerated() {
            for j in 0..<layersPerBlock { list += resnet("encoder.down_blocks.\(i).resnets.\(j)", in: j == 0 ? cin : c, out: c, time: nil) }
            if i < levels - 1 { list += conv("encoder.down_blocks.\(i).downsamplers.0.conv", in: c, out: c, kernel: 3) }
            cin = c
        }
        list += mid("encoder.mid_block") + norm("encoder.conv_norm_out", top) + conv("encoder.conv_out", in: top, out: 8, kernel: 3)
        list += conv("quant_conv", in: 8, out: 8, kernel: 1) + conv("post_quant_conv", in: 4, out: 4, kernel: 1)
        list += conv("decoder.conv_in", in: 4, out: top, kernel: 3) + mid("decoder.mid_block")
        cin = top
        for (i, c) in ch.reversed().enumerated() {
            for j in 0...layersPerBlock { list += resnet("decoder.up_blocks.\(i).resnets.\(j)", in: j == 0 ? cin : c, out: c, time: nil) }
            if i < levels - 1 { list += conv("decoder.up_blocks.\(i).upsamplers.0.conv", in: c, out: c, kernel: 3) }
            cin = c
        }
        return list + norm("decoder.conv_norm_out", ch[0]) + conv("decoder.conv_out", in: ch[0], out: 3, kernel: 3)
    }

    static func textEncoderParameters(_ shape: TextEncoderShape = .clipL) -> Parameters {
        let width = shape.width
        var list: Parameters = [("text_model.embeddings.token_embedding.weight", [49408, width]),
                                ("text_model.embeddings.position_embedding.weight", [77, width])]
        for i in 0..<shape.layers {
            let p = "text_model.encoder.layers.\(i)"
            list += norm("\(p).layer_norm1", width)
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] { list += linear("\(p).self_attn.\(projection)", in: width, out: width) }
            list += norm("\(p).layer_norm2", width) + linear("\(p).mlp.fc1", in: width, out: shape.inner)
                + linear("\(p).mlp.fc2", in: shape.inner, out: width)
        }
        list += norm("text_model.final_layer_norm", width)
        if let projection = shape.projection { list += linear("text_projection", in: width, out: projection, bias: false) }
        return list
    }

    // MARK: - Configs (diffusers' SD 1.5 values)

    static var unetConfig: [String: Any] { Architecture.sd15.unetConfig }
    static var sd15UNetConfig: [String: Any] { [
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": unetChannels, "center_input_sample": false, "cross_attention_dim": context,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": layersPerBlock,
        "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "use_linear_projection": false,
    ] }
    static var vaeConfig: [String: Any] { [
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": Array(repeating: "DownEncoderBlock2D", count: 4), "in_channels": 3, "latent_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512, "scaling_factor": 0.18215,
        "up_block_types": Array(repeating: "UpDecoderBlock2D", count: 4),
    ] }
    static var clipLConfig: [String: Any] { [
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "hidden_act": "quick_gelu", "hidden_size": 768,
        "intermediate_size": 3072, "layer_norm_eps": 1e-5, "max_position_embeddings": 77, "num_attention_heads": 12,
        "num_hidden_layers": 12, "vocab_size": 49408, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 1,
        "projection_dim": 768, "torch_dtype": "float16",
    ] }
    static var sd15SchedulerConfig: [String: Any] { [
        "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
        "steps_offset": 1,
    ] }
    static var sd15ModelIndex: [String: Any] { [
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "scheduler": ["diffusers", "PNDMScheduler"],
    ] }
}

