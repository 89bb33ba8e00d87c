import Foundation

/// One Stable Diffusion model family as data: how its checkpoints are recognised (single-file key markers,
/// diffusers folder components), its text encoders and their key layouts, and its defaults. Loaders read these
/// values; they do not branch on the family.
///
/// The recognition follows diffusers `loaders/single_file_utils.py` (`CHECKPOINT_KEY_NAMES`,
/// `infer_diffusers_model_type`: one marker key per family) and stable-diffusion.cpp `src/model.cpp` (one
/// detection pass over tensor names).
public struct ModelFamily: Sendable, Hashable, CustomStringConvertible {
    /// A text encoder of the family, with where its tensors are and what the pipeline takes from it.
    public struct TextEncoder: Sendable, Hashable {
        /// How the single file names the tower's tensors.
        public enum KeyLayout: Sendable, Hashable {
            /// transformers `CLIPTextModel` names (`text_model.encoder.layers.N.…`), as OpenAI CLIP towers are stored.
            case transformers
            /// OpenCLIP names (`transformer.resblocks.N.attn.in_proj_weight`, `ln_final`, `text_projection`),
            /// converted as diffusers `convert_open_clip_checkpoint` does.
            case openCLIP
        }

        /// Which hidden states condition the UNet.
        public enum Output: Sendable, Hashable {
            /// The last layer's output after `final_layer_norm` (SD 1.x; SD 2.x, whose tower arrives cut before its
            /// last block, so this is OpenCLIP's penultimate layer + `ln_final`).
            case lastHiddenState
            /// `hidden_states[-2]`: the penultimate layer's output, without the final LayerNorm (SDXL, both towers).
            case penultimateHiddenState
        }

        /// The canonical (diffusers) component: `text_encoder` or `text_encoder_2`.
        public let component: String
        /// The diffusers tokenizer folder that goes with it.
        public let tokenizer: String
        /// Where a single file keeps the tower (`cond_stage_model.transformer.`, `conditioner.embedders.1.model.`, …).
        public let singleFilePrefix: String
        public let keyLayout: KeyLayout
        /// SD 2.x single files keep OpenCLIP's last residual block, which SD 2 never uses; it is not converted
        /// (diffusers' converted SD 2 text encoders have one layer fewer).
        public let dropsLastBlock: Bool
        public let output: Output
        /// Whether the pooled output goes through `text_projection` (transformers `CLIPTextModelWithProjection`);
        /// the single file must then hold `<prefix>text_projection`.
        public let hasProjection: Bool
        /// transformers `hidden_act` when no config says it.
        public let activation: String
        /// The id the tokenizer pads with: the end token (49407) for OpenAI CLIP, "!" (0) for OpenCLIP.
        public let padToken: Int
        /// Channels per attention head when no config says it (every CLIP text tower SD uses: 64).
        public let headWidth: Int
        /// What it is, for messages ("CLIP ViT-L", "OpenCLIP ViT-bigG").
        public let name: String
        /// The key of its vectors in textual-inversion files made for several encoders (A1111's
        /// `textual_inversion_key`: SDXL's `clip_l`, `clip_g`); nil: the family takes one-tensor embeddings.
        public var embeddingKey: String? = nil
    }

    /// The UNet's attention heads when no config says it: a fixed count (LDM `num_heads`) or a fixed head
    /// width (LDM `num_head_channels`).
    public enum HeadRule: Sendable, Hashable {
        case count(Int)
        case width(Int)
    }

    /// SDXL's added conditioning (diffusers `addition_embed_type: "text_time"`): the pooled text embedding and
    /// `timeIDCount` micro-conditioning numbers (original size, crop top-left, target size: 6; the refiner's
    /// original size, crop top-left, aesthetic score: 5), each embedded sinusoidally.
    public struct AddedConditioning: Sendable, Hashable {
        public let timeIDCount: Int
        /// Whether the last time id is an aesthetic score (refiner) rather than the target size.
        public let aestheticScore: Bool
    }

