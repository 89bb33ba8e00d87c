import DarkroomTensor
import Foundation
import DarkroomWeights

/// The shape of an `AutoencoderKL`, read from its tensors.
public struct VAEConfig: Sendable, Equatable {
    public var imageChannels: Int
    public var latentChannels: Int
    public var blockChannels: [Int]       // encoder order (decoder uses them reversed)
    public var layersPerBlock: Int        // encoder; the decoder has one more per block
    /// Latents are multiplied by this after encoding and divided before decoding (0.18215 for SD 1.x/2.x).
    public var scalingFactor: Float = 0.18215
    /// The image side the VAE was configured for (diffusers `sample_size`), which is also the side of its tiles
    /// when tiling (512 unless the diffusers config says otherwise).
    public var sampleSize = 512

    /// The image-to-latent size ratio: 2^(levels − 1).
    public var downscale: Int { 1 << (blockChannels.count - 1) }

    public static func detect(from w: WeightScope) throws -> VAEConfig {
        let convIn = try w.requireShape("encoder.conv_in.weight", rank: 4)
        let levels = w.countIndices("encoder.down_blocks")
        guard levels > 0 else { throw WeightsError.missingTensor(key: w.key("encoder.down_blocks.0.resnets.0.conv1.weight"), source: w.sourceName) }
        guard levels <= 8 else {
            throw WeightsError.unexpectedShape(key: w.key("encoder.down_blocks"), expected: "1 to 8 levels (SD: 4)", found: [levels], source: w.sourceName)
        }
        let channels = try (0..<levels).map { try w.requireShape("encoder.down_blocks.\($0).resnets.0.conv1.weight", rank: 4)[0] }
        guard w.countIndices("encoder.down_blocks.0.resnets") > 0 else {
            throw WeightsError.missingTensor(key: w.key("encoder.down_blocks.0.resnets.0.conv1.weight"), source: w.sourceName)
        }
        return VAEConfig(imageChannels: convIn[1],
                         latentChannels: try w.requireShape("post_quant_conv.weight", rank: 4)[0],
                         blockChannels: channels,
                         layersPerBlock: w.countIndices("encoder.down_blocks.0.resnets"))
    }
}

/// diffusers `UNetMidBlock2D` as the VAE uses it: ResnetBlock2D, spatial self-attention, ResnetBlock2D.
struct VAEMidBlock: Sendable {
    let resnets: [ResnetBlock2D]
    let attention: Attention

    init(_ w: WeightScope, channels: Int) throws {
        resnets = try (0..<2).map { try ResnetBlock2D(w["resnets.\($0)"], in: channels, out: channels, timeEmbedding: nil, epsilon: 1e-6) }
        let norm = try GroupNorm(w["attentions.0.group_norm"], channels: channels, epsilon: 1e-6)
        attention = try Attention(w["attentions.0"], queryDim: channels, heads: 1, headDim: channels, qkvBias: true, groupNorm: norm)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { resnets[1](attention.spatial(resnets[0](x))) }
}

/// diffusers `Encoder`: conv_in, DownEncoderBlock2Ds (resnets, then a Downsample2D padded right/bottom
/// except at the last level), mid block, GroupNorm+SiLU, conv_out to 2·latent channels (mean, log-variance).
struct Encoder: Sendable {
    let convIn: Conv2d
    let downBlocks: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)]
    let midBlock: VAEMidBlock
    let convNormOut: GroupNorm, convOut: Conv2d

    init(_ w: WeightScope, config: VAEConfig) throws {
        var channels = config.blockChannels[0]
        convIn = try Conv2d(w["conv_in"], in: config.imageChannels, out: channels, kernel: 3)
        var blocks: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)] = []
        for (i, out) in config.blockChannels.enumerated() {
            let resnets = try (0..<config.layersPerBlock).map { j in
                try ResnetBlock2D(w["down_blocks.\(i).resnets.\(j)"], in: j == 0 ? channels : out, out: out, timeEmbedding: nil, epsilon: 1e-6)
            }
            let isLast = i == config.blockChannels.count - 1
            blocks.append((resnets, isLast ? nil : try Downsample2D(w["down_blocks.\(i).downsamplers.0"], channels: out, asymmetricPadding: true)))
            channels = out
        }
        downBlocks = blocks
        midBlock = try VAEMidBlock(w["mid_block"], channels: channels)
        convNormOut = try GroupNorm(w["conv_norm_out"], channels: channels, epsilon: 1e-6)
        convOut = try Conv2d(w["conv_out"], in: channels, out: 2 * config.latentChannels, kernel: 3)
    }

    func callAsFunction(_ image: Tensor) -> Tensor {
        var x = convIn(image)
        for block in downBlocks {
            for resnet in block.resnets { x = resnet(x) }
            if let downsampler = block.downsampler { x = downsampler(x) }
        }
        return convOut(convNormOut(midBlock(x), silu: true))
    }
}

