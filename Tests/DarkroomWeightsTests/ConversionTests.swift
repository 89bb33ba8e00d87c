import Foundation
import XCTest
import DarkroomWeights

final class ConversionTests: TempDirTestCase {
    /// All 65,536 half patterns, scalar routine vs the standard library, bit-exact.
    func testHalfToFloatExhaustive() {
        var mismatches: [UInt16] = []
        for b in 0...0xFFFF {
            let bits = UInt16(b)
            let expected = Float(Float16(bitPattern: bits)).bitPattern
            let got = FloatConversion.float(fromFloat16Bits: bits).bitPattern
            if got != expected { mismatches.append(bits) }
        }
        XCTAssertEqual(mismatches.count, 0, "first mismatches: \(mismatches.prefix(8).map { String($0, radix: 16) })")
    }

    /// All 65,536 half patterns through a file (bulk path, unaligned start).
    func testHalfToFloatExhaustiveThroughFile() throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 * 65536)
        for b in 0...0xFFFF { bytes.append(UInt8(b & 0xFF)); bytes.append(UInt8(b >> 8)) }
        var w = SafetensorsWriter()
        try w.addRaw("a", dtype: .u8, shape: [1], bytes: [0])   // makes "all" start at an odd offset
        try w.addRaw("all", dtype: .f16, shape: [65536], bytes: bytes)
        try w.addRaw("allbf", dtype: .bf16, shape: [65536], bytes: bytes)
        let u = url("allhalf.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        let h = try f.floats("all")
        let b = try f.floats("allbf")
        for i in 0...0xFFFF {
            XCTAssertEqual(h[i].bitPattern, Float(Float16(bitPattern: UInt16(i))).bitPattern)
            XCTAssertEqual(b[i].bitPattern, UInt32(i) << 16)
        }
    }

    /// Float → half against `Float16(x)`: every rounding boundary (each half value's
    /// midpoint to its successor and the floats on either side of it), plus a strided sweep
    /// of the whole Float bit space. (`weights-bench verify-f16` checks all 2^32 patterns.)
    func testFloatToHalfMatchesStandardLibrary() {
        var checked = 0
        var mismatches: [UInt32] = []
        func check(_ x: Float) {
            checked += 1
            let expected = Float16(x).bitPattern
            let got = FloatConversion.float16Bits(from: x)
            if got != expected, mismatches.count < 8 { mismatches.append(x.bitPattern) }
        }
        for b in 0..<0x7C00 { // all finite non-negative halves
            let lo = Float(Float16(bitPattern: UInt16(b)))
            let hi = Float(Float16(bitPattern: UInt16(b + 1)))   // 0x7C00 = inf for the last one
            let mid = hi.isInfinite ? Float(65520) : (lo + hi) / 2   // exact in Float
            for x in [lo, mid, mid.nextDown, mid.nextUp, lo.nextUp] {
                check(x)
                check(-x)
            }
        }
        var bits: UInt64 = 0
        while bits <= 0xFFFF_FFFF {
            check(Float(bitPattern: UInt32(bits)))
            bits += 4093 // prime stride: ~1M samples across all exponents, signs and NaNs
        }
        for x: Float in [.infinity, -.infinity, .nan, -.nan, .signalingNaN, .greatestFiniteMagnitude, .leastNonzeroMagnitude] {
            check(x)
        }
        XCTAssertGreaterThan(checked, 1_000_000)
        XCTAssertEqual(mismatches.map { String($0, radix: 16) }, [])
    }

    func testBFloat16Scalars() {
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: 1), 0x3F80)
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: -2.5), 0xC020)
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: .infinity), 0x7F80)
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: .greatestFiniteMagnitude), 0x7F80)
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: Float(bitPattern: 0x3F80_8000)), 0x3F80) // tie → even
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: Float(bitPattern: 0x3F81_8000)), 0x3F82) // tie → even
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(FloatConversion.bfloat16Bits(from: Float(bitPattern: 0x7F80_0001)) & 0x7FC0, 0x7FC0) // NaN kept
        XCTAssertEqual(FloatConversion.float(fromBFloat16Bits: 0x4049), Float(bitPattern: 0x4049_0000))
        // Sampled sweep against the Double-based oracle.
        var bits: UInt64 = 0
        var bad = 0
        while bits <= 0xFFFF_FFFF {
            let x = Float(bitPattern: UInt32(bits))
            let got = FloatConversion.float(fromBFloat16Bits: FloatConversion.bfloat16Bits(from: x))
            if x.isNaN { if !got.isNaN { bad += 1 } } else if got.bitPattern != referenceBF16(x).bitPattern { bad += 1 }
            bits += 65521
        }
        XCTAssertEqual(bad, 0)
    }

    func testFloat8Decoding() throws {
        // E4M3 (fn): bias 7, no infinities, max 448, S.1111.111 = NaN.
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x38), 1)
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0xB8), -1)
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x7E), 448)
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x08), 1.0 / 64)     // min normal 2^-6
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x01), 1.0 / 512)    // min subnormal 2^-9
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x78), 256)
        XCTAssertTrue(FloatConversion.float(fromFloat8E4M3Bits: 0x7F).isNaN)
        XCTAssertTrue(FloatConversion.float(fromFloat8E4M3Bits: 0xFF).isNaN)
        XCTAssertEqual(FloatConversion.float(fromFloat8E4M3Bits: 0x80).bitPattern, 0x8000_0000)
        // E5M2: the top byte of a half.
        XCTAssertEqual(FloatConversion.float(fromFloat8E5M2Bits: 0x3C), 1)
        XCTAssertEqual(FloatConversion.float(fromFloat8E5M2Bits: 0x7B), 57344)
        XCTAssertEqual(FloatConversion.float(fromFloat8E5M2Bits: 0x7C), .infinity)
        XCTAssertTrue(FloatConversion.float(fromFloat8E5M2Bits: 0x7D).isNaN)
        XCTAssertEqual(FloatConversion.float(fromFloat8E5M2Bits: 0x01), 1.0 / 65536)  // min subnormal 2^-16

        var w = SafetensorsWriter()
        try w.addRaw("e4", dtype: .f8e4m3, shape: [4], bytes: [0x38, 0x7E, 0x01, 0xB8])
        try w.addRaw("e5", dtype: .f8e5m2, shape: [3], bytes: [0x3C, 0x7C, 0xC0])
        let u = url("fp8.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(try f.floats("e4"), [1, 448, 1.0 / 512, -1])
        XCTAssertEqual(try f.floats("e5"), [1, .infinity, -2])
    }

    func testDTypeSizes() {
        let sizes: [DType: Int] = [.f64: 8, .f32: 4, .f16: 2, .bf16: 2, .i64: 8, .i32: 4, .i16: 2, .i8: 1, .u8: 1,
                                   .bool: 1, .u64: 8, .u32: 4, .u16: 2, .f8e4m3: 1, .f8e5m2: 1]
        for d in DType.allCases { XCTAssertEqual(d.byteSize, sizes[d], d.rawValue) }
        XCTAssertEqual(DType(rawValue: "BF16"), .bf16)
        XCTAssertNil(DType(rawValue: "bf16"))
        XCTAssertNil(DType(rawValue: "F8_E9"))
    }
}
