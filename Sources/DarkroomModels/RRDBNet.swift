import DarkroomTensor
import DarkroomWeights

/// The sizes of an RRDBNet, read from its tensors' shapes (spandrel `architectures/ESRGAN/__init__.py::load`).
public struct RRDBNetConfig: Sendable, Equatable {
    /// Channels `conv_first` takes: 3, or 3·r² after a pixel unshuffle by r (Real-ESRGAN x2plus: 12, x1: 48).
    public var inChannels: Int
    public var outChannels: Int
    /// Feature channels (`num_feat`, spandrel's `num_filters`): 64 in full-size models.
    public var features: Int
    /// RRDB blocks in the trunk (`num_block`): 23 in full-size models.
    public var blocks: Int
    /// Growth channels of each dense-block convolution (`num_grow_ch`): 32.
    public var growth: Int
    /// Nearest 2× upsampling + conv steps (`conv_up1`, `conv_up2`, …).
    public var upsamplings: Int
    /// The input's pixel-unshuffle factor: 1 (none), 2 or 4.
    public var unshuffle: Int

    /// The model's overall scale: 2^upsamplings / unshuffle.
    public var scale: Int { (1 << upsamplings) / unshuffle }

    /// Sizes from the canonical keys (`UpscalerKeyMap`). Throws naming the tensor that does not fit.
    public static func detect(from w: WeightScope) throws -> RRDBNetConfig {
        let first = try w.requireShape("conv_first.weight", rank: 4)
        let last = try w.requireShape("conv_last.weight", rank: 4)
        let grow = try w.requireShape("body.0.rdb1.conv1.weight", rank: 4)
        let blocks = w.countIndices("body")
        var upsamplings = 0
        while w.has("conv_up\(upsamplings + 1).weight") { upsamplings += 1 }
        let (inChannels, outChannels) = (first[1], last[0])
        // A pixel-unshuffled input has 4 or 16 times the output's channels (spandrel's rule).
        let unshuffle = inChannels == outChannels * 4 ? 2 : inChannels == outChannels * 16 ? 4 : 1
        let config = RRDBNetConfig(inChannels: inChannels, outChannels: outChannels, features: first[0], blocks: blocks,
                                   growth: grow[0], upsamplings: upsamplings, unshuffle: unshuffle)
        guard inChannels / (unshuffle * unshuffle) == 3, outChannels == 3 else {
            throw WeightsError.unsupportedUpscaler(path: w.sourceName, detail: "it maps \(inChannels) to \(outChannels) channels (conv_first.weight \(first), conv_last.weight \(last)); Darkroom runs RGB models (3 channels in, or 12/48 pixel-unshuffled, and 3 out)")
        }
        guard blocks >= 1, upsamplings <= 3, (1 << upsamplings) % unshuffle == 0 else {
            throw WeightsError.unsupportedUpscaler(path: w.sourceName, detail: "\(blocks) RRDB blocks, \(upsamplings) upsamplings and a pixel unshuffle by \(unshuffle) make no upscaler Darkroom runs")
        }
        return config
    }
}

/// ESRGAN's residual dense block (spandrel `ResidualDenseBlock_5C`, basicsr `ResidualDenseBlock`): five 3×3
/// convolutions, each seeing the block input and every earlier output:
///
///     x1 = lrelu(conv1(x));  x2 = lrelu(conv2([x, x1]));  …;  x5 = conv5([x, x1, x2, x3, x4])
///     out = x5 · 0.2 + x
struct ResidualDenseBlock: Sendable {
    let convs: [Conv2d]

