extension Tensor {
    /// `torch.nn.GroupNorm` over `self` [N, C, ...]: channels split into `groups`; each (sample, group)
    /// normalised to zero mean and unit variance (biased), then scaled by `weight` [C] and shifted by `bias` [C].
    /// With `silu: true` the SiLU that follows every GroupNorm in SD's ResNet blocks is fused in.
    public func groupNorm(groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, silu: Bool = false) -> Tensor {
        var out = Tensor(uninitialized: shape)
        withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                Tensor.groupNorm(x.baseAddress!, into: o.baseAddress!, shape: shape, groups: groups, weight: weight,
                                 bias: bias, epsilon: epsilon, silu: silu)
            }
        }
        return out
    }

    /// `groupNorm` written over this tensor's own elements (copied first only if they are shared): the same values,
    /// without a new tensor, for an activation that is not needed afterwards.
    public mutating func formGroupNorm(groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, silu: Bool = false) {
        let shape = self.shape
        withUnsafeMutableBufferPointer { x in
            Tensor.groupNorm(x.baseAddress!, into: x.baseAddress!, shape: shape, groups: groups, weight: weight,
                             bias: bias, epsilon: epsilon, silu: silu)
        }
    }

    /// Each (sample, group) task reads its elements for the statistics before it writes them, so `o` may be `x`.
    private static func groupNorm(_ x: UnsafePointer<Float>, into o: UnsafeMutablePointer<Float>, shape: [Int],
                                  groups: Int, weight: Tensor, bias: Tensor, epsilon: Float, silu: Bool) {
        precondition(shape.count >= 2, "groupNorm: input \(shape) has no channel dimension")
        let (batch, channels) = (shape[0], shape[1])
        precondition(channels % groups == 0 && weight.count == channels && bias.count == channels,
                     "groupNorm: \(channels) channels, \(groups) groups, weight \(weight.shape), bias \(bias.shape)")
        let spatial = Tensor.elementCount(shape) / max(batch * channels, 1)
        let perGroup = channels / groups
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                Parallel.forEach(batch * groups) { item in
                    let n = item / groups, g = item % groups
                    let offset = (n * channels + g * perGroup) * spatial
                    let (mean, variance) = Tensor.meanAndVariance(x + offset, perGroup * spatial)
                    let invStd = 1 / (variance + epsilon).squareRoot()
                    for c in (g * perGroup)..<((g + 1) * perGroup) {
                        let scale = w[c] * invStd, shift = b[c] - mean * scale
                        let src = x + (n * channels + c) * spatial, dst = o + (n * channels + c) * spatial
                        Tensor.affine(src, dst, spatial, scale: scale, shift: shift, silu: silu)
                    }
                }
            }
        }
    }

    /// `torch.nn.LayerNorm` over the last dimension, with `weight` and `bias` of that size.
    public func layerNorm(weight: Tensor, bias: Tensor, epsilon: Float) -> Tensor {
        let width = dim(-1)
        precondition(weight.count == width && bias.count == width, "layerNorm: input \(shape), weight \(weight.shape)")
        let rows = count / max(width, 1)
        var out = Tensor(uninitialized: shape)
        withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { b in
                    out.withUnsafeMutableBufferPointer { o in
                        let x = x.baseAddress!, o = o.baseAddress!, w = w.baseAddress!, b = b.baseAddress!
                        Parallel.forEachRange(rows, grain: max(1, 16_384 / max(width, 1))) { range in
                            for r in range {
                                let src = x + r * width, dst = o + r * width
                                let (mean, variance) = Tensor.meanAndVariance(src, width)
                                let invStd = 1 / (variance + epsilon).squareRoot()
                                for i in 0..<width { dst[i] = (src[i] - mean) * invStd * w[i] + b[i] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Mean and biased variance, two passes; partial sums in Float lanes, totals in Double.
    @inlinable
    static func meanAndVariance(_ p: UnsafePointer<Float>, _ count: Int) -> (Float, Float) {
        func sum(_ f: (VectorMath.V) -> VectorMath.V, _ g: (Float) -> Float) -> Double {
            var total = 0.0, i = 0
            while i < count {
                let end = min(count, i + 4096)
                var lanes = VectorMath.V.zero
                while i + 16 <= end { lanes += f(VectorMath.load(p + i)); i += 16 }
                var partial = Double(lanes.sum())
                while i < end { partial += Double(g(p[i])); i += 1 }
                total += partial
            }
            return total
        }
        let mean = Float(sum({ $0 }, { $0 }) / Double(count))
        let m = VectorMath.V(repeating: mean)
        let variance = Float(sum({ ($0 - m) * ($0 - m) }, { ($0 - mean) * ($0 - mean) }) / Double(count))
        return (mean, variance)
    }

    /// dst = src · scale + shift, optionally followed by SiLU, in one pass; `dst` may be `src`.
    @inlinable
    static func affine(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int,
                       scale: Float, shift: Float, silu: Bool) {
        if silu {
            VectorMath.map(src, into: dst, count, { v in let y = v * scale + shift; return y / (1 + VectorMath.exp(-y)) },
                           { v in let y = v * scale + shift; return y / (1 + Foundation.exp(-y)) })
        } else {
            VectorMath.map(src, into: dst, count, { $0 * scale + shift }, { $0 * scale + shift })
        }
    }
}

import Foundation
