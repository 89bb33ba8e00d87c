import DarkroomTensor
import DarkroomWeights
import Foundation

/// The shape of a `ControlNetModel`, read from its tensors: the UNet encoder copy (`unet`, without up blocks) and the
/// conditioning embedding.
public struct ControlNetConfig: Sendable, Equatable {
    /// The encoder copy: time embedding, `conv_in`, down blocks and mid block, exactly as in the UNet it was made from.
    public var unet: UNetConfig
    /// Channels of the control image (3 for every SD 1.x/2.x ControlNet).
    public var conditioningChannels: Int
    /// diffusers' `conditioning_embedding_out_channels`: (16, 32, 96, 256) in SD's ControlNets.
    public var embeddingChannels: [Int]
    /// diffusers' `global_pool_conditions` (LDM `global_average_pooling`, the shuffle ControlNet): residuals averaged
    /// over the image, and guess mode always on.
    public var globalPoolConditions = false
    /// diffusers' `controlnet_conditioning_channel_order` "bgr": the control image's channels are reversed first.
    public var bgrChannelOrder = false

    /// How much smaller the embedding is than the control image: 2 per stride-2 convolution (8 in SD).
    public var embeddingDownscale: Int { 1 << max(0, embeddingChannels.count - 1) }

    /// The channels of the skip connections a UNet of `config` keeps (conv_in's output, then one per resnet and per
    /// downsampler): one ControlNet residual each.
    public static func skipChannels(_ config: UNetConfig) -> [Int] {
        var channels = [config.levels.first?.channels ?? 0]
        for (i, level) in config.levels.enumerated() {
            channels += Array(repeating: level.channels, count: config.layersPerBlock + (i == config.levels.count - 1 ? 0 : 1))
        }
        return channels
    }

    /// Reads the configuration from the tensors under `w` (diffusers names: `controlnet_cond_embedding.conv_in.weight`,
    /// `down_blocks.*`, `controlnet_down_blocks.*`, …). `contextDim` is the text width to assume when no level has
    /// transformer layers (see `UNetConfig.detect`). SDXL's added conditioning is read by the loader
    /// (`UNetConfig.detectAddedConditioning`), which knows the model's.
    public static func detect(from w: WeightScope, heads: AttentionHeads, contextDim: Int? = nil) throws -> ControlNetConfig {
        let unet = try UNetConfig.detect(from: w, heads: heads, decoder: false, contextDim: contextDim)
        let e = w["controlnet_cond_embedding"]
        let convIn = try e.requireShape("conv_in.weight", rank: 4)
        let blockCount = e.countIndices("blocks")
        guard blockCount % 2 == 0 else {
            throw WeightsError.missingTensor(key: e.key("blocks.\(blockCount).weight"), source: w.sourceName)
        }
        var channels = [convIn[0]]
        for k in 0..<(blockCount / 2) { channels.append(try e.requireShape("blocks.\(2 * k + 1).weight", rank: 4)[0]) }
        return ControlNetConfig(unet: unet, conditioningChannels: convIn[1], embeddingChannels: channels)
    }
}

/// diffusers `ControlNetConditioningEmbedding`: the control image to the UNet's first feature width at latent size.
///
///     e = silu(conv_in(image))
///     for each level: e = silu(conv(e)); e = silu(conv_stride2(e))      [B, c_k, H, W] → [B, c_k+1, H/2, W/2]
///     out = conv_out(e)                                                  [B, C0, H/8, W/8]
struct ControlNetConditioningEmbedding: Sendable {
    let convIn: Conv2d
    let blocks: [Conv2d]
    let convOut: Conv2d

    init(_ w: WeightScope, conditioningChannels: Int, channels: [Int], outChannels: Int) throws {
        convIn = try Conv2d(w["conv_in"], in: conditioningChannels, out: channels[0], kernel: 3)
        var blocks: [Conv2d] = []
        for k in 0..<(channels.count - 1) {
            blocks.append(try Conv2d(w["blocks.\(2 * k)"], in: channels[k], out: channels[k], kernel: 3))
            blocks.append(try Conv2d(w["blocks.\(2 * k + 1)"], in: channels[k], out: channels[k + 1], kernel: 3, stride: 2))
        }
        self.blocks = blocks
        convOut = try Conv2d(w["conv_out"], in: channels[channels.count - 1], out: outChannels, kernel: 3)
    }

    func callAsFunction(_ image: Tensor) -> Tensor {
        var e = convIn(image).silu()
        for block in blocks { e = block(e).silu() }
        return convOut(e)
    }
}

