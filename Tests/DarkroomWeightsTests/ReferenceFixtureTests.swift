import Foundation
import XCTest
import DarkroomWeights

/// Cross-check against the reference implementation.
///
/// `Tests/Fixtures/safetensors/reference_mixed.safetensors` was written by the official
/// safetensors library (0.8.0, numpy 2.4.6) via `tools/reference/make_safetensors_fixture.py`.
/// The expected bit patterns below are copied from that script's output ("<name> f32 bits"
/// lines); the source values are the F32_VALUES / F16_VALUES / BF16_BITS / F64_VALUES /
/// I32_VALUES / SCALAR / EMPTY arrays defined in the script:
///   f32_values  [0, -0, 1, -2.5, 3.14159265, 1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38, inf, -inf, 0.1]
///   f16_values  numpy float16 of [0, -0, 1, -2, 0.1, 65504, 6.1035156e-05, 5.9604645e-08, inf, -inf, nan, 1e5 (→ inf)]
///   bf16_values raw bits 0x0000 0x8000 0x3F80 0xC020 0x4049 0x7F7F 0x0001 0x0080 0x7F80 0xFF80 0x7FC0 0x3DCD
///   f64_values  [1/3, -1e300 (→ -inf), 1e-320 (→ 0), 2.5]
final class ReferenceFixtureTests: TempDirTestCase {
    let fixture = fixturesDir.appendingPathComponent("reference_mixed.safetensors")

    func testReadsReferenceFileExactly() throws {
        let f = try SafetensorsFile(url: fixture)
        XCTAssertEqual(f.metadata, ["format": "pt", "darkroom_fixture": "reference_mixed v1", "unicode": "café ✓"])
        XCTAssertEqual(f.tensorNames, ["bf16_values", "empty_f16", "f16_values", "f32_values", "f64_values", "i32_values", "scalar_f32"])

        XCTAssertEqual(try f.info("f32_values").dtype, .f32)
        XCTAssertEqual(try f.info("f32_values").shape, [3, 4])
        XCTAssertBitsEqual(try f.floats("f32_values"), [
            0x00000000, 0x80000000, 0x3F800000, 0xC0200000, 0x40490FDB, 0x00000001,
            0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x3DCCCCCD])

        XCTAssertEqual(try f.info("f16_values").dtype, .f16)
        XCTAssertEqual(try f.info("f16_values").shape, [2, 6])
        XCTAssertBitsEqual(try f.floats("f16_values"), [
            0x00000000, 0x80000000, 0x3F800000, 0xC0000000, 0x3DCCC000, 0x477FE000,
            0x38800000, 0x33800000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800000])

        XCTAssertEqual(try f.info("bf16_values").dtype, .bf16)
        XCTAssertEqual(try f.info("bf16_values").shape, [4, 3])
        XCTAssertBitsEqual(try f.floats("bf16_values"), [
            0x00000000, 0x80000000, 0x3F800000, 0xC0200000, 0x40490000, 0x7F7F0000,
            0x00010000, 0x00800000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x3DCD0000])

        XCTAssertEqual(try f.info("f64_values").dtype, .f64)
        XCTAssertBitsEqual(try f.floats("f64_values"), [0x3EAAAAAB, 0xFF800000, 0x00000000, 0x40200000])

        XCTAssertEqual(try f.info("scalar_f32").shape, [])
        XCTAssertEqual(try f.info("scalar_f32").elementCount, 1)
        XCTAssertBitsEqual(try f.floats("scalar_f32"), [0x40E80000])

        XCTAssertEqual(try f.info("empty_f16").shape, [0])
        XCTAssertEqual(try f.info("empty_f16").elementCount, 0)
        XCTAssertEqual(try f.floats("empty_f16"), [])

        let i32 = try f.info("i32_values")
        XCTAssertEqual(i32.dtype, .i32)
        XCTAssertEqual(i32.shape, [2, 2])
        let ints = try f.withRawBytes("i32_values") { raw in
            (0..<4).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
        XCTAssertEqual(ints, [-1, 0, 1, 2147483647])
        assertThrows(.notFloatingPoint(path: fixture.path, tensor: "i32_values", dtype: .i32)) {
            try f.floats("i32_values")
        }
    }

    /// Re-writing the reference file's tensors with the Swift writer reproduces the same
    /// tensor bytes (layout differs: the reference orders by dtype alignment, we by name).
    func testSwiftWriterReproducesReferenceTensorBytes() throws {
        let ref = try SafetensorsFile(url: fixture)
        var w = SafetensorsWriter()
        for name in ref.tensorNames {
            let info = try ref.info(name)
            let bytes = try ref.withRawBytes(name) { Array($0) }
            try w.addRaw(name, dtype: info.dtype, shape: info.shape, bytes: bytes)
        }
        let out = url("rewritten.safetensors")
        try w.write(to: out, metadata: ref.metadata)
        let back = try SafetensorsFile(url: out)
        XCTAssertEqual(back.metadata, ref.metadata)
        XCTAssertEqual(back.tensorNames, ref.tensorNames)
        for name in ref.tensorNames {
            XCTAssertEqual(try back.withRawBytes(name) { Array($0) }, try ref.withRawBytes(name) { Array($0) }, name)
            XCTAssertEqual(try back.info(name).shape, try ref.info(name).shape)
        }
    }

    /// Opt-in: set DARKROOM_SAFETENSORS_PYTHON to a Python that has `safetensors` and `numpy`
    /// (e.g. /tmp/stvenv/bin/python) to have the reference implementation read a file written
    /// by the Swift writer.
    func testReferenceImplementationReadsSwiftOutput() throws {
        guard let python = ProcessInfo.processInfo.environment["DARKROOM_SAFETENSORS_PYTHON"] else {
            throw XCTSkip("set DARKROOM_SAFETENSORS_PYTHON to run the reference cross-check")
        }
        let out = url("swift_written.safetensors")
        try writeMixedSample(to: out)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [packageRoot.appendingPathComponent("tools/reference/make_safetensors_fixture.py").path, "--check", out.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        print(output)
        XCTAssertEqual(p.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("OK: reference implementation read"), output)
    }
}

/// A small file exercising every writer path; also used for the manual Python check.
func writeMixedSample(to url: URL) throws {
    var w = SafetensorsWriter()
    try w.add("a.f32", shape: [2, 3], floats: [0, -0.0, 1.5, -2.25, .infinity, .nan], as: .f32)
    try w.add("b.f16", shape: [5], floats: [0.1, 65504, 70000, 5.9604645e-08, -1], as: .f16)
    try w.add("c.bf16", shape: [4], floats: [1, -2.5, 3.14159265, 0.1], as: .bf16)
    try w.add("d.f64", shape: [2], floats: [1.0 / 3.0, -7], as: .f64)
    try w.add("e.scalar", shape: [], floats: [42], as: .f32)
    try w.add("f.empty", shape: [0, 3], floats: [], as: .f16)
    try w.addRaw("g.i64", dtype: .i64, shape: [2], bytes: [1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    try w.addRaw("h.u8", dtype: .u8, shape: [3], bytes: [1, 2, 3])
    try w.addRaw("i.bool", dtype: .bool, shape: [2], bytes: [0, 1])
    try w.write(to: url, metadata: ["format": "pt", "note": "written by DarkroomWeights \"quoted\" \\ ✓"])
}
