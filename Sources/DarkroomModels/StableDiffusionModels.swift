import DarkroomTensor
import DarkroomWeights
import Foundation

/// The networks of a Stable Diffusion checkpoint (SD 1.x/2.x: one text encoder; SDXL: two, the refiner one),
/// loaded and ready to run.
public struct StableDiffusionModels: Sendable {
    public let checkpoint: Checkpoint
    /// The family's first text encoder (`checkpoint.family.textEncoders[0]`: CLIP ViT-L for SD 1.x and SDXL,
    /// OpenCLIP ViT-H for SD 2.x, ViT-bigG for the SDXL refiner).
    public internal(set) var textEncoder: CLIPTextModel
    /// The family's second text encoder (SDXL's OpenCLIP ViT-bigG, with its projection); nil for the others.
    public internal(set) var textEncoder2: CLIPTextModel?
    /// diffusers' `force_zeros_for_empty_prompt` (`model_index.json`, else the family's value).
    public var forceZerosForEmptyPrompt = false
    /// diffusers' `requires_aesthetics_score` (`model_index.json`, else the family's: the SDXL refiner's time ids end
    /// with an aesthetic score instead of the target size).
    public var requiresAestheticsScore = false
    public internal(set) var unet: UNet2DConditionModel
    public internal(set) var vae: AutoencoderKL
    /// What the UNet predicts, in diffusers' words ("epsilon", "v_prediction"): from the scheduler config
    /// or the A1111 `.yaml` beside a single file; nil when the checkpoint does not say (a recipe's
    /// `prediction` then decides; the default is epsilon). The schedulers module turns it into its type.
    public let predictionType: String?
    /// The bytes of `scheduler/scheduler_config.json` of a diffusers folder (or of `config`), when present.
    public let schedulerConfig: Data?
    /// The path `schedulerConfig` was read from, for error messages.
    public var schedulerConfigPath: String? = nil

