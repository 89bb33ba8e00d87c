import CDarkroomSIMD
import Dispatch

/// Bit-exact conversions from the 16-bit float formats of checkpoints to Float.
///
/// Branch-free so that the bulk loops auto-vectorise: on x86_64 Linux `Float(Float16(bitPattern:))` is a libcall
/// per element (~3 ns); these run at ~0.5 ns per element or better on one core. Tested bit-exact against the
/// standard library on all 65,536 half patterns (DarkroomWeightsTests/ConversionTests).
public enum HalfConversion {
    public enum Format: Sendable { case float16, bfloat16 }

    /// IEEE binary16 bits → Float. Exact; NaN payloads are kept and made quiet, like `Float(Float16(bitPattern:))`.
    @inline(__always)
    public static func float(fromFloat16Bits h16: UInt16) -> Float {
        let h = UInt32(h16)
        let sign = (h & 0x8000) << 16
        var u = (h & 0x7fff) << 13            // exponent/mantissa into Float position
        let exp = u & 0x0f80_0000            // the 5 half exponent bits, shifted
        u &+= (127 - 15) << 23                // re-bias exponent
        let isInfNaN = exp == 0x0f80_0000
        let isSubnormal = exp == 0
        // Inf/NaN: push the exponent to 255; NaN also gets the quiet bit.
        let infNaN = (u &+ ((128 - 16) << 23)) | ((h & 0x03ff) != 0 ? 0x0040_0000 : 0)
        // Zero/subnormal: renormalise with one float subtraction (exact).
        let sub = (Float(bitPattern: u &+ (1 << 23)) - Float(bitPattern: 113 << 23)).bitPattern
        u = isInfNaN ? infNaN : (isSubnormal ? sub : u)
        return Float(bitPattern: u | sign)
    }

    /// bfloat16 bits → Float (exact: the bits are the Float's top half).
    @inline(__always)
    public static func float(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Converts `count` elements at `src` (any alignment) into `dst`, on all cores when large.
    public static func decode(_ format: Format, from src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        let pointers = Pointers(src: src, dst: dst)
        let chunk = 1 << 18
        let work = { (start: Int, n: Int) in
            let s = pointers.src + 2 * start, d = pointers.dst + start
            switch format {
            case .float16: for i in 0..<n { d[i] = float(fromFloat16Bits: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bfloat16: for i in 0..<n { d[i] = float(fromBFloat16Bits: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            }
        }
        guard count > chunk else { if count > 0 { work(0, count) }; return }
        Parallel.forEachRange((count + chunk - 1) / chunk, grain: 1) { range in
            for c in range { work(c * chunk, min(chunk, count - c * chunk)) }
        }
    }

    /// Read-only source and disjoint destination ranges per task: safe to share across the workers.
    struct Pointers: @unchecked Sendable {
        let src: UnsafeRawPointer
        let dst: UnsafeMutablePointer<Float>
    }
}

extension HalfConversion {
    /// Float → bfloat16 bits, rounded to nearest, ties to even (as PyTorch's and oneDNN's conversions); NaN stays a
    /// quiet NaN of the same sign, overflow becomes ±infinity.
    @inline(__always)
    public static func bfloat16Bits(from x: Float) -> UInt16 {
        let u = x.bitPattern
        let rounded = UInt16(truncatingIfNeeded: (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
        let isNaN = (u & 0x7fff_ffff) > 0x7f80_0000
        return isNaN ? UInt16(truncatingIfNeeded: u >> 16) | 0x0040 : rounded
    }

    /// Whether this CPU converts with AVX512_BF16's vcvtne2ps2bf16 (Zen 4 and later, Cooper Lake, Sapphire Rapids).
    public static let cpuConvertsBFloat16 = darkroom_has_avx512_bf16() != 0

    /// Whether `encodeBFloat16` and `encodeBFloat16Serial` use vcvtne2ps2bf16 (`CDarkroomSIMD`) instead of
    /// `bfloat16Bits` in a Swift loop, which LLVM vectorises to about eight instructions per 16 values. The two
    /// agree bit for bit except on subnormal inputs, which the instruction treats as zero, as PyTorch's and oneDNN's
    /// conversions on these CPUs do. False here runs the Swift loop (tests, and measuring the difference).
    nonisolated(unsafe) public static var encodesWithAVX512BF16 = cpuConvertsBFloat16

    /// Converts `count` Floats into bfloat16 bits at `dst`, on all cores when large.
    public static func encodeBFloat16(from src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
        let pointers = UncheckedSendable((src, dst))
        Parallel.forEachRange(count, grain: 1 << 16) { range in
            let (s, d) = pointers.value
            encodeBFloat16Serial(from: s + range.lowerBound, into: d + range.lowerBound, count: range.count)
        }
    }

    /// The same on the calling thread alone (inside a worker's share of a parallel loop).
    public static func encodeBFloat16Serial(from src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
        if encodesWithAVX512BF16 && cpuConvertsBFloat16 {
            darkroom_encode_bf16_avx512(src, dst, count)
            return
        }
        for i in 0..<count { dst[i] = bfloat16Bits(from: src[i]) }
    }
}
