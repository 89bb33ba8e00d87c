/// Where a LoRA file's module names point in a model: the one place that maps LoRA names to canonical
/// (diffusers) weight keys, one module at a time.
///
/// - kohya-ss / A1111 (`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`): the module's
///   diffusers path with dots written as underscores, after a component prefix. Underscores are ambiguous
///   (`to_q`, `transformer_blocks`), so the names are matched against the model's own keys written the same
///   way, as A1111 (`extensions-builtin/Lora/networks.py`, `network_layer_mapping`) and ComfyUI
///   (`comfy/lora.py::model_lora_keys_unet`) do.
/// - kohya-ss with original LDM names (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`, as its SDXL
///   LoRAs are written): the module's LDM path (`LDMKeyMap.originalUNetNames`), underscored the same way.
/// - diffusers / PEFT (`unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`): the canonical path.
///
/// The prefixes are data, per component, so another family (SDXL's `lora_te1_`/`lora_te2_` and
/// `text_encoder_2.`) adds rows, not code.
public struct LoRAKeyMap: Sendable {
    /// kohya-ss prefix → canonical component.
    public static let kohyaPrefixes: [(prefix: String, component: String)] = [
        ("lora_unet_", "unet"), ("lora_te_", "text_encoder"), ("lora_te1_", "text_encoder"), ("lora_te2_", "text_encoder_2"),
    ]
    /// Components a diffusers/PEFT LoRA may name (the model must have them).
    public static let components = ["unet", "text_encoder", "text_encoder_2"]

    /// kohya name (prefix + underscored path) → canonical weight key, for every weight of the model.
    private let kohya: [String: String]
    private let canonical: Set<String>

    /// Builds the map from the model's canonical keys (`Checkpoint.keys`).
    public init(modelKeys: [String]) {
        var kohya: [String: String] = [:]
        var canonical = Set<String>()
        for key in modelKeys where key.hasSuffix(".weight") {
            canonical.insert(key)
            let module = key.dropLast(".weight".count)
            guard let dot = module.firstIndex(of: ".") else { continue }
            let component = String(module[..<dot])
            let path = module[module.index(after: dot)...].replacingOccurrences(of: ".", with: "_")
            for (prefix, target) in Self.kohyaPrefixes where target == component {
                kohya[prefix + path] = key
            }
        }
        // kohya-ss's SDXL LoRAs (and some SD 1.x ones) name UNet modules by their original LDM names.
        let unetModules = canonical.compactMap { key -> String? in
            key.hasPrefix("unet.") ? String(key.dropFirst("unet.".count).dropLast(".weight".count)) : nil
        }
        for (module, original) in LDMKeyMap.originalUNetNames(of: unetModules) {
            kohya["lora_unet_" + original.replacingOccurrences(of: ".", with: "_")] = "unet." + module + ".weight"
        }
        self.kohya = kohya
        self.canonical = canonical
    }

    /// The canonical weight key that `module` (a LoRA file's module name, without its `.lora_down.weight`-style
    /// suffix) patches, or nil when it names nothing in this model.
    public func target(of module: String) -> String? {
        if module.hasPrefix("lora_") { return kohya[module] }
        // PEFT files saved from a bare model may carry peft's own wrapper prefix.
        let path = module.hasPrefix("base_model.model.") ? String(module.dropFirst("base_model.model.".count)) : module
        guard let component = path.split(separator: ".").first, Self.components.contains(String(component)) else { return nil }
        let key = path + ".weight"
        if canonical.contains(key) { return key }
        // transformers 5 dropped CLIPTextModel's `text_model` wrapper, so PEFT files saved with it name
        // `text_encoder.encoder.layers.…` where transformers 4 (and the canonical keys) have `text_model.`.
        if let dot = key.firstIndex(of: "."), key[..<dot].hasPrefix("text_encoder") {
            let wrapped = String(key[..<dot]) + ".text_model" + String(key[dot...])
            if canonical.contains(wrapped) { return wrapped }
        }
        return nil
    }
}
