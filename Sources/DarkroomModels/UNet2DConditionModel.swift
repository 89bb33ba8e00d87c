import DarkroomTensor
import DarkroomWeights

/// diffusers `UNet2DConditionModel` as Stable Diffusion 1.x/2.x and SDXL configure it (4- or 9-channel input):
///
///     emb = linear_2(silu(linear_1(timestep_embedding(t))))
///     SDXL: emb += add_embedding(concat(text_embeds, add_time_proj(time_ids)))   # "text_time"
///     x = conv_in(sample); skips = [x]
///     down blocks (resnets + transformers, downsample) → skips
///     mid block (resnet, transformer, resnet)
///     up blocks (concat skip, resnet, transformer; upsample)
///     out = conv_out(silu(conv_norm_out(x)))
public struct UNet2DConditionModel: Sendable {
    public let config: UNetConfig
    let timeEmbedding: UNetTimeEmbedding
    let convIn: Conv2d
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock2DCrossAttn
    let upBlocks: [UNetUpBlock]
    let convNormOut: GroupNorm, convOut: Conv2d

    /// Loads the weights under `w` (diffusers names) for `config`, checking every shape.
    public init(_ w: WeightScope, config: UNetConfig) throws {
        self.config = config
        let c0 = config.levels[0].channels
        timeEmbedding = try UNetTimeEmbedding(w, config: config)
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
    ///
    /// `added` is SDXL's added conditioning (diffusers `added_cond_kwargs`): `textEmbeds` [B, pooled] and `timeIDs`
    /// [B, n] (original size, crop top-left, target size; the refiner's aesthetic score in place of the target
    /// size). A UNet with `add_embedding` needs it; others ignore it.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor, added: UNetAddedConditioning? = nil,
                               residuals: ControlNetResiduals? = nil, afterEncoder: (() -> Void)? = nil) -> Tensor {
        let c = UNetConditioning(timeEmbedding: timeEmbedding(timesteps, batch: sample.shape[0], added: added), context: context)
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

/// diffusers' `time_proj` + `time_embedding`, and for SDXL `add_time_proj` + `add_embedding` ("text_time"), with the
/// SiLU every ResnetBlock2D applies to the result first (shared by the UNet and the ControlNet's encoder copy):
///
///     emb = linear_2(silu(linear_1(timestep_embedding(t))))                      [B, 4·C0]
///     SDXL: emb += add_embedding(concat(text_embeds, add_time_proj(time_ids)))
///     out = silu(emb)
struct UNetTimeEmbedding: Sendable {
    let config: UNetConfig
    let linear1: Linear, linear2: Linear
    /// SDXL's `add_embedding` (a TimestepEmbedding: linear_1, SiLU, linear_2); nil for SD 1.x/2.x.
    let addEmbedding: (linear1: Linear, linear2: Linear)?

    init(_ w: WeightScope, config: UNetConfig) throws {
        self.config = config
        linear1 = try Linear(w["time_embedding.linear_1"], in: config.levels[0].channels, out: config.timeEmbeddingWidth)
        linear2 = try Linear(w["time_embedding.linear_2"], in: config.timeEmbeddingWidth, out: config.timeEmbeddingWidth)
        addEmbedding = try config.addedConditioning.map {
            (try Linear(w["add_embedding.linear_1"], in: $0.inputWidth, out: config.timeEmbeddingWidth),
             try Linear(w["add_embedding.linear_2"], in: config.timeEmbeddingWidth, out: config.timeEmbeddingWidth))
        }
    }

    /// The embedding for a batch of `batch` at `timesteps` (one per sample, or one for all); `added` is required when
    /// the network has `add_embedding` (callers check it before running) and ignored otherwise.
    func callAsFunction(_ timesteps: [Float], batch: Int, added: UNetAddedConditioning?) -> Tensor {
        let t = timesteps.count == 1 ? Array(repeating: timesteps[0], count: batch) : timesteps
        precondition(t.count == batch, "UNet: \(timesteps.count) timesteps for batch \(batch)")
        let projected = Tensor.timestepEmbedding(t, dimension: config.levels[0].channels, flipSinToCos: config.flipSinToCos,
                                                 downscaleFrequencyShift: config.frequencyShift)
        let emb = linear2(linear1(projected).silu())                               // [B, 4·C0]
        guard let addEmbedding, let dims = config.addedConditioning else { return emb.silu() }
        guard let added else { preconditionFailure("UNet: this network has add_embedding (SDXL) and needs text_embeds and time_ids") }
        let augmented = added.embedding(timeEmbedDim: dims.timeEmbedDim, flipSinToCos: config.flipSinToCos,
                                        frequencyShift: config.frequencyShift, linear1: addEmbedding.linear1, linear2: addEmbedding.linear2)
        precondition(augmented.shape == emb.shape, "UNet: added conditioning \(augmented.shape) for a time embedding \(emb.shape)")
        return (emb + augmented).silu()
    }
}

/// SDXL's added conditioning for one UNet call (diffusers `added_cond_kwargs`).
public struct UNetAddedConditioning: Sendable {
    /// The pooled, projected text embedding [B, pooled] (`text_embeds`).
    public var textEmbeds: Tensor
    /// The micro-conditioning numbers [B, n] (`time_ids`).
    public var timeIDs: Tensor

    public init(textEmbeds: Tensor, timeIDs: Tensor) {
        self.textEmbeds = textEmbeds
        self.timeIDs = timeIDs
    }

    /// `add_embedding(concat(text_embeds, add_time_proj(time_ids.flatten()).reshape(B, -1)))` → [B, 4·C0].
    func embedding(timeEmbedDim: Int, flipSinToCos: Bool, frequencyShift: Float, linear1: Linear, linear2: Linear) -> Tensor {
        let batch = textEmbeds.shape[0]
        precondition(timeIDs.shape.count == 2 && timeIDs.shape[0] == batch && textEmbeds.shape.count == 2,
                     "UNet: time_ids \(timeIDs.shape) and text_embeds \(textEmbeds.shape) must be [B, n] and [B, pooled]")
        let times = Tensor.timestepEmbedding(timeIDs.scalars, dimension: timeEmbedDim, flipSinToCos: flipSinToCos,
                                             downscaleFrequencyShift: frequencyShift)
            .reshaped([batch, timeIDs.shape[1] * timeEmbedDim])                 // [B, n·D]
        let input = Tensor.concatenate([textEmbeds, times], axis: 1)           // [B, pooled + n·D]
        precondition(input.shape[1] == linear1.weight.shape[1],
                     "UNet: add_embedding takes \(linear1.weight.shape[1]) inputs, given \(textEmbeds.shape[1]) + \(timeIDs.shape[1])×\(timeEmbedDim)")
        return linear2(linear1(input).silu())
    }
}