    /// Loads `url` (single `.safetensors` file or diffusers folder).
    ///
    /// Head counts and activations are not visible in tensor shapes. They come from, in order: the
    /// diffusers configs of `url` itself, of `config` (a diffusers folder describing a single file, as
    /// diffusers' `from_single_file(config=…)`), the A1111 `.yaml` beside a single file, and the family's
    /// values (`ModelFamily`: SD 1.x: 8 heads, QuickGELU; SD 2.x: 64 channels per head, GELU).
    public static func load(_ url: URL, config: URL? = nil) throws -> StableDiffusionModels {
        let checkpoint = try Checkpoint.open(url)
        let family = checkpoint.family
        let configFolder = checkpoint.layout == .diffusers ? url : config
        func json(_ path: String) throws -> [String: Any]? {
            guard let folder = configFolder else { return nil }
            return try Checkpoint.jsonObject(folder.appendingPathComponent(path))
        }
        let yaml = try checkpoint.sidecarYAML.map { try LDMYAML(contentsOf: $0) }
        let unetJSON = try json("unet/config.json")
        let vaeJSON = try json("vae/config.json"), schedulerJSON = try json("scheduler/scheduler_config.json")

        // Text encoders (SDXL: both towers' hidden states are concatenated into the UNet's context).
        let textConfigs = try family.textEncoders.map { try textEncoderConfig($0, of: checkpoint, configFolder: configFolder) }
        let contextWidth = textConfigs.reduce(0) { $0 + $1.width }
        let widthKeys = family.textEncoders.map { "\($0.component).text_model.embeddings.token_embedding.weight" }.joined(separator: " + ")

        // UNet.
        let heads = AttentionHeads(diffusersConfig: unetJSON) ?? AttentionHeads(yaml: yaml)
            ?? AttentionHeads(family.heads)
        var unetConfig = try UNetConfig.detect(from: WeightScope(checkpoint, prefix: "unet"), heads: heads)
        let headsSource: String
        if AttentionHeads(diffusersConfig: unetJSON) != nil, let folder = configFolder {
            headsSource = folder.appendingPathComponent("unet/config.json").path + " (num_attention_heads / attention_head_dim)"
        } else if AttentionHeads(yaml: yaml) != nil, let yamlURL = checkpoint.sidecarYAML {
            headsSource = yamlURL.path + " (num_heads / num_head_channels)"
        } else {
            headsSource = "the \(family.name) attention-head rule"
        }
        try unetConfig.checkHeads(source: headsSource)
        if let flip = unetJSON?["flip_sin_to_cos"] as? Bool { unetConfig.flipSinToCos = flip }
        if let shift = unetJSON?["freq_shift"] as? Double { unetConfig.frequencyShift = Float(shift) }
        // SDXL's added conditioning: its time-id width from the config, else from the shapes and the family.
        let pooledWidth = family.textEncoders.first(where: \.hasProjection)
            .flatMap { checkpoint.shape("\($0.component).text_projection.weight")?.first }
        try unetConfig.detectAddedConditioning(
            from: WeightScope(checkpoint, prefix: "unet"), configured: unetJSON?["addition_time_embed_dim"] as? Int,
            pooledWidth: pooledWidth, timeIDCount: family.addedConditioning?.timeIDCount,
            source: configFolder.map { $0.appendingPathComponent("unet/config.json").path } ?? url.path)
        if (unetConfig.addedConditioning == nil) != (family.addedConditioning == nil) {
            throw WeightsError.incompatibleComponents(
                source: checkpoint.sourceName,
                detail: family.addedConditioning == nil
                    ? "the UNet has SDXL's added conditioning (unet.add_embedding.*) but the text encoders are \(family.name)'s"
                    : "a \(family.name) checkpoint's UNet needs its added conditioning, but unet.add_embedding.linear_1.weight is missing")
        }

        // VAE.
        var vaeConfig = try VAEConfig.detect(from: WeightScope(checkpoint, prefix: "vae"))
        vaeConfig.scalingFactor = family.vaeScalingFactor
        if let factor = vaeJSON?["scaling_factor"] as? Double { vaeConfig.scalingFactor = Float(factor) }
        if let size = vaeJSON?["sample_size"] as? Int, size >= 64, size <= 4096 { vaeConfig.sampleSize = size }
        else if let factor = yaml?.double("scale_factor") { vaeConfig.scalingFactor = Float(factor) }
        guard vaeConfig.scalingFactor.isFinite, vaeConfig.scalingFactor > 0 else {
            let file = vaeJSON?["scaling_factor"] != nil ? (configFolder ?? url).appendingPathComponent("vae/config.json").path
                : (checkpoint.sidecarYAML?.path ?? url.path)
            throw WeightsError.invalidConfig(path: file, detail: "the VAE scaling factor is \(vaeConfig.scalingFactor); it must be a finite number > 0 (SD: 0.18215)")
        }

        // The three networks must fit together before any weights are loaded.
        let latent = vaeConfig.latentChannels
        if unetConfig.contextDim != contextWidth {
            throw WeightsError.incompatibleComponents(
                source: checkpoint.sourceName,
                detail: "the text encoder\(textConfigs.count > 1 ? "s are" : " is") \(contextWidth) wide (\(widthKeys)) but the UNet's cross-attention expects \(unetConfig.contextDim) (attn2.to_k.weight)")
        }
        if unetConfig.outChannels != latent || (unetConfig.inChannels != latent && unetConfig.inChannels != 2 * latent + 1) {
            throw WeightsError.incompatibleComponents(
                source: checkpoint.sourceName,
                detail: "the UNet takes \(unetConfig.inChannels) and predicts \(unetConfig.outChannels) channels (unet.conv_in.weight, unet.conv_out.weight) but the VAE has \(latent) latent channels (vae.post_quant_conv.weight); expected \(latent) or \(2 * latent + 1) in and \(latent) out")
        }

        let prediction: String?
        if let name = schedulerJSON?["prediction_type"] as? String {
            guard ["epsilon", "v_prediction", "sample"].contains(name) else {
                throw WeightsError.invalidConfig(path: "scheduler/scheduler_config.json", detail: "prediction_type '\(name)' is not epsilon, v_prediction or sample")
            }
            prediction = name
        } else if let yaml {
            prediction = yaml.string("parameterization") == "v" ? "v_prediction" : "epsilon"
        } else {
            prediction = nil
        }

        let schedulerURL = configFolder?.appendingPathComponent("scheduler/scheduler_config.json")
        let schedulerData = schedulerURL.flatMap { try? Data(contentsOf: $0) }
        var models = StableDiffusionModels(
            checkpoint: checkpoint,
            textEncoder: try textEncoder(family.textEncoders[0], of: checkpoint, config: textConfigs[0]),
            textEncoder2: family.textEncoders.count > 1 ? try textEncoder(family.textEncoders[1], of: checkpoint, config: textConfigs[1]) : nil,
            unet: try UNet2DConditionModel(WeightScope(checkpoint, prefix: "unet"), config: unetConfig),
            vae: try AutoencoderKL(WeightScope(checkpoint, prefix: "vae"), config: vaeConfig),
            predictionType: prediction,
            schedulerConfig: schedulerData)
        models.schedulerConfigPath = schedulerData == nil ? nil : schedulerURL?.path
        models.forceZerosForEmptyPrompt = (try json("model_index.json"))?["force_zeros_for_empty_prompt"] as? Bool
            ?? family.forceZerosForEmptyPrompt
        models.requiresAestheticsScore = (try json("model_index.json"))?["requires_aesthetics_score"] as? Bool
            ?? (family.addedConditioning?.aestheticScore ?? false)
        checkpoint.saveScanRecords()
        return models
    }

