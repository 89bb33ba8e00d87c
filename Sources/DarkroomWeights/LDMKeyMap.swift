/// The one table from original single-file (LDM / CompVis) keys to Darkroom's canonical diffusers keys.
///
/// Matches diffusers `loaders/single_file_utils.py` (`convert_ldm_unet_checkpoint`,
/// `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`):
/// - UNet `model.diffusion_model.*`: `input_blocks.i` → `down_blocks.b.{resnets,attentions,downsamplers}`,
///   `middle_block.{0,1,2}` → `mid_block`, `output_blocks.i` → `up_blocks.b`, ResBlock names
///   (`in_layers.0` → `norm1`, `emb_layers.1` → `time_emb_proj`, `skip_connection` → `conv_shortcut`, …);
///   transformer names are the same in both.
/// - VAE `first_stage_model.*`: `down.i.block.j` → `down_blocks.i.resnets.j`, `up.i` → `up_blocks.(n−1−i)`,
///   `mid.attn_1.{q,k,v,proj_out}` (1×1 convs) → `to_q/to_k/to_v/to_out.0` (linear: reshaped), `nin_shortcut` → `conv_shortcut`.
///   SDXL's `label_emb.0.0` / `label_emb.0.2` → `add_embedding.linear_1` / `linear_2`.
/// - Text encoders where the family (`ModelFamily.TextEncoder`) says they are, under its component
///   (`text_encoder`, `text_encoder_2`): OpenAI CLIP towers (`cond_stage_model.transformer.*`,
///   `conditioner.embedders.0.transformer.*`) are already transformers names; OpenCLIP towers
///   (`cond_stage_model.model.*`, `conditioner.embedders.{0,1}.model.*`) get transformers names, `in_proj` split
///   into q/k/v, `text_projection` transposed (SDXL), and for SD 2.x the last residual block dropped (SD 2
///   conditions on the penultimate layer, as diffusers' converted model does).
public enum LDMKeyMap {
    /// How a canonical tensor is made from the stored one.
    public enum Transform: Sendable, Equatable {
        case none
        case reshape([Int])
        /// Rows `part·n/parts ..< (part+1)·n/parts` of the first dimension (q/k/v of a fused projection).
        case rows(part: Int, of: Int)
        /// The matrix transposed (OpenCLIP's `text_projection` [width, projection], applied as `x @ P`, is
        /// transformers' `text_projection.weight` [projection, width]).
        case transpose
    }

    public struct Entry: Sendable, Equatable {
        public let original: String
        public let transform: Transform
    }

    /// Canonical key → original key (and transform) for every tensor of a single-file checkpoint of `family`
    /// (whose text encoders say where each tower is and how it is named; nil: every family's towers, whose
    /// prefixes differ).
    /// Keys that belong to no component Darkroom uses (EMA copies, `model_ema.*`, SD 2.x's `text_projection`, …)
    /// are left out.
    public static func canonical(from keys: [String], shapes: (String) -> [Int]?, family: ModelFamily? = nil) -> [String: Entry] {
        var map: [String: Entry] = [:]
        let unet = keys.filter { $0.hasPrefix("model.diffusion_model.") }
        for (canonical, entry) in unetMap(unet, prefix: "model.diffusion_model.") { map["unet." + canonical] = entry }
        for key in keys where key.hasPrefix("first_stage_model.") {
            if let (name, transform) = vaeName(String(key.dropFirst("first_stage_model.".count)), keys: keys, shape: shapes(key)) {
                map["vae." + name] = Entry(original: key, transform: transform)
            }
        }
        for encoder in family.map(\.textEncoders) ?? ModelFamily.all.flatMap(\.textEncoders) {
            let prefix = encoder.singleFilePrefix
            switch encoder.keyLayout {
            case .transformers:
                for key in keys where key.hasPrefix(prefix) {
                    var name = String(key.dropFirst(prefix.count))
                    if name.hasSuffix("position_ids") { continue }
                    if !name.hasPrefix("text_model.") { name = "text_model." + name }   // pre-2022 layout
                    map["\(encoder.component).\(name)"] = Entry(original: key, transform: .none)
                }
            case .openCLIP:
                let tower = openCLIPMap(keys.filter { $0.hasPrefix(prefix) }, prefix: prefix,
                                        dropLastBlock: encoder.dropsLastBlock, projection: encoder.hasProjection)
                for (canonical, entry) in tower { map["\(encoder.component).\(canonical)"] = entry }
            }
        }
        return map
    }