/// diffusers `Decoder`: conv_in, mid block, UpDecoderBlock2Ds (layers + 1 resnets, then an Upsample2D
/// except at the last level), GroupNorm+SiLU, conv_out to image channels.
struct Decoder: Sendable {
    let convIn: Conv2d
    let midBlock: VAEMidBlock
    let upBlocks: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)]
    let convNormOut: GroupNorm, convOut: Conv2d

    init(_ w: WeightScope, config: VAEConfig) throws {
        let reversed = Array(config.blockChannels.reversed())
        var channels = reversed[0]
        convIn = try Conv2d(w["conv_in"], in: config.latentChannels, out: channels, kernel: 3)
        midBlock = try VAEMidBlock(w["mid_block"], channels: channels)
        var blocks: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)] = []
        for (i, out) in reversed.enumerated() {
            let resnets = try (0...config.layersPerBlock).map { j in
                try ResnetBlock2D(w["up_blocks.\(i).resnets.\(j)"], in: j == 0 ? channels : out, out: out, timeEmbedding: nil, epsilon: 1e-6)
            }
            let isLast = i == reversed.count - 1
            blocks.append((resnets, isLast ? nil : try Upsample2D(w["up_blocks.\(i).upsamplers.0"], channels: out)))
            channels = out
        }
        upBlocks = blocks
        convNormOut = try GroupNorm(w["conv_norm_out"], channels: channels, epsilon: 1e-6)
        convOut = try Conv2d(w["conv_out"], in: channels, out: config.imageChannels, kernel: 3)
    }

    func callAsFunction(_ latent: Tensor) -> Tensor {
        var x = midBlock(convIn(latent))
        for block in upBlocks {
            for resnet in block.resnets { x = resnet(x) }
            if let upsampler = block.upsampler { x = upsampler(x) }
        }
        return convOut(convNormOut(x, silu: true))
    }
}

/// diffusers `DiagonalGaussianDistribution`: the encoder's posterior over latents.
public struct DiagonalGaussianDistribution: Sendable {
    public let mean: Tensor
    public let std: Tensor

    /// From moments [B, 2·C, h, w] = (mean, log-variance); the log-variance is clamped to [-30, 20].
    init(moments: Tensor) {
        let halves = moments.chunked(2, axis: 1)
        mean = halves[0]
        var std = halves[1]
        std.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = Foundation.exp(0.5 * min(max(p[i], -30), 20)) }
        }
        self.std = std
    }

    /// mean + std · noise (noise drawn by the caller, in the order diffusers draws it).
    public func sample(noise: Tensor) -> Tensor { mean + std * noise }
}

/// diffusers `AutoencoderKL`: encoder + `quant_conv` → posterior; `post_quant_conv` + decoder → image.
/// Images are [B, 3, H, W] in [-1, 1]; latents are unscaled here (the pipeline applies `scalingFactor`).
public struct AutoencoderKL: Sendable {
    public let config: VAEConfig
    let encoder: Encoder, decoder: Decoder
    let quantConv: Conv2d, postQuantConv: Conv2d

    public init(_ w: WeightScope, config: VAEConfig) throws {
        self.config = config
        encoder = try Encoder(w["encoder"], config: config)
        decoder = try Decoder(w["decoder"], config: config)
        quantConv = try Conv2d(w["quant_conv"], in: 2 * config.latentChannels, out: 2 * config.latentChannels, kernel: 1)
        postQuantConv = try Conv2d(w["post_quant_conv"], in: config.latentChannels, out: config.latentChannels, kernel: 1)
    }

    public func encode(_ image: Tensor) -> DiagonalGaussianDistribution {
        DiagonalGaussianDistribution(moments: quantConv(encoder(image)))
    }

    public func decode(_ latent: Tensor) -> Tensor { decoder(postQuantConv(latent)) }
}