    /// The side of the images this model works at by default: its family's resolution for its prediction type
    /// (SD 1.x/2.x: 512, 768 for v-prediction; SDXL: 1024).
    public var defaultResolution: Int {
        predictionType == "v_prediction" ? checkpoint.family.vPredictionResolution : checkpoint.family.defaultResolution
    }

    /// The loaded text encoders in the family's order, each with its description (what a textual-inversion embedding's
    /// `perTextEncoder` needs).
    public var textEncoders: [(description: ModelFamily.TextEncoder, width: Int)] {
        let models = [textEncoder] + (textEncoder2.map { [$0] } ?? [])
        return zip(checkpoint.family.textEncoders, models).map { ($0, $1.config.width) }
    }

    /// SDXL's text conditioning over the loaded towers (`SDXLPromptEncoder`); nil when the family has no
    /// pooled text embedding (SD 1.x/2.x).
    public var sdxlPromptEncoder: SDXLPromptEncoder? {
        let models = [textEncoder] + (textEncoder2.map { [$0] } ?? [])
        let encoders = zip(checkpoint.family.textEncoders, models).map { SDXLPromptEncoder.Encoder(description: $0, model: $1) }
        return try? SDXLPromptEncoder(encoders: encoders, forceZerosForEmptyPrompt: forceZerosForEmptyPrompt, source: checkpoint.sourceName)
    }

    /// The text encoder `encoder` of `checkpoint` (canonical keys `<component>.text_model.*`, and
    /// `<component>.text_projection.weight` when the family's encoder has one). What shapes cannot show comes
    /// from `<configFolder>/<component>/config.json` and `<configFolder>/<tokenizer>/`, else from the family's
    /// description of the encoder (activation, pad id, 64-channel heads).
    public static func loadTextEncoder(_ encoder: ModelFamily.TextEncoder, of checkpoint: Checkpoint,
                                       configFolder: URL?) throws -> CLIPTextModel {
        try textEncoder(encoder, of: checkpoint, config: try textEncoderConfig(encoder, of: checkpoint, configFolder: configFolder))
    }

    /// The shape of `encoder` in `checkpoint` (see `loadTextEncoder`), checked, before any weight is read.
    static func textEncoderConfig(_ encoder: ModelFamily.TextEncoder, of checkpoint: Checkpoint,
                                  configFolder: URL?) throws -> CLIPTextConfig {
        let configPath = (configFolder ?? checkpoint.url).appendingPathComponent("\(encoder.component)/config.json").path
        let textJSON = try configFolder.flatMap { try Checkpoint.jsonObject($0.appendingPathComponent("\(encoder.component)/config.json")) }
        let activationName = (textJSON?["hidden_act"] as? String) ?? encoder.activation
        guard let activation = CLIPTextConfig.Activation(rawValue: activationName) else {
            throw WeightsError.invalidConfig(path: configPath, detail: "hidden_act '\(activationName)' is not quick_gelu or gelu")
        }
        let padToken = try tokenizerPadToken(configFolder, tokenizer: encoder.tokenizer) ?? encoder.padToken
        let textScope = WeightScope(checkpoint, prefix: "\(encoder.component).text_model")
        let textConfig = try CLIPTextConfig.detect(from: textScope, activation: activation, padToken: padToken,
                                                   heads: textJSON?["num_attention_heads"] as? Int, headWidth: encoder.headWidth)
        if textConfig.heads <= 0 || textConfig.width % textConfig.heads != 0 {
            throw WeightsError.invalidConfig(path: configPath,
                                             detail: "num_attention_heads is \(textConfig.heads) for a \(textConfig.width)-wide text encoder; it must be positive and divide the width")
        }
        if textConfig.maxPositions < CLIPTextConfig.tokensPerChunk || textConfig.vocabularySize < 1 {
            throw WeightsError.unexpectedShape(key: textScope.key("embeddings.position_embedding.weight"),
                                               expected: "at least \(CLIPTextConfig.tokensPerChunk) positions and a non-empty vocabulary",
                                               found: [textConfig.maxPositions, textConfig.width], source: checkpoint.sourceName)
        }
        let projection = WeightScope(checkpoint, prefix: "\(encoder.component).text_projection")
        if encoder.hasProjection, !projection.has("weight") {
            throw WeightsError.missingTensor(key: projection.key("weight"), source: checkpoint.sourceName)
        }
        return textConfig
    }