/// What a ControlNet adds to a UNet: one residual per skip connection and one for the mid block's output
/// (diffusers' `down_block_res_samples`, `mid_block_res_sample`). Several ControlNets add up (`+`).
public struct ControlNetResiduals: Sendable {
    public var down: [Tensor]
    public var mid: Tensor

    public init(down: [Tensor], mid: Tensor) {
        self.down = down
        self.mid = mid
    }

    /// Multi-ControlNet: the sum, residual by residual (diffusers `MultiControlNetModel`).
    public static func + (a: ControlNetResiduals, b: ControlNetResiduals) -> ControlNetResiduals {
        ControlNetResiduals(down: zip(a.down, b.down).map { $0 + $1 }, mid: a.mid + b.mid)
    }

    /// Residuals computed for the conditional half of a guided batch only, with zeros for the unconditional half in
    /// front (diffusers' guess mode: `torch.cat([torch.zeros_like(d), d])`).
    public func withZerosForUnconditional() -> ControlNetResiduals {
        func pad(_ t: Tensor) -> Tensor { Tensor.concatenate([Tensor(zeros: t.shape), t], axis: 0) }
        return ControlNetResiduals(down: down.map(pad), mid: pad(mid))
    }
}

/// diffusers `ControlNetModel` (SD 1.x/2.x and SDXL): a copy of the UNet's encoder that sees the noisy latents plus
/// an embedding of the control image, and returns residuals for the UNet's skip connections through 1×1 "zero"
/// convolutions.
///
///     emb = time embedding(t)                        (as the UNet's; SDXL: + add_embedding(text_embeds, time_ids))
///     x = conv_in(sample) + controlnet_cond_embedding(image)
///     down blocks → skips [x, …];  mid block → m     (the UNet's own block types)
///     down residuals = controlnet_down_blocks[i](skips[i]) · scale_i;  mid = controlnet_mid_block(m) · scale
///
/// scale_i is `conditioning_scale`, or in guess mode `logspace(-1, 0, n + 1)[i] · conditioning_scale` (0.1 for the
/// first skip up to 1 for the mid block). This implementation matches diffusers
/// `models/controlnets/controlnet.py` (0.42.1).
public struct ControlNetModel: Sendable {
    public let config: ControlNetConfig
    /// The file or folder it was loaded from, for reports and errors.
    public let source: String
    /// Where the weights are mapped from (for `dropResidentPages`).
    let tensors: any TensorSource
    let timeEmbedding: UNetTimeEmbedding
    let convIn: Conv2d
    let conditioningEmbedding: ControlNetConditioningEmbedding
    let downBlocks: [UNetDownBlock]
    let midBlock: MidBlock
    let zeroConvs: [Conv2d]
    let midZeroConv: Conv2d

    /// diffusers' `mid_block_type`: `UNetMidBlock2DCrossAttn` (the UNet's), or `UNetMidBlock2D` without attention.
    enum MidBlock: Sendable {
        case crossAttention(UNetMidBlock2DCrossAttn)
        case resnetOnly(UNetMidBlock2D)
    }

    /// Loads the weights under `w` (diffusers names) for `config`, checking every shape.
    public init(_ w: WeightScope, config: ControlNetConfig) throws {
        self.config = config
        source = w.sourceName
        tensors = w.source
        let unet = config.unet
        let c0 = unet.levels[0].channels
        timeEmbedding = try UNetTimeEmbedding(w, config: unet)
        convIn = try Conv2d(w["conv_in"], in: unet.inChannels, out: c0, kernel: 3)
        conditioningEmbedding = try ControlNetConditioningEmbedding(
            w["controlnet_cond_embedding"], conditioningChannels: config.conditioningChannels,
            channels: config.embeddingChannels, outChannels: c0)
        var downs: [UNetDownBlock] = [], channels = c0
        for (i, level) in unet.levels.enumerated() {
            downs.append(try UNetDownBlock(w["down_blocks.\(i)"], in: channels, out: level.channels, level: level,
                                           config: unet, isLast: i == unet.levels.count - 1))
            channels = level.channels
        }
        downBlocks = downs
        midBlock = unet.midBlockHasAttention ? .crossAttention(try UNetMidBlock2DCrossAttn(w["mid_block"], channels: channels, config: unet))
            : .resnetOnly(try UNetMidBlock2D(w["mid_block"], channels: channels, config: unet))
        zeroConvs = try ControlNetConfig.skipChannels(unet).enumerated().map { i, c in
            try Conv2d(w["controlnet_down_blocks.\(i)"], in: c, out: c, kernel: 1)
        }
        if w.has("controlnet_down_blocks.\(zeroConvs.count).weight") {
            throw WeightsError.unexpectedShape(key: w.key("controlnet_down_blocks.\(zeroConvs.count).weight"),
                                               expected: "\(zeroConvs.count) zero convolutions, one per skip connection",
                                               found: w.shape("controlnet_down_blocks.\(zeroConvs.count).weight") ?? [], source: w.sourceName)
        }
        midZeroConv = try Conv2d(w["controlnet_mid_block"], in: channels, out: channels, kernel: 1)
    }

