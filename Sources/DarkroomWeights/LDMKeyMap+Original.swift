extension LDMKeyMap {
    /// The other direction of `unetMap`: the original (LDM / SGM) name of each UNet module, for LoRA files that name
    /// modules that way (kohya-ss's SDXL LoRAs, `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`; some
    /// SD 1.x ones). `modules` are canonical UNet module paths without the component (`down_blocks.1.attentions.0
    /// .transformer_blocks.0.attn1.to_q`); the result maps each that has an original name to it (`input_blocks.4.1
    /// .transformer_blocks.0.attn1.to_q`). Layers per block and which up blocks have attention come from the module
    /// list itself; a path that fits no rule is left out.
    public static func originalUNetNames(of modules: [String]) -> [String: String] {
        let resnets = Set(modules.compactMap { path -> Int? in
            let parts = path.split(separator: ".")
            guard parts.count > 3, parts[0] == "down_blocks", parts[1] == "0", parts[2] == "resnets" else { return nil }
            return blockIndex(String(parts[3]))
        })
        let layers = resnets.count
        guard layers > 0 else { return [:] }
        let upAttention = Set(modules.compactMap { path -> Int? in
            let parts = path.split(separator: ".")
            guard parts.count > 2, parts[0] == "up_blocks", parts[2] == "attentions" else { return nil }
            return blockIndex(String(parts[1]))
        })
        let resnetOriginal = Dictionary(uniqueKeysWithValues: resnetNames.map { ($0.value, $0.key) })
        var names: [String: String] = [:]
        for path in modules {
            let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 2, !parts.contains("") else { continue }
            func tail(_ i: Int) -> [String] { i < parts.count ? Array(parts[i...]) : [] }
            func resnet(_ base: String, _ rest: [String]) -> String? {
                guard let first = rest.first, let original = resnetOriginal[first] else { return nil }
                return ([base, original] + rest.dropFirst()).joined(separator: ".")
            }
            var original: String?
            switch parts[0] {
            case "conv_in": original = (["input_blocks.0.0"] + tail(1)).joined(separator: ".")
            case "time_embedding":
                original = ["linear_1": "time_embed.0", "linear_2": "time_embed.2"][parts[1]].map { ([$0] + tail(2)).joined(separator: ".") }
            case "add_embedding":
                original = ["linear_1": "label_emb.0.0", "linear_2": "label_emb.0.2"][parts[1]].map { ([$0] + tail(2)).joined(separator: ".") }
            case "conv_norm_out": original = (["out.0"] + tail(1)).joined(separator: ".")
            case "conv_out": original = (["out.2"] + tail(1)).joined(separator: ".")
            case "down_blocks", "up_blocks":
                guard parts.count >= 4, let block = blockIndex(parts[1]), let layer = blockIndex(parts[3]), layer <= layers else { break }
                let down = parts[0] == "down_blocks"
                let index = down ? 1 + block * (layers + 1) + layer : block * (layers + 1) + layer
                let prefix = (down ? "input_blocks." : "output_blocks.") + String(index)
                switch parts[2] {
                case "resnets": original = resnet(prefix + ".0", tail(4))
                case "attentions": original = ([prefix + ".1"] + tail(4)).joined(separator: ".")
                case "downsamplers" where down && layer == 0:
                    let base = "input_blocks.\(1 + block * (layers + 1) + layers).0.op"
                    original = parts.count > 4 && parts[4] == "conv" ? ([base] + tail(5)).joined(separator: ".") : nil
                case "upsamplers" where !down && layer == 0:
                    let base = "output_blocks.\(block * (layers + 1) + layers).\(upAttention.contains(block) ? 2 : 1)"
                    original = ([base] + tail(4)).joined(separator: ".")
                default: break
                }
            case "mid_block":
                guard parts.count >= 3 else { break }
                switch (parts[1], parts[2]) {
                case ("resnets", "0"): original = resnet("middle_block.0", tail(3))
                case ("attentions", "0"): original = (["middle_block.1"] + tail(3)).joined(separator: ".")
                case ("resnets", "1"): original = resnet("middle_block.2", tail(3))
                default: break
                }
            default: break
            }
            if let original { names[path] = original }
        }
        return names
    }
}
