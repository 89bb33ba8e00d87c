import DarkroomTensor
import DarkroomWeights

extension CLIPTextModel {
    /// The same text encoder with its transformer layers read from `w` (embeddings and final norm kept: no
    /// second copy of the token table).
    func replacingLayers(_ w: WeightScope) throws -> CLIPTextModel {
        var copy = self
        copy.layers = try (0..<config.layers).map { try CLIPEncoderLayer(w["encoder.layers.\($0)"], config: config) }
        return copy
    }
}

extension StableDiffusionModels {
    /// These models with `loras` applied (`W + Σ multiplier · ΔW` on the weights they patch; see `LoRA`). The
    /// receiver is left as it is: the next job without these LoRAs runs on exactly the original weights. Only
    /// the patched layers get new memory; every other weight is shared with the receiver. The VAE is never
    /// patched (LoRA files name the UNet and text encoders only).
    public func applying(_ loras: [(lora: LoRA, multiplier: Float)]) throws -> StableDiffusionModels {
        try applying(loras.map { ($0.lora, LoRA.Weighting($0.multiplier)) })
    }

    /// `applying` with separate text-encoder and UNet multipliers per LoRA (A1111's `<lora:name:te:unet>`).
    public func applying(_ loras: [(lora: LoRA, weighting: LoRA.Weighting)]) throws -> StableDiffusionModels {
        let patches = try LoRA.patchedWeights(loras, base: checkpoint)
        guard !patches.isEmpty else { return self }
        let source = PatchedTensorSource(base: checkpoint, patches: patches)
        var models = self
        if patches.keys.contains(where: { $0.hasPrefix("unet.") }) {
            models.unet = try UNet2DConditionModel(WeightScope(source, prefix: "unet"), config: unet.config)
        }
        // Each of the family's text encoders (SDXL: `text_encoder` and `text_encoder_2`) whose weights a LoRA patches.
        func patched(_ model: CLIPTextModel, component: String) throws -> CLIPTextModel {
            let text = patches.keys.filter { $0.hasPrefix(component + ".") }
            guard !text.isEmpty else { return model }
            let scope = WeightScope(source, prefix: "\(component).text_model")
            return text.allSatisfy({ $0.hasPrefix("\(component).text_model.encoder.layers.") })
                ? try model.replacingLayers(scope)
                : try CLIPTextModel(scope, config: model.config,
                                    projection: model.textProjection == nil ? nil : WeightScope(source, prefix: "\(component).text_projection"))
        }
        let components = checkpoint.family.textEncoders.map(\.component)
        models.textEncoder = try patched(textEncoder, component: components[0])
        if let second = textEncoder2, components.count > 1 {
            models.textEncoder2 = try patched(second, component: components[1])
        }
        // The replaced weights' mapped pages are not read by the patched models: out of the resident set until
        // a job without the LoRA reads them again (from the page cache).
        checkpoint.dropResidentPages(keys: patches.keys)
        return models
    }
}