    /// Takes the ControlNet's mapped weights out of the process's resident set once the denoising loop is done, as the
    /// pipeline does with the UNet's (`StableDiffusionPipeline.releaseUNetPages`), so they do not add to the VAE
    /// decoder's peak; the next job maps them back from the page cache.
    public func dropResidentPages() {
        (tensors as? Checkpoint)?.dropResidentPages(prefix: "controlnet")
    }

    /// The conditioning embedding of a control image [B, 3, H, W] (H, W multiples of `embeddingDownscale`):
    /// [B, C0, H/8, W/8]. It does not depend on the step, so a pipeline computes it once per image.
    public func embed(_ image: Tensor) -> Tensor {
        guard config.bgrChannelOrder else { return conditioningEmbedding(image) }
        let channels = (0..<image.shape[1]).reversed().map { image.slice($0..<($0 + 1), axis: 1) }
        return conditioningEmbedding(Tensor.concatenate(channels, axis: 1))
    }

    /// The residuals for `sample` [B, in, h, w] at `timesteps` under `context` [B, tokens, width], with `image`
    /// [B or 1, 3, 8h, 8w] the control image (in [0, 1], or −1 for masked pixels of the inpaint ControlNet).
    /// `added` is SDXL's added conditioning, the UNet's own (`text_embeds`, `time_ids`): an SDXL ControlNet needs it.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor, added: UNetAddedConditioning? = nil,
                               image: Tensor, scale: Float = 1, guessMode: Bool = false) -> ControlNetResiduals {
        self(sample, timesteps: timesteps, context: context, added: added, embedding: embed(image), scale: scale, guessMode: guessMode)
    }

    /// The same with the control image already embedded (`embed`); an embedding of batch 1 serves any batch.
    public func callAsFunction(_ sample: Tensor, timesteps: [Float], context: Tensor, added: UNetAddedConditioning? = nil,
                               embedding: Tensor, scale: Float = 1, guessMode: Bool = false) -> ControlNetResiduals {
        let c = UNetConditioning(timeEmbedding: timeEmbedding(timesteps, batch: sample.shape[0], added: added), context: context)
        var x = convIn(sample) + embedding
        var skips = [x]
        for block in downBlocks {
            let (out, blockSkips) = block(x, c)
            x = out
            skips += blockSkips
        }
        switch midBlock {
        case .crossAttention(let block): x = block(x, c)
        case .resnetOnly(let block): x = block(x, c)
        }
        // 5. zero convolutions, 6. scaling (diffusers' numbering).
        let scales = Self.residualScales(count: skips.count, scale: scale, guessMode: guessMode || config.globalPoolConditions)
        var residuals = ControlNetResiduals(down: zip(zeroConvs, skips).enumerated().map { i, pair in pair.0(pair.1) * scales[i] },
                                            mid: midZeroConv(x) * scales[skips.count])
        if config.globalPoolConditions {
            residuals = ControlNetResiduals(down: residuals.down.map { $0.spatialMean() }, mid: residuals.mid.spatialMean())
        }
        return residuals
    }

    /// The factor of each down residual and, last, of the mid residual: `scale` for all, or in guess mode
    /// `torch.logspace(-1, 0, count + 1) * scale` computed as torch does in float32 (`linspace` from both ends).
    static func residualScales(count: Int, scale: Float, guessMode: Bool) -> [Float] {
        guard guessMode else { return Array(repeating: scale, count: count + 1) }
        let steps = count + 1
        let step: Float = (0 - -1) / Float(steps - 1)
        return (0..<steps).map { i in
            let exponent: Float = i < steps / 2 ? -1 + step * Float(i) : 0 - step * Float(steps - i - 1)
            return Float(pow(10, exponent)) * scale
        }
    }
}

extension Tensor {
    /// [B, C, H, W] → [B, C, 1, 1]: the mean over the image (`torch.mean(x, dim=(2, 3), keepdim=True)`).
    func spatialMean() -> Tensor {
        let (planes, size) = (shape[0] * shape[1], shape[2] * shape[3])
        var out = Tensor(zeros: [shape[0], shape[1], 1, 1])
        withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    var sum: Double = 0
                    for i in 0..<size { sum += Double(src[p * size + i]) }
                    dst[p] = Float(sum / Double(max(size, 1)))
                }
            }
        }
        return out
    }
}