    static func textEncoder(_ encoder: ModelFamily.TextEncoder, of checkpoint: Checkpoint, config: CLIPTextConfig) throws -> CLIPTextModel {
        try CLIPTextModel(WeightScope(checkpoint, prefix: "\(encoder.component).text_model"), config: config,
                          projection: encoder.hasProjection ? WeightScope(checkpoint, prefix: "\(encoder.component).text_projection") : nil)
    }

    /// The pad id of a diffusers tokenizer folder (SD 2.x's and SDXL's `tokenizer_2` is "!" = 0; OpenAI CLIP's is
    /// the end token).
    static func tokenizerPadToken(_ folder: URL?, tokenizer: String = "tokenizer") throws -> Int? {
        guard let folder, let map = try Checkpoint.jsonObject(folder.appendingPathComponent("\(tokenizer)/special_tokens_map.json")) else { return nil }
        let pad = (map["pad_token"] as? String) ?? ((map["pad_token"] as? [String: Any])?["content"] as? String)
        switch pad {
        case "!": return 0
        case "<|endoftext|>": return 49407
        default: return nil
        }
    }
}

extension AttentionHeads {
    /// The family's rule, for checkpoints whose files do not state their heads.
    public init(_ rule: ModelFamily.HeadRule) {
        switch rule {
        case .count(let n): self = .fixedCount(n)
        case .width(let d): self = .fixedHeadDim(d)
        }
    }

    /// diffusers `unet/config.json`: `num_attention_heads`, else `attention_head_dim` — which SD configs use
    /// for the head *count* (a historical misnomer diffusers keeps), an Int or one per level.
    public init?(diffusersConfig json: [String: Any]?) {
        guard let json else { return nil }
        let value = json["num_attention_heads"].flatMap { $0 is NSNull ? nil : $0 } ?? json["attention_head_dim"]
        if let n = value as? Int { self = .fixedCount(n) }
        else if let list = value as? [Int], !list.isEmpty { self = .perLevel(list) }
        else { return nil }
    }

    /// LDM `unet_config.params`: `num_head_channels` (SD 2.x: 64) or `num_heads` (SD 1.x: 8); −1 means unused.
    init?(yaml: LDMYAML?) {
        if let d = yaml?.int("num_head_channels"), d > 0 { self = .fixedHeadDim(d) }
        else if let n = yaml?.int("num_heads"), n > 0 { self = .fixedCount(n) }
        else { return nil }
    }
}

/// The few values Darkroom reads from an LDM/A1111 model `.yaml` (e.g. `v2-inference-v.yaml`):
/// leaf `key: value` lines, by key name (`parameterization`, `num_heads`, `num_head_channels`,
/// `use_linear_in_transformer`, `scale_factor`). Not a general YAML parser.
struct LDMYAML {
    let values: [String: String]

    init(contentsOf url: URL) throws {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw WeightsError.invalidConfig(path: url.path, detail: "cannot be read as UTF-8 text (\(error.localizedDescription))")
        }
        var values: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            let stripped = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard let colon = stripped.firstIndex(of: ":") else { continue }
            let key = stripped[..<colon].trimmingCharacters(in: .whitespaces)
            let value = stripped[stripped.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if !key.isEmpty, !value.isEmpty, values[key] == nil { values[key] = value }
        }
        self.values = values
    }

    func string(_ key: String) -> String? { values[key] }
    func int(_ key: String) -> Int? { values[key].flatMap { Int($0) } }
    func double(_ key: String) -> Double? { values[key].flatMap { Double($0) } }
}
