import DarkroomTensor
import DarkroomWeights

/// diffusers `UNet2DConditionModel` as Stable Diffusion 1.x/2.x configure it (4- or 9-channel input):
///
///     emb = linear_2(silu(linear_1(timestep_embedding(t))))
///     x = conv_in(sample); skips = [x]
///     down blocks (resnets + transformers, downsample) → skips
///     mid block (resnet, transformer, resnet)
///     up blocks (concat skip, resnet, transformer; upsample)
///     out = conv_out(silu(conv_norm_out(x)))
public struct UNet2DConditionModel: Sendable {
    public let config: UNetConfig
    let timeLinear1: Linear, timeLinear2: Linear
    let convIn: Conv2d
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock2DCrossAttn
    let upBlocks: [UNetUpBlock]
    let convNormOut: GroupNorm, convOut: Conv2d


    /// Loads the weights under `w` (diffusers names) for `config`, checking every shape.
    public init(_ w: WeightScope, config: UNetConfig) throws {
        self.config = config
        let c0 = config.levels[0].channels
        timeLinear1 = try Linear(w["time_embedding.linear_1"], in: c0, out: config.timeEmbeddingWidth)
        timeLinear2 = try Linear(w["time_embedding.linear_2"], in: config.timeEmbeddingWidth, out: config.timeEmbeddingWidth)
        convIn = try Conv2d(w["conv_in"], in: config.inChannels, out: c0, kernel: 3)

        var downs: [UNetDownBlock] = [], skipChannels = [c0], channels = c0
        for (i, level) in config.levels.enumerated() {
            let isLast = i == config.levels.count - 1
            downs.append(try UNetDownBlock(w["down_blocks.\(i)"], in: channels, out: level.channels, level: level,
                                           config: config, isLast: isLast))
            channels = level.channels
            skipChannels += Array(repeating: channels, count: config.layersPerBlock + (isLast ? 0 : 1))
        }
        downBlocks = downs
        midBlock = try UNetMidBlock2DCrossAttn(w["mid_block"], channels: channels, config: config)

        var ups: [UNetUpBlock] = []
        for (i, level) in config.levels.reversed().enumerated() {
            let consumed = Array(skipChannels.suffix(config.layersPerBlock + 1).reversed())
            skipChannels.removeLast(config.layersPerBlock + 1)
            ups.append(try UNetUpBlock(w["up_blocks.\(i)"], in: channels, out: level.channels, skipChannels: consumed,
                                       level: level, config: config, isLast: i == config.levels.count - 1))
            channels = level.channels
        }
        upBlocks = ups
        convNormOut = try GroupNorm(w["conv_norm_out"], channels: c0, epsilon: 1e-5)
        convOut = try Conv2d(w["conv_out"], in: c0, out: config.outChannels, kernel: 3)
    }

    /// The model output (noise, or v, by the checkpoint's training) for `sample` [B, in, h, w] at
    /// `timesteps` (one per sample, or one for all) under `context` [B, tokens, contextDim].
    ///
    /// `residuals` (a ControlNet's, or several summed) are added to the skip connections and to the mid block's
    /// output, as diffusers' `down_block_additional_residuals` / `mid_block_additional_residual`; they must be
    /// one per skip connection (`ControlNetModel` checks the fit when it is loaded).
    ///
    /// `afterEncoder` runs once the down blocks and the mid block are done (their weights are not needed again this
    /// call): the pipeline hands their mapped pages back there for fp32 checkpoints (`UNetPageStreaming`).
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor,
                               residuals: ControlNetResiduals? = nil, afterEncoder: (() -> Void)? = nil) -> Tensor {
        let c = UNetConditioning(timeEmbedding: timeEmbedding(timesteps, batch: sample.shape[0], linear1: timeLinear1,
                                                              linear2: timeLinear2, config: config),
                                 context: context)
        var x = convIn(sample)
        var skips = [x]
        for block in downBlocks {
            let (out, blockSkips) = block(x, c)
            x = out
            skips += blockSkips
        }
        x = midBlock(x, c)
        if let residuals {
            precondition(residuals.down.count == skips.count, "UNet: \(residuals.down.count) ControlNet residuals for \(skips.count) skip connections")
            for i in skips.indices { skips[i] = skips[i] + residuals.down[i] }
            x = x + residuals.mid
        }
        afterEncoder?()
        for block in upBlocks {
            let count = block.resnets.count
            let blockSkips = Array(skips.suffix(count))
            skips.removeLast(count)
            let nextSize = skips.last.map { (height: $0.shape[2], width: $0.shape[3]) }
            x = block(x, skips: blockSkips, upsampleSize: nextSize, c)
        }
        return convOut(convNormOut(x, silu: true))
    }
}

extension UNet2DConditionModel {
    /// Whether the weights are read in place from the checkpoint's mapping (not copies, as a LoRA-patched UNet's are).
    public var isBorrowingWeights: Bool { convIn.weight.isBorrowed }
}

/// `silu(linear_2(silu(linear_1(timestep_embedding(t)))))` for a batch: diffusers' `time_proj` + `time_embedding`, with
/// the SiLU every ResnetBlock2D applies to it first (shared by the UNet and the ControlNet's encoder copy).
func timeEmbedding(_ timesteps: [Float], batch: Int, linear1: Linear, linear2: Linear, config: UNetConfig) -> Tensor {
    let t = timesteps.count == 1 ? Array(repeating: timesteps[0], count: batch) : timesteps
    precondition(t.count == batch, "UNet: \(timesteps.count) timesteps for batch \(batch)")
    let projected = Tensor.timestepEmbedding(t, dimension: config.levels[0].channels, flipSinToCos: config.flipSinToCos,
                                             downscaleFrequencyShift: config.frequencyShift)
    return linear2(linear1(projected).silu()).silu()
}