    /// A short identifier ("sd1", "sd2", "sdxl", "sdxl_refiner").
    public let id: String
    /// The family's name for messages and `inspect` ("SD 1.x").
    public let name: String
    /// Single files: a key prefix only this family has (its first text encoder's). A file with it must hold
    /// every text encoder of `textEncoders`, else it is refused naming what is missing.
    public var singleFileMarker: String { textEncoders[0].singleFilePrefix }
    /// Diffusers folders without `text_encoder_2`: the `text_encoder/config.json` `hidden_act` that tells this
    /// family apart (SD 2.x: "gelu"); nil matches any.
    public let diffusersTextActivation: String?
    public let textEncoders: [TextEncoder]
    public let heads: HeadRule
    /// The side of the images the family was trained on (the default working size), for epsilon-prediction models.
    public let defaultResolution: Int
    /// The same for v-prediction models (SD 2.x 768-v; SD 1.x v-models follow the same rule).
    public let vPredictionResolution: Int
    /// Latents are multiplied by this after encoding (diffusers `vae.config.scaling_factor`).
    public let vaeScalingFactor: Float
    public let addedConditioning: AddedConditioning?
    /// diffusers' `force_zeros_for_empty_prompt`: without a negative prompt, the unconditional embeddings are zeros.
    public let forceZerosForEmptyPrompt: Bool

    public var description: String { name }
    /// The name, as `Checkpoint.Family`'s raw value was.
    public var rawValue: String { name }

    /// The diffusers components a full checkpoint of this family has.
    public var components: [String] { ["unet", "vae"] + textEncoders.map(\.component) }

    public static func == (a: ModelFamily, b: ModelFamily) -> Bool { a.id == b.id }
    public func hash(into hasher: inout Hasher) { hasher.combine(id) }
}

extension ModelFamily.TextEncoder {
    /// OpenAI CLIP ViT-L/14 in transformers layout (SD 1.x; SDXL's first encoder).
    static func clipViTL(component: String, tokenizer: String, prefix: String, output: Output, embeddingKey: String? = nil) -> Self {
        Self(component: component, tokenizer: tokenizer, singleFilePrefix: prefix, keyLayout: .transformers,
             dropsLastBlock: false, output: output, hasProjection: false, activation: "quick_gelu", padToken: 49407,
             headWidth: 64, name: "CLIP ViT-L", embeddingKey: embeddingKey)
    }

    /// An OpenCLIP tower (SD 2.x's ViT-H; SDXL's ViT-bigG with its projection).
    static func openCLIP(_ name: String, component: String, tokenizer: String, prefix: String, dropsLastBlock: Bool,
                         output: Output, hasProjection: Bool, embeddingKey: String? = nil) -> Self {
        Self(component: component, tokenizer: tokenizer, singleFilePrefix: prefix, keyLayout: .openCLIP,
             dropsLastBlock: dropsLastBlock, output: output, hasProjection: hasProjection, activation: "gelu",
             padToken: 0, headWidth: 64, name: name, embeddingKey: embeddingKey)
    }
}

extension ModelFamily {
    /// SD 1.x: OpenAI CLIP ViT-L, 8 UNet heads at every level, 512 px.
    public static let sd1 = ModelFamily(
        id: "sd1", name: "SD 1.x", diffusersTextActivation: nil,
        textEncoders: [.clipViTL(component: "text_encoder", tokenizer: "tokenizer", prefix: "cond_stage_model.transformer.",
                                 output: .lastHiddenState)],
        heads: .count(8), defaultResolution: 512, vPredictionResolution: 768, vaeScalingFactor: 0.18215, addedConditioning: nil,
        forceZerosForEmptyPrompt: false)

    /// SD 2.x: OpenCLIP ViT-H (penultimate layer), 64-channel UNet heads, 512 px (768 for the v-prediction models).
    public static let sd2 = ModelFamily(
        id: "sd2", name: "SD 2.x", diffusersTextActivation: "gelu",
        textEncoders: [.openCLIP("OpenCLIP ViT-H", component: "text_encoder", tokenizer: "tokenizer",
                                 prefix: "cond_stage_model.model.", dropsLastBlock: true, output: .lastHiddenState,
                                 hasProjection: false)],
        heads: .width(64), defaultResolution: 512, vPredictionResolution: 768, vaeScalingFactor: 0.18215, addedConditioning: nil,
        forceZerosForEmptyPrompt: false)