    // MARK: UNet

    static let resnetNames = ["in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                              "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"]

    /// The UNet's keys under `prefix` (`model.diffusion_model.` in a checkpoint; `control_model.` or nothing for the
    /// encoder copy of a ControlNet, which has `time_embed`, `input_blocks` and `middle_block` only).
    static func unetMap(_ keys: [String], prefix: String) -> [String: Entry] {
        // layers per block = index of the first downsampler (`input_blocks.i.0.op`) − 1.
        let inputIndices = Set(keys.compactMap { index(after: prefix + "input_blocks.", in: $0) })
        let firstDownsampler = keys.compactMap { key -> Int? in
            guard key.contains(".0.op."), let i = index(after: prefix + "input_blocks.", in: key) else { return nil }
            return i
        }.min()
        let layers = (firstDownsampler ?? ((inputIndices.max() ?? 0) + 1)) - 1
        guard layers > 0 else { return [:] }

        var map: [String: Entry] = [:]
        for key in keys {
            let name = String(key.dropFirst(prefix.count))
            let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            // Every tensor key has at least three parts (`out.0.weight`); shorter ones (`time_embed`) and empty
            // parts match no rule (→ `WeightsError.unrecognizedKey` at open). Subscripts go through `part`/`tail`,
            // which are bounds-checked.
            guard parts.count >= 3, !parts.contains("") else { continue }
            func part(_ i: Int) -> String { i < parts.count ? parts[i] : "" }
            func tail(_ i: Int) -> [String] { i < parts.count ? Array(parts[i...]) : [] }
            var canonical: String?
            switch parts.first {
            case "time_embed":
                canonical = ["0": "time_embedding.linear_1", "2": "time_embedding.linear_2"][part(1)].map { ([$0] + tail(2)).joined(separator: ".") }
            case "label_emb" where part(1) == "0":
                // SDXL's added conditioning (diffusers `add_embedding`, a TimestepEmbedding): `label_emb.0.{0,2}`.
                canonical = ["0": "add_embedding.linear_1", "2": "add_embedding.linear_2"][part(2)].map { ([$0] + tail(3)).joined(separator: ".") }
            case "input_blocks":
                guard let i = blockIndex(part(1)) else { break }
                if i == 0 { canonical = (["conv_in"] + tail(3)).joined(separator: ".") ; break }
                let block = (i - 1) / (layers + 1), layer = (i - 1) % (layers + 1)
                if layer == layers {
                    if part(2) == "0" && part(3) == "op" { canonical = (["down_blocks.\(block).downsamplers.0.conv"] + tail(4)).joined(separator: ".") }
                } else if part(2) == "0" {
                    canonical = resnet("down_blocks.\(block).resnets.\(layer)", Array(tail(3)))
                } else if part(2) == "1" {
                    canonical = (["down_blocks.\(block).attentions.\(layer)"] + tail(3)).joined(separator: ".")
                }
            case "middle_block":
                let rest = Array(tail(2))
                switch part(1) {
                case "0": canonical = resnet("mid_block.resnets.0", rest)
                case "1": canonical = (["mid_block.attentions.0"] + rest).joined(separator: ".")
                case "2": canonical = resnet("mid_block.resnets.1", rest)
                default: break
                }
            case "output_blocks":
                guard let i = blockIndex(part(1)) else { break }
                let block = i / (layers + 1), layer = i % (layers + 1)
                let rest = Array(tail(3))
                if part(2) == "0" {
                    canonical = resnet("up_blocks.\(block).resnets.\(layer)", rest)
                } else if rest.first == "conv" {
                    // Upsample2D: `output_blocks.i.1.conv` without attention, `output_blocks.i.2.conv` with it.
                    canonical = (["up_blocks.\(block).upsamplers.0"] + rest).joined(separator: ".")
                } else if part(2) == "1" {
                    canonical = (["up_blocks.\(block).attentions.\(layer)"] + rest).joined(separator: ".")
                }
            case "out":
                canonical = ["0": "conv_norm_out", "2": "conv_out"][part(1)].map { ([$0] + tail(2)).joined(separator: ".") }
            default:
                break
            }
            if let canonical { map[canonical] = Entry(original: key, transform: .none) }
        }
        return map
    }

    /// A block index: digits only, below 10 000 (real checkpoints have at most a few dozen blocks), so the
    /// block arithmetic never overflows.
    static func blockIndex(_ text: String) -> Int? {
        guard !text.isEmpty, text.count <= 4, text.allSatisfy(\.isASCII), let i = Int(text), i >= 0 else { return nil }
        return i
    }

    static func resnet(_ base: String, _ rest: [String]) -> String? {
        // rest is e.g. ["in_layers", "0", "weight"] or ["skip_connection", "weight"].
        if rest.count == 3, let name = resnetNames["\(rest[0]).\(rest[1])"] { return "\(base).\(name).\(rest[2])" }
        if rest.count == 2, let name = resnetNames[rest[0]] { return "\(base).\(name).\(rest[1])" }
        return nil
    }

    static func index(after prefix: String, in key: String) -> Int? {
        guard key.hasPrefix(prefix) else { return nil }
        let rest = key.dropFirst(prefix.count)
        return rest.firstIndex(of: ".").flatMap { blockIndex(String(rest[..<$0])) }
    }

    // MARK: ControlNet

    /// Canonical key (`controlnet.*`, diffusers `ControlNetModel` names) → original key for a ControlNet single file
    /// with LDM keys, as lllyasviel's `control_v11*.safetensors` (`control_model.` + name) or with bare names (as
    /// thibaud's SD 2.x files). Matches diffusers `convert_controlnet_checkpoint`, except that the conditioning
    /// embedding's last convolution is the highest `input_hint_block` index rather than a fixed 14, so every size
    /// comes from the file:
    /// - `time_embed`, `input_blocks`, `middle_block` and SDXL's `label_emb`: the UNet's rules (`unetMap`);
    /// - `input_hint_block.0` → `controlnet_cond_embedding.conv_in`, `input_hint_block.2k` → `blocks.(k−1)`, the last
    ///   → `conv_out` (the odd indices are SiLUs, without tensors);
    /// - `zero_convs.i.0` → `controlnet_down_blocks.i`, `middle_block_out.0` → `controlnet_mid_block`.
    /// Keys outside `prefix` (a whole SD model saved beside the ControlNet) are left out; a key inside it that
    /// matches no rule is absent from the map (the loader reports it).
    public static func controlNet(from keys: [String], prefix: String) -> [String: Entry] {
        let own = keys.filter { $0.hasPrefix(prefix) }
        var map: [String: Entry] = [:]
        for (canonical, entry) in unetMap(own, prefix: prefix) where !canonical.hasPrefix("up_blocks.")
            && !canonical.hasPrefix("conv_out.") && !canonical.hasPrefix("conv_norm_out.") {
            map["controlnet." + canonical] = entry
        }
        let hintIndices = own.compactMap { index(after: prefix + "input_hint_block.", in: $0) }
        let lastHint = hintIndices.max() ?? 0
        for key in own {
            let parts = key.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 3, !parts.contains("") else { continue }
            let suffix = parts[(parts.count - 1)...].joined(separator: ".")
            var canonical: String?
            switch parts[0] {
            case "input_hint_block" where parts.count == 3:
                guard let i = blockIndex(parts[1]), i % 2 == 0, lastHint >= 2 else { break }
                canonical = i == 0 ? "controlnet_cond_embedding.conv_in"
                    : i == lastHint ? "controlnet_cond_embedding.conv_out"
                    : "controlnet_cond_embedding.blocks.\(i / 2 - 1)"
            case "zero_convs" where parts.count == 4 && parts[2] == "0":
                guard let i = blockIndex(parts[1]) else { break }
                canonical = "controlnet_down_blocks.\(i)"
            case "middle_block_out" where parts.count == 3 && parts[1] == "0":
                canonical = "controlnet_mid_block"
            default:
                break
            }
            if let canonical { map["controlnet.\(canonical).\(suffix)"] = Entry(original: key, transform: .none) }
        }
        return map
    }

    // MARK: VAE

    static func vaeName(_ name: String, keys: [String], shape: [Int]?) -> (String, Transform)? {
        var parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 2 else { return nil }
        func renameResnetPart(_ p: inout [String], at i: Int) { if p[i] == "nin_shortcut" { p[i] = "conv_shortcut" } }
        switch parts[0] {
        case "quant_conv", "post_quant_conv":
            return (name, .none)
        case "encoder", "decoder":
            let side = parts[0]
            switch parts[1] {
            case "conv_in", "conv_out": return (name, .none)
            case "norm_out": return ((["\(side).conv_norm_out"] + parts[2...]).joined(separator: "."), .none)
            case "down", "up":
                guard parts.count >= 5, let i = blockIndex(parts[2]) else { return nil }
                var level = i
                if parts[1] == "up" {
                    let levels = Set(keys.compactMap { index(after: "first_stage_model.decoder.up.", in: $0) }).count
                    level = levels - 1 - i
                }
                let blocks = parts[1] == "down" ? "down_blocks" : "up_blocks"
                if parts[3] == "block" {
                    guard parts.count >= 7 else { return nil }
                    renameResnetPart(&parts, at: 5)
                    return ((["\(side).\(blocks).\(level).resnets.\(parts[4])"] + parts[5...]).joined(separator: "."), .none)
                }
                if parts[3] == "downsample" || parts[3] == "upsample" {
                    let sampler = parts[3] == "downsample" ? "downsamplers" : "upsamplers"
                    return ((["\(side).\(blocks).\(level).\(sampler).0"] + parts[4...]).joined(separator: "."), .none)
                }
                return nil
            case "mid":
                guard parts.count >= 4 else { return nil }
                if parts[2] == "block_1" || parts[2] == "block_2" {
                    renameResnetPart(&parts, at: 3)
                    let r = parts[2] == "block_1" ? 0 : 1
                    return ((["\(side).mid_block.resnets.\(r)"] + parts[3...]).joined(separator: "."), .none)
                }
                if parts[2] == "attn_1" {
                    guard parts.count >= 5 else { return nil }
                    let names = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                    guard let n = names[parts[3]] else { return nil }
                    let canonical = "\(side).mid_block.attentions.0.\(n).\(parts[4...].joined(separator: "."))"
                    // LDM stores the attention projections as 1×1 convolutions [C, C, 1, 1].
                    // Only a 1×1 kernel is a linear layer; any other kernel keeps its shape and fails the shape check.
                    if parts[3] != "norm", let shape, shape.count == 4, shape[2] == 1, shape[3] == 1 {
                        return (canonical, .reshape([shape[0], shape[1]]))
                    }
                    return (canonical, .none)
                }
                return nil
            default:
                return nil
            }
        default:
            return nil
        }
    }

    // MARK: OpenCLIP (SD 2.x ViT-H, SDXL ViT-bigG)

    /// The OpenCLIP tower under `prefix` in transformers names. `dropLastBlock`: SD 2.x's unused last residual
    /// block is left out. `projection`: `text_projection` [width, projection] becomes `text_projection.weight`
    /// [projection, width] (diffusers `convert_open_clip_checkpoint` transposes it).
    static func openCLIPMap(_ keys: [String], prefix: String, dropLastBlock: Bool, projection: Bool) -> [String: Entry] {
        let blocks = Set(keys.compactMap { index(after: prefix + "transformer.resblocks.", in: $0) })
        guard let maxBlock = blocks.max() else { return [:] }
        let lastBlock = dropLastBlock ? maxBlock : nil
        var map: [String: Entry] = [:]
        let names = ["ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                     "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"]
        for key in keys {
            let name = String(key.dropFirst(prefix.count))
            switch name {
            case "token_embedding.weight": map["text_model.embeddings.token_embedding.weight"] = Entry(original: key, transform: .none)
            case "positional_embedding": map["text_model.embeddings.position_embedding.weight"] = Entry(original: key, transform: .none)
            case "ln_final.weight", "ln_final.bias":
                map["text_model.final_layer_norm." + (name.hasSuffix("weight") ? "weight" : "bias")] = Entry(original: key, transform: .none)
            case "text_projection" where projection:
                map["text_projection.weight"] = Entry(original: key, transform: .transpose)
            default:
                guard let i = index(after: prefix + "transformer.resblocks.", in: key), i != lastBlock else { continue }
                let rest = String(name.dropFirst("transformer.resblocks.\(i).".count))
                let layer = "text_model.encoder.layers.\(i)"
                if rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias" {
                    let kind = rest.hasSuffix("weight") ? "weight" : "bias"
                    for (part, projection) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                        map["\(layer).self_attn.\(projection).\(kind)"] = Entry(original: key, transform: .rows(part: part, of: 3))
                    }
                } else if let dot = rest.lastIndex(of: "."), let renamed = names[String(rest[..<dot])] {
                    map["\(layer).\(renamed)\(rest[dot...])"] = Entry(original: key, transform: .none)
                }
            }
        }
        return map
    }
}
