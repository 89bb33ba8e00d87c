import Foundation
import XCTest
import DarkroomWeights

final class RoundTripTests: TempDirTestCase {
    /// Special values every format must survive.
    let specials: [Float] = [
        0, -0.0, 1, -1, 0.1, -2.5, 3.14159265,
        .infinity, -.infinity, .nan, Float(bitPattern: 0xFFC0_0001) /* negative NaN with payload */,
        .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        .leastNormalMagnitude, .leastNonzeroMagnitude, Float(bitPattern: 0x0040_0000) /* F32 subnormal */,
        65504, 65519.996, 65520, 1e6, -1e6,                 // F16 max finite, just below/at overflow, beyond
        6.1035156e-05, 6.097555e-05, 5.9604645e-08,          // F16 min normal, max subnormal, min subnormal
        2.9802322e-08, 2.9802326e-08, 1e-9,                  // F16: tie at half min subnormal → 0, just above → min subnormal, underflow
        1 + 1.0 / 2048, 1 + 3.0 / 2048,                      // F16 ties: to even (down), to even (up)
        1 + 1.0 / 256, 1 + 3.0 / 256,                        // BF16 ties: to even (down), to even (up)
        Float(bitPattern: 0x7F80_0001),                      // NaN whose payload is only in the low bits
    ]

