import DarkroomTensor
import DarkroomWeights

/// The sizes of an SRVGGNetCompact, read from its tensors' shapes (spandrel `architectures/Compact/__init__.py`).
public struct SRVGGNetCompactConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    /// Feature channels (`num_feat`): 64 in realesr-general-x4v3.
    public var features: Int
    /// 3×3 convolutions between the first and the last (`num_conv`): 32 in realesr-general-x4v3.
    public var convolutions: Int
    public var scale: Int

    /// Sizes from `body.<n>` keys: body.0 is the first conv, odd indices PReLUs, the highest the last conv,
    /// whose out-channels are out · scale² (spandrel `get_scale_and_output_channels`, for RGB).
    public static func detect(from w: WeightScope) throws -> SRVGGNetCompactConfig {
        let first = try w.requireShape("body.0.weight", rank: 4)
        let modules = w.countIndices("body")
        guard modules >= 3, modules % 2 == 1 else {
            throw WeightsError.unsupportedUpscaler(path: w.sourceName, detail: "its body has \(modules) modules; an SRVGGNetCompact has a conv, PReLU pairs and a last conv (an odd number)")
        }
        let last = try w.requireShape("body.\(modules - 1).weight", rank: 4)
        let (inChannels, features) = (first[1], first[0])
        let outChannels = 3
        var scale = 1
        while outChannels * (scale + 1) * (scale + 1) <= last[0] { scale += 1 }
        guard inChannels == 3, outChannels * scale * scale == last[0], scale <= 8 else {
            throw WeightsError.unsupportedUpscaler(path: w.sourceName, detail: "body.0.weight \(first) and body.\(modules - 1).weight \(last) are not an RGB SRVGGNetCompact (3 channels in, 3 · scale² out)")
        }
        return SRVGGNetCompactConfig(inChannels: inChannels, outChannels: outChannels, features: features,
                                     convolutions: (modules - 3) / 2, scale: scale)
    }
}

/// Real-ESRGAN's compact VGG-style network (spandrel `architectures/Compact/__arch/SRVGG.py::SRVGGNetCompact`,
/// PReLU activations) on images in [0, 1]:
///
///     h = prelu_1(body_0(x));  h = prelu_{2i+3}(body_{2i+2}(h))  for i in 0..<convolutions
///     out = pixel_shuffle(body_last(h), scale) + nearest_upsample(x, scale)
public struct SRVGGNetCompact: Sendable {
    public let config: SRVGGNetCompactConfig
    let convs: [Conv2d]
    let activations: [Tensor]

    public init(_ w: WeightScope) throws {
        let c = try SRVGGNetCompactConfig.detect(from: w)
        config = c
        var convs = [try Conv2d(w["body.0"], in: c.inChannels, out: c.features, kernel: 3)]
        var activations: [Tensor] = []
        for i in 0...c.convolutions {
            activations.append(try w["body.\(2 * i + 1)"].tensor("weight", shape: [c.features]))
            if i < c.convolutions { convs.append(try Conv2d(w["body.\(2 * i + 2)"], in: c.features, out: c.features, kernel: 3)) }
        }
        convs.append(try Conv2d(w["body.\(2 * c.convolutions + 2)"], in: c.features, out: c.outChannels * c.scale * c.scale, kernel: 3))
        self.convs = convs
        self.activations = activations
    }

    /// [N, 3, H, W] in [0, 1] → [N, 3, H·scale, W·scale] (not clamped).
    public func callAsFunction(_ image: Tensor) -> Tensor {
        var h = image
        for (conv, slope) in zip(convs, activations) { h = conv(h).prelu(weight: slope) }   // [N, features, H, W]
        let s = config.scale
        let out = convs[convs.count - 1](h).pixelShuffle(s)                                  // [N, 3, H·s, W·s]
        return out + image.upsampleNearest(height: image.dim(2) * s, width: image.dim(3) * s)
    }
}
