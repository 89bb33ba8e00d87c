import DarkroomWeights

/// How a checkpoint fixes its attention heads. Head counts are not visible in tensor shapes:
/// diffusers folders state them in `unet/config.json`; single files follow their family's rule
/// (SD 1.x: 8 heads at every level; SD 2.x: 64 channels per head), or an A1111 `.yaml` beside them.
public enum AttentionHeads: Sendable, Equatable {
    case perLevel([Int])          // heads per down level (diffusers `attention_head_dim` / `num_attention_heads`)
    case fixedCount(Int)          // LDM `num_heads`
    case fixedHeadDim(Int)        // LDM `num_head_channels`

    func heads(channels: Int, level: Int) -> Int {
        switch self {
        case .perLevel(let list): return list.isEmpty ? 0 : list[max(0, min(level, list.count - 1))]   // 0: refused
        case .fixedCount(let n): return n
        case .fixedHeadDim(let d): return d > 0 ? max(1, channels / d) : 0   // 0 heads: refused by `checkHeads`
        }
    }
}

extension UNetConfig {
    /// Every attention level's head count must be positive and divide its width (diffusers splits the width
    /// into `heads` equal heads); `source` names where the head counts came from (a `unet/config.json` key,
    /// the `.yaml`'s key, or the family rule).
    public func checkHeads(source: String) throws {
        var widths = levels.filter(\.hasAttention).map { ($0.channels, $0.heads) }
        if middleTransformerDepth > 0, let last = levels.last { widths.append((last.channels, middleHeads)) }
        for (channels, heads) in widths where heads <= 0 || channels % heads != 0 {
            throw WeightsError.invalidConfig(path: source, detail: "\(heads) attention heads for a \(channels)-channel UNet level; the head count must be positive and divide the width")
        }
    }
}

/// The shape of a `UNet2DConditionModel`, read from the checkpoint's tensors (never from one fixture's sizes).
public struct UNetConfig: Sendable, Equatable {
    public struct Level: Sendable, Equatable {
        public var channels: Int
        public var hasAttention: Bool
        public var heads: Int
        public var transformerDepth: Int
    }

    public var inChannels: Int
    public var outChannels: Int
    public var levels: [Level]
    public var layersPerBlock: Int
    public var contextDim: Int
    public var linearProjection: Bool
    public var middleHeads: Int
    public var middleTransformerDepth: Int
    public var timeEmbeddingWidth: Int
    /// diffusers `mid_block_type`: `UNetMidBlock2DCrossAttn` (resnet, transformer, resnet: every UNet), or, without
    /// `mid_block.attentions.0`, `UNetMidBlock2D` with no attention and one resnet (smaller SDXL ControlNets).
    public var midBlockHasAttention = true
    public var flipSinToCos = true
    public var frequencyShift: Float = 0
    /// SDXL's added conditioning (diffusers `addition_embed_type: "text_time"`); nil for SD 1.x/2.x.
    public var addedConditioning: AddedConditioning?

    /// diffusers `add_time_proj` + `add_embedding`: each time id embedded sinusoidally to `timeEmbedDim`
    /// (`addition_time_embed_dim`), concatenated after the pooled text embedding, `inputWidth` wide in all
    /// (`projection_class_embeddings_input_dim`, read from `add_embedding.linear_1.weight`).
    public struct AddedConditioning: Sendable, Equatable {
        public var inputWidth: Int
        public var timeEmbedDim: Int

        public init(inputWidth: Int, timeEmbedDim: Int) {
            self.inputWidth = inputWidth
            self.timeEmbedDim = timeEmbedDim
        }
    }

