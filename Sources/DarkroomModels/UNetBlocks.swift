import DarkroomTensor
import DarkroomWeights

/// The per-step inputs every UNet block needs: the SiLU-activated time embedding and the text context.
struct UNetConditioning {
    let timeEmbedding: Tensor   // [B, 4·C0], already through SiLU (ResnetBlock2D applies silu(temb) first)
    let context: Tensor         // [B, tokens, contextDim]
}

/// diffusers `CrossAttnDownBlock2D` / `DownBlock2D`: `layers` ResnetBlock2Ds, each followed by a
/// Transformer2DModel when the level has attention, then a Downsample2D except at the last level.
/// Returns the output and the skip connections (one per layer, plus one after downsampling).
struct UNetDownBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, level: UNetConfig.Level, config: UNetConfig,
         isLast: Bool) throws {
        resnets = try (0..<config.layersPerBlock).map {
            try ResnetBlock2D(w["resnets.\($0)"], in: $0 == 0 ? inChannels : outChannels, out: outChannels,
                              timeEmbedding: config.timeEmbeddingWidth, epsilon: 1e-5)
        }
        attentions = try level.hasAttention ? (0..<config.layersPerBlock).map {
            try Transformer2DModel(w["attentions.\($0)"], channels: outChannels, contextDim: config.contextDim,
                                   heads: level.heads, depth: level.transformerDepth,
                                   linearProjection: config.linearProjection)
        } : []
        downsampler = isLast ? nil : try Downsample2D(w["downsamplers.0"], channels: outChannels, asymmetricPadding: false)
    }

    func callAsFunction(_ x: Tensor, _ c: UNetConditioning) -> (Tensor, [Tensor]) {
        var x = x, skips: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            x = resnet(x, c.timeEmbedding)
            if !attentions.isEmpty { x = attentions[i](x, context: c.context) }
            skips.append(x)
        }
        if let downsampler {
            x = downsampler(x)
            skips.append(x)
        }
        return (x, skips)
    }
}

/// diffusers `UNetMidBlock2DCrossAttn`: ResnetBlock2D, Transformer2DModel, ResnetBlock2D.
struct UNetMidBlock2DCrossAttn: Sendable {
    let resnets: [ResnetBlock2D]
    let attention: Transformer2DModel

    init(_ w: WeightScope, channels: Int, config: UNetConfig) throws {
        resnets = try (0..<2).map {
            try ResnetBlock2D(w["resnets.\($0)"], in: channels, out: channels,
                              timeEmbedding: config.timeEmbeddingWidth, epsilon: 1e-5)
        }
        attention = try Transformer2DModel(w["attentions.0"], channels: channels, contextDim: config.contextDim,
                                           heads: config.middleHeads, depth: config.middleTransformerDepth,
                                           linearProjection: config.linearProjection)
    }

    func callAsFunction(_ x: Tensor, _ c: UNetConditioning) -> Tensor {
        let x = resnets[0](x, c.timeEmbedding)
        return resnets[1](attention(x, context: c.context), c.timeEmbedding)
    }
}

/// diffusers `UNetMidBlock2D` as `ControlNetModel` builds it for `mid_block_type: "UNetMidBlock2D"` (`num_layers=0`,
/// `add_attention=False`): one ResnetBlock2D, no attention.
struct UNetMidBlock2D: Sendable {
    let resnet: ResnetBlock2D

    init(_ w: WeightScope, channels: Int, config: UNetConfig) throws {
        resnet = try ResnetBlock2D(w["resnets.0"], in: channels, out: channels, timeEmbedding: config.timeEmbeddingWidth, epsilon: 1e-5)
    }

    func callAsFunction(_ x: Tensor, _ c: UNetConditioning) -> Tensor { resnet(x, c.timeEmbedding) }
}

/// diffusers `CrossAttnUpBlock2D` / `UpBlock2D`: `layers + 1` ResnetBlock2Ds, each on the running
/// features concatenated with the next skip connection (last in, first out), each followed by a
/// Transformer2DModel when the level has attention, then an Upsample2D except at the last level.
struct UNetUpBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    /// `skipChannels[i]` = channels of the skip connection resnet i consumes.
    init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, skipChannels: [Int], level: UNetConfig.Level,
         config: UNetConfig, isLast: Bool) throws {
        resnets = try skipChannels.enumerated().map { i, skip in
            try ResnetBlock2D(w["resnets.\(i)"], in: (i == 0 ? inChannels : outChannels) + skip, out: outChannels,
                              timeEmbedding: config.timeEmbeddingWidth, epsilon: 1e-5)
        }
        attentions = try level.hasAttention ? (0..<skipChannels.count).map {
            try Transformer2DModel(w["attentions.\($0)"], channels: outChannels, contextDim: config.contextDim,
                                   heads: level.heads, depth: level.transformerDepth,
                                   linearProjection: config.linearProjection)
        } : []
        upsampler = isLast ? nil : try Upsample2D(w["upsamplers.0"], channels: outChannels)
    }

    /// `skips` holds this block's skip connections in the order they were produced; they are used last first.
    /// `upsampleSize` is the spatial size of the next block's first skip (diffusers' `upsample_size`).
    func callAsFunction(_ x: Tensor, skips: [Tensor], upsampleSize: (height: Int, width: Int)?, _ c: UNetConditioning) -> Tensor {
        var x = x
        for (i, resnet) in resnets.enumerated() {
            x = resnet(Tensor.concatenate([x, skips[skips.count - 1 - i]], axis: 1), c.timeEmbedding)
            if !attentions.isEmpty { x = attentions[i](x, context: c.context) }
        }
        if let upsampler { x = upsampler(x, size: upsampleSize) }
        return x
    }
}