    func roundTrip(_ values: [Float], as dtype: DType, shape: [Int]? = nil) throws -> [Float] {
        var w = SafetensorsWriter()
        try w.add("t", shape: shape ?? [values.count], floats: values, as: dtype)
        let u = url("rt-\(dtype.rawValue).safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(try f.info("t").dtype, dtype)
        return try f.floats("t")
    }

    func testF32RoundTripIsBitExact() throws {
        let back = try roundTrip(specials, as: .f32)
        XCTAssertEqual(back.map(\.bitPattern), specials.map(\.bitPattern))
    }

    func testF16RoundTripMatchesStandardLibraryRounding() throws {
        let back = try roundTrip(specials, as: .f16)
        for (x, y) in zip(specials, back) {
            let expected = Float(Float16(x)) // stdlib: IEEE round-to-nearest-even
            if x.isNaN {
                XCTAssertTrue(y.isNaN, "\(x) → \(y)")
                XCTAssertEqual(y.sign, x.sign)
            } else {
                XCTAssertEqual(y.bitPattern, expected.bitPattern, "\(x) → \(y), expected \(expected)")
            }
        }
        // Spot-check the rules themselves, independent of the stdlib.
        let byValue = Dictionary(zip(specials.map(\.bitPattern), back), uniquingKeysWith: { a, _ in a })
        func f16(_ x: Float) -> Float { byValue[x.bitPattern] ?? .nan }
        XCTAssertEqual(f16(65504), 65504)
        XCTAssertEqual(f16(65519.996), 65504)
        XCTAssertEqual(f16(65520), .infinity)
        XCTAssertEqual(f16(1e6), .infinity)
        XCTAssertEqual(f16(-1e6), -.infinity)
        XCTAssertEqual(f16(.greatestFiniteMagnitude), .infinity)
        XCTAssertEqual(f16(5.9604645e-08), 5.9604645e-08)
        XCTAssertEqual(f16(6.097555e-05), 6.097555e-05)
        XCTAssertEqual(f16(2.9802322e-08).bitPattern, 0)
        XCTAssertEqual(f16(2.9802326e-08), 5.9604645e-08)
        XCTAssertEqual(f16(1e-9).bitPattern, 0)
        XCTAssertEqual(f16(-0.0).bitPattern, (-0.0 as Float).bitPattern)
        XCTAssertEqual(f16(1 + 1.0 / 2048), 1)
        XCTAssertEqual(f16(1 + 3.0 / 2048), 1 + 2.0 / 1024)
        XCTAssertTrue(f16(Float(bitPattern: 0x7F80_0001)).isNaN)
        XCTAssertEqual(f16(.leastNonzeroMagnitude).bitPattern, 0)
    }

    func testBF16RoundTripRoundsToNearestEven() throws {
        let back = try roundTrip(specials, as: .bf16)
        for (x, y) in zip(specials, back) {
            if x.isNaN {
                XCTAssertTrue(y.isNaN, "NaN \(String(x.bitPattern, radix: 16)) must stay NaN, got \(y)")
                XCTAssertEqual(y.sign, x.sign)
            } else {
                XCTAssertEqual(y.bitPattern, referenceBF16(x).bitPattern, "\(x) → \(y)")
            }
        }
        let byValue = Dictionary(zip(specials.map(\.bitPattern), back), uniquingKeysWith: { a, _ in a })
        func bf(_ x: Float) -> Float { byValue[x.bitPattern] ?? .nan }
        XCTAssertEqual(bf(1 + 1.0 / 256), 1)
        XCTAssertEqual(bf(1 + 3.0 / 256), 1 + 1.0 / 64)
        XCTAssertEqual(bf(.greatestFiniteMagnitude), .infinity)   // rounds past the bf16 max
        XCTAssertEqual(bf(.infinity), .infinity)
        XCTAssertEqual(bf(-.infinity), -.infinity)
        XCTAssertEqual(bf(-0.0).bitPattern, 0x8000_0000)
        XCTAssertEqual(bf(.leastNormalMagnitude), .leastNormalMagnitude)
        XCTAssertEqual(bf(.leastNonzeroMagnitude).bitPattern, 0)  // subnormal rounds to 0
        XCTAssertEqual(bf(Float(bitPattern: 0x0040_0000)), Float(bitPattern: 0x0040_0000)) // representable subnormal
        XCTAssertTrue(bf(Float(bitPattern: 0x7F80_0001)).isNaN)
    }

    func testF64RoundTrip() throws {
        let back = try roundTrip(specials, as: .f64)
        for (x, y) in zip(specials, back) {
            if x.isNaN {
                // Float→Double→Float keeps NaN and sign; a signalling NaN comes back quiet.
                XCTAssertTrue(y.isNaN)
                XCTAssertEqual(y.sign, x.sign)
                XCTAssertEqual(y.bitPattern | 0x0040_0000, x.bitPattern | 0x0040_0000)
            } else {
                XCTAssertEqual(y.bitPattern, x.bitPattern, "\(x) → \(y)")
            }
        }
    }

    func testMetadataRoundTrip() throws {
        let metadata = [
            "format": "pt",
            "empty": "",
            "unicode ✓": "café ☕ 日本語 🎨",
            "escapes": "quote \" backslash \\ slash / newline \n tab \t cr \r nul-ish \u{01} \u{1F}",
            "json": #"{"nested": [1, 2, {"a": null}]}"#,
        ]
        var w = SafetensorsWriter()
        try w.add("x", shape: [1], floats: [1])
        let u = url("meta.safetensors")
        try w.write(to: u, metadata: metadata)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.metadata, metadata)
    }

