// A random source that reproduces PyTorch's CPU generator bit for bit:
//
//     torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
//     torch.rand(shape, generator=..., dtype=torch.float32)
//
// on x86-64 torch builds whose CPU capability is AVX2 or AVX512 (AVX512 dispatches the AVX2 normal
// kernel; the results are identical). Algorithm (ATen CPUGeneratorImpl / DistributionTemplates.h):
//
// * Engine: MT19937 seeded with the low 32 bits of the 64-bit seed (see `MT19937`).
// * float uniform: `(random() & 0xffffff) * 2^-24`, one 32-bit draw per value, in [0, 1).
// * randn, numel >= 16 (contiguous): draw numel float uniforms into the output, then transform every
//   block of 16 in place with Box–Muller (first 8 -> u1 = 1 - u, last 8 -> u2; outputs r·cos θ in the
//   first 8, r·sin θ in the last 8). If numel % 16 != 0, draw 16 *more* uniforms into the last 16 slots
//   and transform them again (so the tail overwrites already-transformed values).
// * randn, numel < 16: per element `normal_distribution<double>`: u1, u2 from `random64()` as
//   `(x & (2^53 - 1)) * 2^-53`, r = sqrt(-2 log1p(-u2)), θ = 2π u1; returns r·cos θ and caches r·sin θ
//   in the generator, which the next small-path sample (of this or a later call) returns first.
//   The cache survives numel >= 16 calls and `rand` calls (they neither use nor clear it).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PyTorch-compatible CPU random source (`torch.Generator("cpu").manual_seed(seed)`).
public struct TorchRandomSource: Sendable {
    private var engine: MT19937
    /// torch's `next_double_normal_sample` cache (the r·sin θ half of the last small-path pair).
    private var cachedNormal: Double?

    public init(seed: UInt64) {
        engine = MT19937(seed: seed)
        cachedNormal = nil
    }

    /// Next tensor of standard normals in torch's order (consumes generator state like torch does).
    public mutating func normal(count: Int) -> [Float] {
        precondition(count >= 0, "count must be non-negative")
        if count == 0 { return [] }
        if count < 16 {
            return (0..<count).map { _ in Float(nextDoubleNormal()) }
        }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fillUniform(buffer)
            let base = buffer.baseAddress!
            var i = 0
            while i + 16 <= count {
                torchNormalFill16(base + i)
                i += 16
            }
            if count % 16 != 0 {
                let tail = UnsafeMutableBufferPointer(start: base + count - 16, count: 16)
                fillUniform(tail)
                torchNormalFill16(base + count - 16)
            }
            initialized = count
        }
    }

    /// Same as `normal(count:)` with `count` = product of `shape`.
    public mutating func normal(shape: [Int]) -> [Float] {
        normal(count: shape.reduce(1, *))
    }

    /// Next tensor of float32 uniforms in [0, 1), like `torch.rand` (one 32-bit draw per value).
    public mutating func uniform(count: Int) -> [Float] {
        precondition(count >= 0, "count must be non-negative")
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fillUniform(buffer)
            initialized = count
        }
    }

    /// Same as `uniform(count:)` with `count` = product of `shape`.
    public mutating func uniform(shape: [Int]) -> [Float] {
        uniform(count: shape.reduce(1, *))
    }

    // MARK: - Internals

    /// float uniforms: `(random() & (2^24 - 1)) * 2^-24`.
    private mutating func fillUniform(_ buffer: UnsafeMutableBufferPointer<Float>) {
        let count = buffer.count
        if count == 0 { return }
        buffer.withMemoryRebound(to: UInt32.self) { raw in
            engine.fill(raw)
            for k in 0..<count {
                raw[k] = (Float(raw[k] & 0x00ff_ffff) * 0x1p-24).bitPattern
            }
        }
    }

    /// torch's `at::normal_distribution<double>(0, 1)` with the generator's cached second sample.
    private mutating func nextDoubleNormal() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = Double(engine.next64() & 0x1f_ffff_ffff_ffff) * 0x1p-53
        let u2 = Double(engine.next64() & 0x1f_ffff_ffff_ffff) * 0x1p-53
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }
}

@inline(__always)
func torchNormalFill16(_ p: UnsafeMutablePointer<Float>) {
    torchNormalFill16SIMD(p)
}
