import Foundation

extension Tensor {
    /// Applies `vector`/`scalar` to every element, in parallel; returns the result.
    @inlinable
    func mapElements(_ vector: (SIMD16<Float>) -> SIMD16<Float>, _ scalar: (Float) -> Float) -> Tensor {
        var out = self
        out.withUnsafeMutableBufferPointer { buffer in
            let p = buffer.baseAddress!
            Parallel.forEachRange(buffer.count) { range in
                VectorMath.map(p + range.lowerBound, range.count, vector, scalar)
            }
        }
        return out
    }

    /// SiLU (swish): x · σ(x).
    public func silu() -> Tensor {
        mapElements({ $0 / (1 + VectorMath.exp(-$0)) }, { $0 / (1 + Foundation.exp(-$0)) })
    }

    /// GELU, exact erf form (`torch.nn.functional.gelu` default): ½x(1 + erf(x/√2)).
    public func gelu() -> Tensor {
        mapElements(VectorMath.gelu, Tensor.gelu)
    }

    @inlinable @inline(__always)
    static func gelu(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118654752)) }

    /// QuickGELU (OpenAI CLIP): x · σ(1.702x).
    public func quickGELU() -> Tensor {
        mapElements({ $0 / (1 + VectorMath.exp(-1.702 * $0)) }, { $0 / (1 + Foundation.exp(-1.702 * $0)) })
    }

    /// GEGLU gate (diffusers `GEGLU` after its projection): the last dimension splits into hidden and gate
    /// halves; returns hidden · GELU(gate).
    public func geglu() -> Tensor {
        let width = dim(-1) / 2
        precondition(width * 2 == dim(-1), "geglu: last dimension \(dim(-1)) is odd")
        let rows = count / max(dim(-1), 1)
        var out = Tensor(uninitialized: Array(shape.dropLast()) + [width])
        withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                let x = x.baseAddress!, o = o.baseAddress!
                Parallel.forEachRange(rows, grain: max(1, 16_384 / max(width, 1))) { range in
                    for r in range {
                        let hidden = x + r * 2 * width, gate = hidden + width, dst = o + r * width
                        var i = 0
                        while i + VectorMath.width <= width {
                            VectorMath.store(VectorMath.load(hidden + i) * VectorMath.gelu(VectorMath.load(gate + i)), dst + i)
                            i += VectorMath.width
                        }
                        while i < width { dst[i] = hidden[i] * Tensor.gelu(gate[i]); i += 1 }
                    }
                }
            }
        }
        return out
    }

    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        var out = self
        let width = dim(-1)
        let rows = count / max(width, 1)
        out.withUnsafeMutableBufferPointer { buffer in
            let p = buffer.baseAddress!
            Parallel.forEachRange(rows, grain: max(1, 16_384 / max(width, 1))) { range in
                for r in range { Tensor.softmaxRow(p + r * width, width) }
            }
        }
        return out
    }

    /// In-place softmax of one row: subtract the max, exponentiate, normalise.
    @inlinable
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ width: Int) {
        let scale = exponentiateRow(row, width)
        VectorMath.map(row, width, { $0 * scale }, { $0 * scale })
    }

    /// The softmax numerators in place, e^(x − max), and 1 / their sum. Attention applies that factor to its
    /// output rows after S·V (dv values a row instead of every key), saving a pass over the scores.
    @inlinable @inline(__always)
    static func exponentiateRow(_ row: UnsafeMutablePointer<Float>, _ width: Int) -> Float {
        typealias V = VectorMath.V
        var i = 0
        var vmax = V(repeating: -.infinity)
        while i + 16 <= width { vmax = VectorMath.maximum(vmax, VectorMath.load(row + i)); i += 16 }
        var rowMax = vmax.max()
        while i < width { rowMax = Swift.max(rowMax, row[i]); i += 1 }
        let shift = V(repeating: rowMax)
        var vsum = V.zero
        i = 0
        while i + 16 <= width {
            let e = VectorMath.exp(VectorMath.load(row + i) - shift)
            VectorMath.store(e, row + i); vsum += e; i += 16
        }
        var sum = vsum.sum()
        while i < width { row[i] = Foundation.exp(row[i] - rowMax); sum += row[i]; i += 1 }
        return 1 / sum
    }

    /// For the bf16 products: e^(x − max) in place and rounded to bfloat16 into `out` while the row is still in
    /// cache, and 1 / the Float32 sum of the unrounded values, as autocast's Float32 softmax normalises before it
    /// rounds. The exponentials come from `VectorMath.expForBFloat16`, whose relative error (below 1e-5) is a
    /// two-hundredth of the rounding that follows. A bf16 attention call at 4096 tokens took 0.162–0.164 s against
    /// 0.175–0.176 s with `exp` (`bench kernels --only "oneDNN bf16"`, three alternating rounds).
    public static func exponentiateRow(_ row: UnsafeMutablePointer<Float>, _ width: Int, roundedInto out: UnsafeMutablePointer<UInt16>) -> Float {
        typealias V = VectorMath.V
        var i = 0
        var vmax = V(repeating: -.infinity)
        while i + 16 <= width { vmax = VectorMath.maximum(vmax, VectorMath.load(row + i)); i += 16 }
        var rowMax = vmax.max()
        while i < width { rowMax = Swift.max(rowMax, row[i]); i += 1 }
        let shift = V(repeating: rowMax)
        var vsum = V.zero
        i = 0
        while i + 16 <= width {
            let e = VectorMath.expForBFloat16(VectorMath.load(row + i) - shift)
            VectorMath.store(e, row + i); vsum += e; i += 16
        }
        var sum = vsum.sum()
        while i < width { row[i] = Foundation.exp(row[i] - rowMax); sum += row[i]; i += 1 }
        HalfConversion.encodeBFloat16Serial(from: row, into: out, count: width)
        return 1 / sum
    }
}

extension Tensor {
    /// `torch.nn.functional.leaky_relu`: x for x ≥ 0, slope · x below (ESRGAN uses slope 0.2).
    public func leakyReLU(slope: Float) -> Tensor {
        mapElements({ $0.replacing(with: $0 * slope, where: $0 .< 0) }, { $0 < 0 ? $0 * slope : $0 })
    }

    /// `torch.nn.PReLU(num_parameters: C)` on [N, C, H, W]: x for x ≥ 0, weight[c] · x below.
    public func prelu(weight: Tensor) -> Tensor {
        precondition(rank == 4 && weight.count == dim(1), "prelu: weight \(weight.shape) does not fit \(shape)")
        let (channels, plane) = (dim(1), dim(2) * dim(3))
        var out = self
        out.withUnsafeMutableBufferPointer { buffer in
            weight.withUnsafeBufferPointer { w in
                let p = buffer.baseAddress!, w = w.baseAddress!
                Parallel.forEach(dim(0) * channels) { i in
                    let slope = w[i % channels]
                    VectorMath.map(p + i * plane, plane, { $0.replacing(with: $0 * slope, where: $0 .< 0) },
                                   { $0 < 0 ? $0 * slope : $0 })
                }
            }
        }
        return out
    }
}