    func testEmptyMetadataIsOmittedAndFileWithNoTensorsIsValid() throws {
        let u = url("none.safetensors")
        try SafetensorsWriter().write(to: u)
        let bytes = try Array(Data(contentsOf: u))
        XCTAssertEqual(bytes.count, 16)
        XCTAssertEqual(String(decoding: bytes[8...], as: UTF8.self), "{}      ")
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.tensorNames, [])
        XCTAssertEqual(f.metadata, [:])
    }

    func testTensorNamesAreSortedAndLaidOutInOrder() throws {
        var w = SafetensorsWriter()
        let names = ["zeta", "alpha", "model.diffusion_model.out.2.weight", "Beta", "ünïcode", "quote\"name", "a/b\\c", "10", "9"]
        for (i, n) in names.enumerated() {
            try w.add(n, shape: [i + 1], floats: (0...i).map(Float.init), as: .f16)
        }
        XCTAssertEqual(w.tensorNames, names.sorted())
        let u = url("names.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.tensorNames, names.sorted())
        // Data is contiguous, in sorted-name order, starting right after the header.
        var expectedStart = 8 + f.headerLength
        for n in f.tensorNames {
            let info = try f.info(n)
            XCTAssertEqual(info.dataRange.lowerBound, expectedStart, n)
            expectedStart = info.dataRange.upperBound
            let i = names.firstIndex(of: n) ?? -1
            XCTAssertEqual(try f.floats(n), (0...i).map(Float.init))
        }
        XCTAssertEqual(expectedStart, f.fileSize)
        XCTAssertEqual(f.headerLength % 8, 0, "header padded to a multiple of 8")
    }

    func testZeroElementAndScalarTensors() throws {
        var w = SafetensorsWriter()
        try w.add("empty", shape: [0], floats: [], as: .f16)
        try w.add("empty3d", shape: [3, 0, 2], floats: [], as: .bf16)
        try w.add("scalar", shape: [], floats: [-3.5], as: .f32)
        try w.add("scalar16", shape: [], floats: [0.5], as: .f16)
        let u = url("shapes.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(try f.info("empty").shape, [0])
        XCTAssertEqual(try f.info("empty").elementCount, 0)
        XCTAssertEqual(try f.info("empty").dataRange.count, 0)
        XCTAssertEqual(try f.floats("empty"), [])
        XCTAssertEqual(try f.info("empty3d").shape, [3, 0, 2])
        XCTAssertEqual(try f.floats("empty3d"), [])
        XCTAssertEqual(try f.info("scalar").shape, [])
        XCTAssertEqual(try f.info("scalar").elementCount, 1)
        XCTAssertEqual(try f.floats("scalar"), [-3.5])
        XCTAssertEqual(try f.floats("scalar16"), [0.5])
        var none: [Float] = []
        try none.withUnsafeMutableBufferPointer { try f.floats("empty", into: $0) }
        XCTAssertEqual(try f.withRawBytes("empty") { $0.count }, 0)
    }

    /// Odd-sized tensors before the float tensors make every float tensor unaligned.
    func testUnalignedTensorsDecodeCorrectly() throws {
        let values: [Float] = (0..<37).map { Float($0) * 0.37 - 5 }
        var w = SafetensorsWriter()
        try w.addRaw("a_odd", dtype: .u8, shape: [3], bytes: [7, 8, 9])
        try w.add("b_f32", shape: [37], floats: values, as: .f32)
        try w.addRaw("c_odd", dtype: .u8, shape: [2], bytes: [1, 2])
        try w.add("d_f16", shape: [37], floats: values, as: .f16)
        try w.addRaw("e_odd", dtype: .u8, shape: [2], bytes: [1, 2])
        try w.add("f_bf16", shape: [37], floats: values, as: .bf16)
        try w.addRaw("g_odd", dtype: .u8, shape: [2], bytes: [1, 2])
        try w.add("h_f64", shape: [37], floats: values, as: .f64)
        let u = url("unaligned.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        for n in ["b_f32", "d_f16", "f_bf16", "h_f64"] {
            XCTAssertNotEqual(try f.info(n).dataRange.lowerBound % 2, 0, "\(n) should be unaligned for this test")
        }
        XCTAssertEqual(try f.floats("b_f32"), values)
        XCTAssertEqual(try f.floats("d_f16"), values.map { Float(Float16($0)) })
        XCTAssertEqual(try f.floats("f_bf16"), values.map(referenceBF16))
        XCTAssertEqual(try f.floats("h_f64"), values)
        XCTAssertEqual(try f.withRawBytes("a_odd") { Array($0) }, [7, 8, 9])
    }

    /// Tensors above the parallel threshold go through the multi-threaded path.
    func testLargeTensorsUseParallelPathCorrectly() throws {
        let count = FloatConversion.parallelThreshold * 3 + 12345
        var values = [Float](repeating: 0, count: count)
        var state: UInt32 = 12345
        for i in 0..<count {
            state = state &* 1664525 &+ 1013904223
            values[i] = Float(bitPattern: (state & 0x807F_FFFF) | 0x3800_0000) // ±[2^-15, 2^1)
        }
        var w = SafetensorsWriter()
        try w.add("big16", shape: [count], floats: values, as: .f16)
        try w.add("big32", shape: [count], floats: values, as: .f32)
        try w.add("bigbf", shape: [count], floats: values, as: .bf16)
        let u = url("big.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        let h = try f.floats("big16")
        XCTAssertEqual(try f.floats("big32"), values)
        let b = try f.floats("bigbf")
        var mismatches = 0
        for i in 0..<count {
            if h[i].bitPattern != Float(Float16(values[i])).bitPattern { mismatches += 1 }
            if b[i].bitPattern != referenceBF16(values[i]).bitPattern { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
        // into: variant, reusing a buffer
        var buffer = [Float](repeating: .nan, count: count)
        try buffer.withUnsafeMutableBufferPointer { try f.floats("big16", into: $0) }
        XCTAssertEqual(buffer, h)
    }

    func testFloatsIntoChecksCount() throws {
        var w = SafetensorsWriter()
        try w.add("t", shape: [2, 2], floats: [1, 2, 3, 4], as: .bf16)
        let u = url("into.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        var three = [Float](repeating: 0, count: 3)
        assertThrows(.bufferSizeMismatch(path: u.path, tensor: "t", expected: 4, actual: 3)) {
            try three.withUnsafeMutableBufferPointer { try f.floats("t", into: $0) }
        }
        var four = [Float](repeating: 0, count: 4)
        try four.withUnsafeMutableBufferPointer { try f.floats("t", into: $0) }
        XCTAssertEqual(four, [1, 2, 3, 4])
    }

    func testReaderErrorsForMissingAndNonFloatTensors() throws {
        var w = SafetensorsWriter()
        try w.addRaw("ints", dtype: .i16, shape: [2], bytes: [1, 0, 2, 0])
        try w.addRaw("flags", dtype: .bool, shape: [1], bytes: [1])
        let u = url("errs.safetensors")
        try w.write(to: u)
        let f = try SafetensorsFile(url: u)
        assertThrows(.tensorNotFound(path: u.path, tensor: "nope")) { try f.info("nope") }
        assertThrows(.tensorNotFound(path: u.path, tensor: "nope")) { try f.floats("nope") }
        assertThrows(.tensorNotFound(path: u.path, tensor: "nope")) { try f.withRawBytes("nope") { $0.count } }
        assertThrows(.notFloatingPoint(path: u.path, tensor: "ints", dtype: .i16)) { try f.floats("ints") }
        assertThrows(.notFloatingPoint(path: u.path, tensor: "flags", dtype: .bool)) { try f.floats("flags") }
        XCTAssertEqual(try f.withRawBytes("ints") { Array($0) }, [1, 0, 2, 0])
        let message = WeightsError.notFloatingPoint(path: u.path, tensor: "ints", dtype: .i16).description
        XCTAssertTrue(message.contains(u.path) && message.contains("'ints'") && message.contains("I16"), message)
        XCTAssertTrue(WeightsError.tensorNotFound(path: u.path, tensor: "nope").description.contains("'nope'"))
    }

    func testWriterRejectsBadInput() throws {
        var w = SafetensorsWriter()
        try w.add("t", shape: [1], floats: [1])
        assertThrows(.duplicateTensorName(tensor: "t")) { try w.add("t", shape: [1], floats: [1]) }
        assertThrows(.duplicateTensorName(tensor: "t")) { try w.addRaw("t", dtype: .u8, shape: [1], bytes: [1]) }
        assertThrows(.invalidTensorName(tensor: "")) { try w.add("", shape: [1], floats: [1]) }
        assertThrows(.invalidTensorName(tensor: "__metadata__")) { try w.add("__metadata__", shape: [1], floats: [1]) }
        assertThrows(.writerCountMismatch(tensor: "u", shape: [2, 2], expected: 4, actual: 3)) {
            try w.add("u", shape: [2, 2], floats: [1, 2, 3], as: .f16)
        }
        assertThrows(.writerCountMismatch(tensor: "u", shape: [2], expected: 8, actual: 7)) {
            try w.addRaw("u", dtype: .i32, shape: [2], bytes: [UInt8](repeating: 0, count: 7))
        }
        assertThrows(.invalidWriterShape(tensor: "u", shape: [2, -1])) { try w.add("u", shape: [2, -1], floats: []) }
        assertThrows(.invalidWriterShape(tensor: "u", shape: [Int.max, 2])) { try w.add("u", shape: [Int.max, 2], floats: []) }
        assertThrows(.unsupportedWriterDType(tensor: "u", dtype: .i32)) { try w.add("u", shape: [1], floats: [1], as: .i32) }
        XCTAssertEqual(w.tensorNames, ["t"])
    }

    func testWriteIsAtomicAndLeavesNoTemporaryFiles() throws {
        let u = url("atomic.safetensors")
        var w1 = SafetensorsWriter()
        try w1.add("v", shape: [1], floats: [1])
        try w1.write(to: u)
        let old = try SafetensorsFile(url: u)   // keeps the old mapping alive across the replace
        var w2 = SafetensorsWriter()
        try w2.add("v", shape: [2], floats: [2, 3])
        try w2.write(to: u)
        XCTAssertEqual(try old.floats("v"), [1], "an open reader keeps seeing the file it opened")
        XCTAssertEqual(try SafetensorsFile(url: u).floats("v"), [2, 3])
        let listing = try FileManager.default.contentsOfDirectory(atPath: tempDir.path)
        XCTAssertEqual(listing, ["atomic.safetensors"])

        let missingDir = tempDir.appendingPathComponent("no/such/dir/x.safetensors")
        assertThrows({ try w2.write(to: missingDir) }) { error in
            if case let .writeFailed(path, _, errno) = error { return path == missingDir.path && errno == ENOENT }
            return false
        }
    }

    func testSwiftOutputSampleReadsBack() throws {
        let u = url("sample.safetensors")
        try writeMixedSample(to: u)
        let f = try SafetensorsFile(url: u)
        XCTAssertEqual(f.metadata["note"], "written by DarkroomWeights \"quoted\" \\ ✓")
        XCTAssertEqual(f.tensorNames.count, 9)
        XCTAssertEqual(try f.floats("b.f16"), [Float(Float16(Float(0.1))), 65504, .infinity, 5.9604645e-08, -1])
        XCTAssertEqual(try f.floats("e.scalar"), [42])
        XCTAssertEqual(try f.info("f.empty").shape, [0, 3])
    }
}

/// Independent BF16 oracle: choose the nearer of the two neighbouring bf16 values using
/// Double arithmetic, ties to the even one (finite inputs; NaN handled by callers).
func referenceBF16(_ x: Float) -> Float {
    if x.isNaN || x.isInfinite { return x }
    let bits = x.bitPattern
    let down = Float(bitPattern: bits & 0xFFFF_0000)
    let upBits = (bits & 0xFFFF_0000) &+ 0x1_0000
    let up = Float(bitPattern: upBits)           // may be ±inf: correct overflow target
    let dDown = abs(Double(x) - Double(down))
    let dUp = up.isInfinite
        ? abs(Double(x) - Double(sign: x.sign, exponent: 128, significand: 1)) // 2^128 acts as the next value
        : abs(Double(x) - Double(up))
    if dDown < dUp { return down }
    if dUp < dDown { return up }
    return (bits >> 16) & 1 == 0 ? down : up
}