    /// Reads the configuration from the tensors under `w` (diffusers names, e.g. `conv_in.weight`).
    /// `decoder: false` reads an encoder copy without up blocks (a ControlNet's): `outChannels` is then `inChannels`.
    /// `contextDim` is the width to assume when no tensor has cross-attention (a ControlNet whose levels have no
    /// transformer layers, diffusers' `cross_attention_dim`); without it such weights are refused.
    public static func detect(from w: WeightScope, heads: AttentionHeads, decoder: Bool = true,
                              contextDim configuredContext: Int? = nil) throws -> UNetConfig {
        let convIn = try w.requireShape("conv_in.weight", rank: 4)
        let levelCount = w.countIndices("down_blocks")
        let layers = w.countIndices("down_blocks.0.resnets")
        guard levelCount > 0, layers > 0 else {
            throw WeightsError.missingTensor(key: w.key("down_blocks.0.resnets.0.conv1.weight"), source: w.sourceName)
        }
        var levels: [Level] = []
        for i in 0..<levelCount {
            let channels = try w.requireShape("down_blocks.\(i).resnets.0.conv1.weight", rank: 4)[0]
            let hasAttention = w.has("down_blocks.\(i).attentions.0.proj_in.weight")
            levels.append(Level(channels: channels, hasAttention: hasAttention,
                                heads: heads.heads(channels: channels, level: i),
                                transformerDepth: hasAttention ? w.countIndices("down_blocks.\(i).attentions.0.transformer_blocks") : 0))
        }
        let firstCrossKey = w.firstKey(matchingSuffix: "attn2.to_k.weight"), proj = w.firstKey(matchingSuffix: "proj_in.weight")
        let contextDim: Int
        if let firstCrossKey {
            contextDim = try w.requireShape(firstCrossKey, rank: 2, relative: false)[1]
        } else if let configuredContext, configuredContext > 0 {
            contextDim = configuredContext
        } else {
            throw WeightsError.missingTensor(key: w.key("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"),
                                             source: w.sourceName)
        }
        let last = levels[levels.count - 1]
        return UNetConfig(
            inChannels: convIn[1],
            outChannels: decoder ? try w.requireShape("conv_out.weight", rank: 4)[0] : convIn[1],
            levels: levels,
            layersPerBlock: layers,
            contextDim: contextDim,
            linearProjection: proj.flatMap { w.shape($0, relative: false) }?.count == 2,
            middleHeads: heads.heads(channels: last.channels, level: levelCount - 1),
            middleTransformerDepth: w.countIndices("mid_block.attentions.0.transformer_blocks"),
            timeEmbeddingWidth: try w.requireShape("time_embedding.linear_1.weight", rank: 2)[0],
            midBlockHasAttention: w.has("mid_block.attentions.0.proj_in.weight"))
    }

    /// Reads `add_embedding` (SDXL) when the UNet has one: `timeEmbedDim` from `configured`
    /// (`addition_time_embed_dim` of `unet/config.json`), else from the shapes: (`add_embedding.linear_1` input −
    /// `pooledWidth`) / `timeIDCount` (the family's count of time ids), which must divide evenly.
    /// `source` names where the UNet's settings came from, for the error.
    public mutating func detectAddedConditioning(from w: WeightScope, configured: Int?, pooledWidth: Int?, timeIDCount: Int?,
                                                 source: String) throws {
        guard w.has("add_embedding.linear_1.weight") else { addedConditioning = nil; return }
        let input = try w.requireShape("add_embedding.linear_1.weight", rank: 2)[1]
        let timeDim: Int
        if let configured {
            timeDim = configured
        } else if let pooledWidth, let timeIDCount, timeIDCount > 0, input > pooledWidth, (input - pooledWidth) % timeIDCount == 0 {
            timeDim = (input - pooledWidth) / timeIDCount
        } else {
            throw WeightsError.invalidConfig(
                path: source,
                detail: "addition_time_embed_dim is not given and cannot be read from \(w.key("add_embedding.linear_1.weight")) (\(input) inputs) with a \(pooledWidth.map(String.init) ?? "missing") pooled text embedding and \(timeIDCount.map(String.init) ?? "no") time ids")
        }
        guard timeDim > 0, timeDim % 2 == 0, input > timeDim else {
            throw WeightsError.invalidConfig(path: source, detail: "addition_time_embed_dim is \(timeDim); it must be even, positive and below add_embedding's \(input) inputs")
        }
        // Every UNet call concatenates the pooled text embedding and the embedded time ids: they must fill the input.
        if let pooledWidth, let timeIDCount, pooledWidth + timeIDCount * timeDim != input {
            throw WeightsError.invalidConfig(
                path: source,
                detail: "\(w.key("add_embedding.linear_1.weight")) takes \(input) inputs, but the pooled text embedding (\(pooledWidth)) and \(timeIDCount) time ids of \(timeDim) (addition_time_embed_dim) make \(pooledWidth + timeIDCount * timeDim)")
        }
        addedConditioning = AddedConditioning(inputWidth: input, timeEmbedDim: timeDim)
    }
}
