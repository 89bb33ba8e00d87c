import DarkroomTensor
import Dispatch
import Foundation

/// Bit-exact scalar and bulk conversions between Float and the 16-/8-bit float formats
/// used by checkpoints.
///
/// The scalar routines are branch-free so that the bulk loops auto-vectorise. On x86_64
/// Linux, `Float(Float16(bitPattern:))` and `Float16(Float)` compile to a libcall per
/// element (~3 ns); these run at ~0.5 ns/element or better and are tested bit-exact against
/// the standard library (all 65,536 half patterns; Float → half over every Float pattern in
/// the benchmark tool, a dense sample in the unit tests).
public enum FloatConversion {
    // MARK: Scalars

    /// IEEE binary16 bits → Float (exact; see `HalfConversion`).
    @inline(__always)
    public static func float(fromFloat16Bits h16: UInt16) -> Float { HalfConversion.float(fromFloat16Bits: h16) }

    /// Float → IEEE binary16 bits, round to nearest even; overflow gives ±inf, NaN stays
    /// NaN (quiet, top payload bits kept), exactly like `Float16(x).bitPattern`.
    @inline(__always)
    public static func float16Bits(from x: Float) -> UInt16 {
        let f32Infinity: UInt32 = 255 << 23
        let f16OverflowStart: UInt32 = (127 + 16) << 23       // |x| >= 65536 → inf (after rounding logic)
        let denormMagic: UInt32 = ((127 - 15) + (23 - 10) + 1) << 23
        let rebias: UInt32 = UInt32(bitPattern: Int32(15 - 127) << 23) &+ 0xfff
        var u = x.bitPattern
        let sign = u & 0x8000_0000
        u ^= sign
        let nanBits: UInt32 = 0x7e00 | ((u >> 13) & 0x03ff)
        let infNaN: UInt32 = u > f32Infinity ? nanBits : 0x7c00
        // Results that are half subnormals/zero: let float addition do the rounding.
        let sub = (Float(bitPattern: u) + Float(bitPattern: denormMagic)).bitPattern &- denormMagic
        // Normal results: re-bias, add rounding bias (0xfff + odd bit), truncate.
        let mantOdd = (u >> 13) & 1
        let normal = (u &+ rebias &+ mantOdd) >> 13
        let o = u >= f16OverflowStart ? infNaN : (u < (113 << 23) ? sub : normal)
        return UInt16(truncatingIfNeeded: o | (sign >> 16))
    }

    /// bfloat16 bits → Float (exact: the bits are the Float's top half).
    @inline(__always)
    public static func float(fromBFloat16Bits b: UInt16) -> Float { HalfConversion.float(fromBFloat16Bits: b) }

