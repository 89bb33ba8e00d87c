import DarkroomWeights
import Foundation

extension StableDiffusionModels {
    /// Loads the ControlNet at `url` (a diffusers `ControlNetModel` folder, or a single file with LDM `control_model.*`
    /// or diffusers keys; see `Checkpoint.openControlNet`) for these models, and checks that it fits their UNet.
    ///
    /// Sizes come from the tensors. Head counts, which tensors do not show, come from the folder's `config.json`
    /// (`num_attention_heads` / `attention_head_dim`), else from this checkpoint's UNet, whose encoder the ControlNet
    /// copies. `global_pool_conditions` and `controlnet_conditioning_channel_order` come from `config.json`, or
    /// `global_average_pooling` from the `.yaml` beside a single file.
    ///
    /// - Throws: `WeightsError.controlNetMismatch` naming the file and the model when the ControlNet's cross-attention
    ///   width (another family), its skip-connection widths, its latent channels or its embedding's downscale differ
    ///   from what the UNet and VAE need; the loader's errors for unreadable files.
    public func loadControlNet(_ url: URL) throws -> ControlNetModel {
        let source = try Checkpoint.openControlNet(url)
        let w = WeightScope(source, prefix: "controlnet")
        let configURL = url.appendingPathComponent("config.json")
        let json = source.layout == .diffusers ? try Checkpoint.jsonObject(configURL) : nil
        let heads = AttentionHeads(diffusersConfig: json) ?? .perLevel(unet.config.levels.map(\.heads))
        var config = try ControlNetConfig.detect(from: w, heads: heads,
                                                 contextDim: (json?["cross_attention_dim"] as? Int) ?? unet.config.contextDim)
        config.unet.flipSinToCos = (json?["flip_sin_to_cos"] as? Bool) ?? unet.config.flipSinToCos
        config.unet.frequencyShift = (json?["freq_shift"] as? Double).map { Float($0) } ?? unet.config.frequencyShift
        try config.unet.checkHeads(source: AttentionHeads(diffusersConfig: json) != nil
            ? configURL.path + " (num_attention_heads / attention_head_dim)" : "the heads of the model's UNet")
        if let pool = json?["global_pool_conditions"] as? Bool {
            config.globalPoolConditions = pool
        } else if let yamlURL = source.sidecarYAML {
            config.globalPoolConditions = try LDMYAML(contentsOf: yamlURL).string("global_average_pooling")?.lowercased() == "true"
        }
        if let order = json?["controlnet_conditioning_channel_order"] as? String {
            guard order == "rgb" || order == "bgr" else {
                throw WeightsError.invalidConfig(path: configURL.path, detail: "controlnet_conditioning_channel_order '\(order)' is not rgb or bgr")
            }
            config.bgrChannelOrder = order == "bgr"
        }
        try checkFit(config, url: url, scope: w)
        if let ours = unet.config.addedConditioning {
            // SDXL: the ControlNet gets the UNet's text_embeds and time_ids, so its add_embedding must take them.
            try config.unet.detectAddedConditioning(
                from: w, configured: (json?["addition_time_embed_dim"] as? Int) ?? ours.timeEmbedDim, pooledWidth: nil,
                timeIDCount: nil, source: json != nil ? configURL.path : url.path)
            if let theirs = config.unet.addedConditioning, theirs != ours {
                throw WeightsError.controlNetMismatch(
                    path: url.path, model: checkpoint.sourceName,
                    detail: "its added conditioning takes \(theirs.inputWidth) inputs with \(theirs.timeEmbedDim)-wide time ids (\(w.key("add_embedding.linear_1.weight")), addition_time_embed_dim) but the model's UNet takes \(ours.inputWidth) with \(ours.timeEmbedDim)")
            }
        }
        return try ControlNetModel(w, config: config)
    }

    /// The ControlNet's residuals must land on this UNet's skip connections, and it must read the VAE's latents.
    func checkFit(_ config: ControlNetConfig, url: URL, scope w: WeightScope) throws {
        func mismatch(_ detail: String) -> WeightsError {
            WeightsError.controlNetMismatch(path: url.path, model: checkpoint.sourceName, detail: detail)
        }
        func family(_ width: Int) -> String { width == 768 ? " (SD 1.x)" : width == 1024 ? " (SD 2.x)" : width == 2048 ? " (SDXL)" : "" }
        let ours = unet.config, theirs = config.unet
        if theirs.contextDim != ours.contextDim {
            let key = w.firstKey(matchingSuffix: "attn2.to_k.weight") ?? w.key("…attn2.to_k.weight")
            throw mismatch("its cross-attention takes \(theirs.contextDim)-wide text embeddings\(family(theirs.contextDim)) (\(key)) but the model's UNet takes \(ours.contextDim)\(family(ours.contextDim)): it is a ControlNet for another model family")
        }
        let addedKey = w.key("add_embedding.linear_1.weight")
        if w.has("add_embedding.linear_1.weight") != (ours.addedConditioning != nil) {
            throw mismatch(ours.addedConditioning == nil
                ? "it has SDXL's added conditioning (\(addedKey): pooled text and size ids) but the model's UNet (\(checkpoint.family.name)) has none: it is a ControlNet for SDXL"
                : "it has no added conditioning (no \(addedKey)) but the model's UNet (\(checkpoint.family.name)) needs text_embeds and time_ids: it is a ControlNet for SD 1.x/2.x")
        }
        let want = ControlNetConfig.skipChannels(ours), have = ControlNetConfig.skipChannels(theirs)
        if want != have {
            throw mismatch("its encoder's skip connections have \(have) channels (\(w.key("down_blocks.*.resnets.0.conv1.weight"))) but the model's UNet has \(want): it was made from another UNet")
        }
        let latent = vae.config.latentChannels
        if theirs.inChannels != latent {
            throw mismatch("it takes \(theirs.inChannels)-channel latents (\(w.key("conv_in.weight"))) but the model's VAE makes \(latent)")
        }
        if config.embeddingDownscale != vae.config.downscale {
            throw mismatch("its conditioning embedding shrinks the control image \(config.embeddingDownscale)× (\(config.embeddingChannels.count - 1) stride-2 convolutions under \(w.key("controlnet_cond_embedding.blocks"))) but the latents are \(vae.config.downscale)× smaller than the image")
        }
    }
}
