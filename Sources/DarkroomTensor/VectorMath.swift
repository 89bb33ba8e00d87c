import Foundation

/// Vectorised elementary functions for the hot loops (softmax, SiLU). Scalar tails use libm.
@usableFromInline
enum VectorMath {
    @usableFromInline typealias V = SIMD16<Float>
    @usableFromInline static let width = 16

    /// e^x for 16 lanes: range reduction x = n·ln2 + r, a degree-6 polynomial for e^r (Cephes `expf`
    /// coefficients), then n goes into the exponent bits. Relative error ≈ 2e-7 over the float range;
    /// inputs below -87.3 give ≈ 1e-38 (zero, for softmax).
    ///
    /// Written with masks and the round-by-magic-number trick because the stdlib's generic SIMD
    /// `clamped`, `pointwiseMax` and `rounded` run lane by lane (10–30× slower, measured).
    @inlinable @inline(__always)
    static func exp(_ x: V) -> V {
        var x = maximum(x, V(repeating: -87.3))
        x = x.replacing(with: V(repeating: 88.3), where: x .> V(repeating: 88.3))
        let magic = V(repeating: 12_582_912)  // 1.5·2²³: adding it rounds to an integer in the low mantissa bits
        let t = x * 1.44269504088896341 + magic
        let n = t - magic
        x = x - n * 0.693359375 - n * -2.12194440e-4
        // Horner with fused multiply-adds (`addingProduct` is one FMA where the target CPU has them).
        var p = V(repeating: 1.3981999507e-3).addingProduct(x, V(repeating: 1.9875691500e-4))
        p = V(repeating: 8.3334519073e-3).addingProduct(p, x)
        p = V(repeating: 4.1665795894e-2).addingProduct(p, x)
        p = V(repeating: 1.6666665459e-1).addingProduct(p, x)
        p = V(repeating: 5.0000001201e-1).addingProduct(p, x)
        p = (x + 1).addingProduct(p, x * x)
        let integer = unsafeBitCast(t, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
        return p * unsafeBitCast((integer &+ 127) &<< 23, to: V.self)
    }

    /// e^x for 16 lanes to a relative error below 1e-5, for values rounded to bfloat16 next (whose own rounding is
    /// up to 2e-3): x·log₂e = n + f with |f| ≤ ½, a degree-4 polynomial for 2^f (fitted for relative error; 2.7e-6
    /// evaluated in Float32), then n into the exponent bits. The Float32 product x·log₂e adds up to |x|·6e-8 (4e-6
    /// at x = −24, where e^x is 4e-11 of the row's largest term). About half the operations of `exp`. Inputs below
    /// -87.3 give ≈ 1e-38, as `exp`'s; NaN stays NaN.
    @inlinable @inline(__always)
    static func expForBFloat16(_ x: V) -> V {
        let t = maximum(x, V(repeating: -87.3)) * 1.44269504088896341
        let magic = V(repeating: 12_582_912)  // 1.5·2²³, as in `exp`
        let shifted = t + magic
        let f = t - (shifted - magic)
        var p = V(repeating: 0.055917844).addingProduct(f, V(repeating: 0.009570083))
        p = V(repeating: 0.24024744).addingProduct(p, f)
        p = V(repeating: 0.69312179).addingProduct(p, f)
        p = V(repeating: 0.99999928).addingProduct(p, f)
        let integer = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
        return p * unsafeBitCast((integer &+ 127) &<< 23, to: V.self)
    }

    /// erf for 16 lanes by Abramowitz & Stegun 7.1.26: erf(|x|) = 1 − t·(a₁ + t·(a₂ + … + t·a₅))·e^(−x²) with
    /// t = 1/(1 + p|x|), absolute error below 1.5e-7; the sign is restored after. PyTorch's vectorised CPU erf
    /// (ATen `Vectorized<float>::erf`, behind `F.gelu`) uses the same formula.
    @inlinable @inline(__always)
    static func erf(_ x: V) -> V {
        let signBit = SIMD16<UInt32>(repeating: 0x8000_0000)
        let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
        let a = unsafeBitCast(bits & ~signBit, to: V.self)
        let t = 1 / (a * 0.3275911 + 1)
        var r = t * 1.061405429 - 1.453152027
        r = r * t + 1.421413741
        r = r * t - 0.284496736
        r = r * t + 0.254829592
        let y = 1 - r * t * exp(-(a * a))
        return unsafeBitCast(unsafeBitCast(y, to: SIMD16<UInt32>.self) | (bits & signBit), to: V.self)
    }

    /// GELU, erf form, for 16 lanes: ½x(1 + erf(x/√2)).
    @inlinable @inline(__always)
    static func gelu(_ x: V) -> V { 0.5 * x * (1 + erf(x * 0.70710678118654752)) }

    /// Lane-wise max (the stdlib's `pointwiseMax` is not vectorised).
    @inlinable @inline(__always)
    static func maximum(_ a: V, _ b: V) -> V { a.replacing(with: b, where: a .< b) }

    @inlinable @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inlinable @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// Applies `vector` to whole 16-lane blocks and `scalar` to the tail, in place over `count` floats.
    @inlinable @inline(__always)
    static func map(_ p: UnsafeMutablePointer<Float>, _ count: Int, _ vector: (V) -> V, _ scalar: (Float) -> Float) {
        var i = 0
        while i + width <= count { store(vector(load(p + i)), p + i); i += width }
        while i < count { p[i] = scalar(p[i]); i += 1 }
    }

    /// dst[i] = f(src[i]); `dst` may be `src`.
    @inlinable @inline(__always)
    static func map(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ count: Int,
                    _ vector: (V) -> V, _ scalar: (Float) -> Float) {
        var i = 0
        while i + width <= count { store(vector(load(src + i)), dst + i); i += width }
        while i < count { dst[i] = scalar(src[i]); i += 1 }
    }
}