    /// Float → bfloat16 bits, round to nearest even; overflow gives ±inf; NaN stays NaN
    /// (made quiet so that a payload living only in the low bits cannot turn into inf).
    @inline(__always)
    public static func bfloat16Bits(from x: Float) -> UInt16 {
        let u = x.bitPattern
        let rounded = (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16
        let nan = (u >> 16) | 0x0040
        return UInt16(truncatingIfNeeded: x.isNaN ? nan : rounded)
    }

    /// F8_E5M2 → Float (an E5M2 byte is the top byte of a binary16).
    @inline(__always)
    public static func float(fromFloat8E5M2Bits b: UInt8) -> Float {
        float(fromFloat16Bits: UInt16(b) << 8)
    }

    /// F8_E4M3 (finite-only "fn" variant, bias 7, max 448, S.1111.111 = NaN) → Float.
    @inline(__always)
    public static func float(fromFloat8E4M3Bits b: UInt8) -> Float {
        e4m3Table[Int(b)]
    }

    static let e4m3Table: [Float] = (0..<256).map { i in
        let sign: Float = (i & 0x80) != 0 ? -1 : 1
        let e = (i >> 3) & 0x0f
        let m = i & 0x07
        if e == 0x0f && m == 0x07 { return sign * Float.nan }
        if e == 0 { return sign * Float(m) / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + Float(m) / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    // MARK: Bulk decode (any alignment of `src`)

    /// Element count above which conversions are split across threads.
    public static let parallelThreshold = 1 << 20
    static let chunkElements = 1 << 20

    /// Converts `count` elements of `dtype` at `src` (no alignment requirement) into `dst`.
    /// `dtype` must be floating point (callers check). Large counts run on all cores.
    static func decode(_ dtype: DType, from src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        let p = Pointers(src: src, dst: UnsafeMutableRawPointer(dst))
        parallelChunks(count: count) { start, n in
            decodeSerial(dtype, from: p.src + start * dtype.byteSize,
                         into: p.dst.assumingMemoryBound(to: Float.self) + start, count: n)
        }
    }

    static func decodeSerial(_ dtype: DType, from src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        switch dtype {
        case .f32:
            // Little-endian host: a plain byte copy is the conversion.
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .f16:
            for i in 0..<count {
                dst[i] = float(fromFloat16Bits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .bf16:
            for i in 0..<count {
                dst[i] = float(fromBFloat16Bits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .f64:
            for i in 0..<count {
                dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self))
            }
        case .f8e5m2:
            for i in 0..<count {
                dst[i] = float(fromFloat8E5M2Bits: src.load(fromByteOffset: i, as: UInt8.self))
            }
        case .f8e4m3:
            e4m3Table.withUnsafeBufferPointer { table in
                for i in 0..<count {
                    dst[i] = table[Int(src.load(fromByteOffset: i, as: UInt8.self))]
                }
            }
        case .i64, .i32, .i16, .i8, .u8, .bool, .u64, .u32, .u16:
            break // not reachable: callers reject non-float dtypes
        }
    }

    // MARK: Bulk encode

    /// Encodes `count` Floats as `dtype` (F32/F16/BF16/F64) into `dst` (any alignment).
    static func encode(_ dtype: DType, from src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count: Int) {
        let p = Pointers(src: UnsafeRawPointer(src), dst: dst)
        parallelChunks(count: count) { start, n in
            encodeSerial(dtype, from: p.src.assumingMemoryBound(to: Float.self) + start,
                         into: p.dst + start * dtype.byteSize, count: n)
        }
    }

    static func encodeSerial(_ dtype: DType, from src: UnsafePointer<Float>, into dst: UnsafeMutableRawPointer, count: Int) {
        switch dtype {
        case .f32:
            dst.copyMemory(from: src, byteCount: count * 4)
        case .f16:
            for i in 0..<count {
                dst.storeBytes(of: float16Bits(from: src[i]), toByteOffset: 2 * i, as: UInt16.self)
            }
        case .bf16:
            for i in 0..<count {
                dst.storeBytes(of: bfloat16Bits(from: src[i]), toByteOffset: 2 * i, as: UInt16.self)
            }
        case .f64:
            for i in 0..<count {
                dst.storeBytes(of: Double(src[i]), toByteOffset: 8 * i, as: Double.self)
            }
        case .f8e4m3, .f8e5m2, .i64, .i32, .i16, .i8, .u8, .bool, .u64, .u32, .u16:
            break // not reachable: the writer rejects these before encoding
        }
    }

    // MARK: Parallelism

    /// Source/destination of one bulk conversion. Each concurrent chunk touches a disjoint
    /// part of `dst` and only reads `src`, and `parallelChunks` returns only after every
    /// chunk finished, so sharing the pointers across the worker threads is race-free.
    struct Pointers: @unchecked Sendable {
        let src: UnsafeRawPointer
        let dst: UnsafeMutableRawPointer
    }

    /// Runs `body(start, count)` over `0..<count` in chunks, concurrently when large.
    static func parallelChunks(count: Int, _ body: @Sendable (Int, Int) -> Void) {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard count > parallelThreshold, cores > 1 else {
            if count > 0 { body(0, count) }
            return
        }
        let chunk = chunkElements
        let chunks = (count + chunk - 1) / chunk
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = c * chunk
            body(start, min(chunk, count - start))
        }
    }
}