    /// SDXL base (and its fine-tunes, inpainting, turbo): CLIP ViT-L and OpenCLIP ViT-bigG, penultimate hidden
    /// states of both concatenated, bigG's pooled projection and six size ids as added conditioning, 1024 px.
    public static let sdxl = ModelFamily(
        id: "sdxl", name: "SDXL", diffusersTextActivation: nil,
        textEncoders: [
            .clipViTL(component: "text_encoder", tokenizer: "tokenizer", prefix: "conditioner.embedders.0.transformer.",
                      output: .penultimateHiddenState, embeddingKey: "clip_l"),
            .openCLIP("OpenCLIP ViT-bigG", component: "text_encoder_2", tokenizer: "tokenizer_2",
                      prefix: "conditioner.embedders.1.model.", dropsLastBlock: false, output: .penultimateHiddenState,
                      hasProjection: true, embeddingKey: "clip_g"),
        ],
        heads: .width(64), defaultResolution: 1024, vPredictionResolution: 1024, vaeScalingFactor: 0.13025,
        addedConditioning: AddedConditioning(timeIDCount: 6, aestheticScore: false), forceZerosForEmptyPrompt: true)

    /// The SDXL refiner: OpenCLIP ViT-bigG alone (as `text_encoder_2`), aesthetic-score conditioning.
    public static let sdxlRefiner = ModelFamily(
        id: "sdxl_refiner", name: "SDXL refiner", diffusersTextActivation: nil,
        textEncoders: [
            .openCLIP("OpenCLIP ViT-bigG", component: "text_encoder_2", tokenizer: "tokenizer_2",
                      prefix: "conditioner.embedders.0.model.", dropsLastBlock: false, output: .penultimateHiddenState,
                      hasProjection: true, embeddingKey: "clip_g"),
        ],
        heads: .width(64), defaultResolution: 1024, vPredictionResolution: 1024, vaeScalingFactor: 0.13025,
        addedConditioning: AddedConditioning(timeIDCount: 5, aestheticScore: true), forceZerosForEmptyPrompt: false)

    /// Every family, in detection order.
    public static let all: [ModelFamily] = [.sdxl, .sdxlRefiner, .sd2, .sd1]

    /// The text-encoder component folders any family uses.
    static var textEncoderComponents: Set<String> { Set(all.flatMap { $0.textEncoders.map(\.component) }) }

    /// The family of a single file from its keys (one pass over the families' markers). A file with a family's
    /// marker but without one of its other text encoders (or the projection one needs) is refused, naming what
    /// is missing.
    public static func detect(singleFileKeys keys: [String], path: String) throws -> ModelFamily {
        func has(_ prefix: String) -> Bool { keys.contains { $0.hasPrefix(prefix) } }
        for family in all where has(family.singleFileMarker) {
            for (index, encoder) in family.textEncoders.enumerated() {
                let ordinal = family.textEncoders.count > 1 ? (index == 0 ? "first " : "second ") : ""
                guard has(encoder.singleFilePrefix) else {
                    throw WeightsError.unknownModelFamily(
                        path: path,
                        detail: "it looks like \(family.name) (\(family.singleFileMarker)*) but its \(ordinal)text encoder (\(encoder.name)) is missing: no \(encoder.singleFilePrefix)* keys")
                }
                if encoder.hasProjection, !keys.contains(encoder.singleFilePrefix + "text_projection") {
                    throw WeightsError.unknownModelFamily(
                        path: path,
                        detail: "it looks like \(family.name) (\(family.singleFileMarker)*) but its \(ordinal)text encoder (\(encoder.name)) has no projection: \(encoder.singleFilePrefix)text_projection is missing")
                }
            }
            return family
        }
        let markers = all.map(\.singleFileMarker).map { $0 + "*" }.joined(separator: ", ")
        throw WeightsError.unknownModelFamily(path: path, detail: "no text encoder (\(markers)) found")
    }

    /// The family of a diffusers folder: the text-encoder folders it has, then (SD 1.x / 2.x) the text
    /// encoder's activation. A folder without any text encoder (a lone UNet) counts as SD 1.x.
    public static func detect(diffusersFolder url: URL) throws -> ModelFamily {
        let present = textEncoderComponents.filter {
            FileManager.default.fileExists(atPath: url.appendingPathComponent($0).path)
        }
        let activation = try Checkpoint.jsonObject(url.appendingPathComponent("text_encoder/config.json"))?["hidden_act"] as? String
        for family in all where Set(family.textEncoders.map(\.component)) == present {
            if let wanted = family.diffusersTextActivation, wanted != activation { continue }
            return family
        }
        return .sd1
    }
}