    init(_ w: WeightScope, features: Int, growth: Int) throws {
        convs = try (1...5).map { j in
            try Conv2d(w["conv\(j)"], in: features + (j - 1) * growth, out: j < 5 ? growth : features, kernel: 3)
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var features = [x]
        for conv in convs.dropLast() {
            features.append(conv(Tensor.concatenate(features, axis: 1)).leakyReLU(slope: 0.2))   // [N, growth, H, W]
        }
        return convs[4](Tensor.concatenate(features, axis: 1)) * 0.2 + x                      // [N, features, H, W]
    }
}

/// Residual in residual dense block (spandrel `RRDB`): three dense blocks, scaled residual.
///
///     out = rdb3(rdb2(rdb1(x))) · 0.2 + x
struct RRDB: Sendable {
    let rdb1: ResidualDenseBlock, rdb2: ResidualDenseBlock, rdb3: ResidualDenseBlock

    init(_ w: WeightScope, features: Int, growth: Int) throws {
        rdb1 = try ResidualDenseBlock(w["rdb1"], features: features, growth: growth)
        rdb2 = try ResidualDenseBlock(w["rdb2"], features: features, growth: growth)
        rdb3 = try ResidualDenseBlock(w["rdb3"], features: features, growth: growth)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { rdb3(rdb2(rdb1(x))) * 0.2 + x }
}

/// ESRGAN's generator (spandrel `architectures/ESRGAN/__arch/RRDB.py::RRDBNet`, Real-ESRGAN/basicsr
/// `rrdbnet_arch.py::RRDBNet`) on images in [0, 1]:
///
///     x = pixel_unshuffle(reflect_pad(x))         (x2plus-style models only)
///     feat = conv_first(x)
///     feat = feat + conv_body(body(feat))          (body: `blocks` RRDBs)
///     feat = lrelu(conv_up_u(nearest_2x(feat)))    for u in 1…upsamplings
///     out = conv_last(lrelu(conv_hr(feat)))
public struct RRDBNet: Sendable {
    public let config: RRDBNetConfig
    let convFirst: Conv2d
    let body: [RRDB]
    let convBody: Conv2d
    let convUp: [Conv2d]
    let convHR: Conv2d, convLast: Conv2d

    public init(_ w: WeightScope) throws {
        let c = try RRDBNetConfig.detect(from: w)
        config = c
        convFirst = try Conv2d(w["conv_first"], in: c.inChannels, out: c.features, kernel: 3)
        body = try (0..<c.blocks).map { try RRDB(w["body.\($0)"], features: c.features, growth: c.growth) }
        convBody = try Conv2d(w["conv_body"], in: c.features, out: c.features, kernel: 3)
        convUp = try (1...max(1, c.upsamplings)).prefix(c.upsamplings).map { try Conv2d(w["conv_up\($0)"], in: c.features, out: c.features, kernel: 3) }
        convHR = try Conv2d(w["conv_hr"], in: c.features, out: c.features, kernel: 3)
        convLast = try Conv2d(w["conv_last"], in: c.features, out: c.outChannels, kernel: 3)
    }

    /// [N, 3, H, W] in [0, 1] → [N, 3, H·scale, W·scale] (not clamped).
    public func callAsFunction(_ image: Tensor) -> Tensor {
        let (height, width) = (image.dim(2), image.dim(3))
        var x = image
        if config.unshuffle > 1 {
            // spandrel pads to a multiple of the factor by reflection, and crops the result back.
            let r = config.unshuffle
            x = x.padReflect(right: (r - width % r) % r, bottom: (r - height % r) % r).pixelUnshuffle(r)   // [N, 3r², ⌈H/r⌉, ⌈W/r⌉]
        }
        var feat = convFirst(x)                                                                         // [N, features, h, w]
        var trunk = feat
        for block in body { trunk = block(trunk) }
        feat = feat + convBody(trunk)
        for conv in convUp { feat = conv(feat.upsampleNearest2x()).leakyReLU(slope: 0.2) }              // [N, features, 2h, 2w] each
        var out = convLast(convHR(feat).leakyReLU(slope: 0.2))                                          // [N, 3, h·2^u, w·2^u]
        if config.unshuffle > 1, out.dim(2) != height * config.scale || out.dim(3) != width * config.scale {
            out = out.slice(0..<(height * config.scale), axis: 2).slice(0..<(width * config.scale), axis: 3)
        }
        return out
    }
}
