import Foundation
import XCTest
import DarkroomWeights

/// Every malformed input gets its own error case, carrying the path and offending values.
final class HostileFileTests: TempDirTestCase {
    private func open(_ u: URL) throws -> SafetensorsFile { try SafetensorsFile(url: u) }

    /// `{"t": {...}}` header for one tensor.
    private func entry(_ name: String = "t", dtype: String = "\"F32\"", shape: String = "[2]", offsets: String = "[0,8]") -> String {
        "\"\(name)\":{\"dtype\":\(dtype),\"shape\":\(shape),\"data_offsets\":\(offsets)}"
    }

    // MARK: File level

    func testFileOfFiveBytes() throws {
        let u = try writeBytes("five", [1, 2, 3, 4, 5])
        assertThrows(.fileTooShort(path: u.path, fileSize: 5)) { try open(u) }
    }

    func testEmptyFile() throws {
        let u = try writeBytes("empty", [])
        assertThrows(.fileTooShort(path: u.path, fileSize: 0)) { try open(u) }
    }

    func testNonexistentPath() throws {
        let u = url("does-not-exist.safetensors")
        assertThrows(.fileNotFound(path: u.path)) { try open(u) }
        XCTAssertTrue(WeightsError.fileNotFound(path: u.path).description.contains(u.path))
    }

    func testDirectory() throws {
        let u = url("a-directory.safetensors")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: false)
        assertThrows(.notRegularFile(path: u.path)) { try open(u) }
    }

    func testFIFODoesNotHang() throws {
        let u = url("fifo")
        XCTAssertEqual(mkfifo(u.path, 0o600), 0)
        assertThrows(.notRegularFile(path: u.path)) { try open(u) }
    }

    func testUnreadableFile() throws {
        let u = try writeBytes("secret", [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(chmod(u.path, 0), 0)
        guard getuid() != 0 else { throw XCTSkip("root can read mode-000 files") }
        assertThrows(.cannotOpen(path: u.path, errno: EACCES)) { try open(u) }
    }

    // MARK: Header length

    func testHeaderLengthPastEndOfFile() throws {
        let u = try writeSafetensors("past", header: "{}", declaredLength: 1000)
        assertThrows(.headerLengthPastEndOfFile(path: u.path, headerLength: 1000, fileSize: 10)) { try open(u) }
    }

    func testHeaderLengthHuge() throws {
        let u = try writeSafetensors("huge", header: "{}", declaredLength: UInt64.max)
        assertThrows(.headerTooLarge(path: u.path, headerLength: UInt64.max, limit: 100_000_000)) { try open(u) }
        let u2 = try writeSafetensors("huge2", header: "{}", declaredLength: 100_000_001)
        assertThrows(.headerTooLarge(path: u2.path, headerLength: 100_000_001, limit: 100_000_000)) { try open(u2) }
    }

    func testHeaderLengthZero() throws {
        let u = try writeSafetensors("zero", header: "", data: [1, 2, 3, 4])
        assertThrows(.headerEmpty(path: u.path)) { try open(u) }
    }

    // MARK: Header content

    func testNonUTF8Header() throws {
        let u = try writeSafetensors("latin1", headerBytes: Array(#"{"ab"#.utf8) + [0xFF] + Array(#"":1}"#.utf8))
        assertThrows(.headerNotUTF8(path: u.path, byteOffset: 4)) { try open(u) }
        // UTF-16 with BOM is not UTF-8 either (JSONSerialization alone would accept it).
        let utf16 = [UInt8]([0xFF, 0xFE]) + Array("{}".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
        let u2 = try writeSafetensors("utf16", headerBytes: utf16)
        assertThrows(.headerNotUTF8(path: u2.path, byteOffset: 0)) { try open(u2) }
    }

    func testHeaderNotJSON() throws {
        let u = try writeSafetensors("notjson", header: #"{"t": {"dtype": "F32", "#)
        let error = assertThrows({ try open(u) }) { if case .headerNotJSON(u.path, _) = $0 { return true }; return false }
        XCTAssertTrue(error?.description.contains(u.path) ?? false)
        let u2 = try writeSafetensors("garbage", header: "hello world")
        assertThrows({ try open(u2) }) { if case .headerNotJSON(u2.path, _) = $0 { return true }; return false }
    }

    func testHeaderIsJSONArray() throws {
        let u = try writeSafetensors("array", header: #"[{"dtype":"F32","shape":[1],"data_offsets":[0,4]}]"#, data: [0, 0, 0, 0])
        assertThrows(.headerNotObject(path: u.path, found: "an array")) { try open(u) }
        let u2 = try writeSafetensors("number", header: "42")
        assertThrows(.headerNotObject(path: u2.path, found: "a number")) { try open(u2) }
        let u3 = try writeSafetensors("null", header: "null")
        assertThrows(.headerNotObject(path: u3.path, found: "null")) { try open(u3) }
    }

    func testUnknownDType() throws {
        let u = try writeSafetensors("dtype", header: "{" + entry(dtype: "\"F8_E9\"", shape: "[8]", offsets: "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.unknownDType(path: u.path, tensor: "t", dtype: "F8_E9")) { try open(u) }
        let message = WeightsError.unknownDType(path: u.path, tensor: "t", dtype: "F8_E9").description
        XCTAssertTrue(message.contains(u.path) && message.contains("'t'") && message.contains("F8_E9"), message)
    }

    func testDTypeNotAString() throws {
        let u = try writeSafetensors("dtypenum", header: "{" + entry(dtype: "32") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.invalidTensorEntry(path: u.path, tensor: "t", detail: "\"dtype\" is a number, not a string")) { try open(u) }
        let u2 = try writeSafetensors("nodtype", header: #"{"t":{"shape":[2],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertThrows(.invalidTensorEntry(path: u2.path, tensor: "t", detail: "the \"dtype\" field is missing")) { try open(u2) }
        let u3 = try writeSafetensors("entrynotobj", header: #"{"t":[1,2,3]}"#)
        assertThrows(.invalidTensorEntry(path: u3.path, tensor: "t", detail: "the entry is an array, not an object")) { try open(u3) }
    }

    func testShapeWithNegativeEntry() throws {
        let u = try writeSafetensors("negshape", header: "{" + entry(shape: "[2,-1]", offsets: "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.invalidShape(path: u.path, tensor: "t", detail: "dimension 1 is -1, not a non-negative integer")) { try open(u) }
    }

    func testShapeWithWrongTypes() throws {
        let cases: [(String, String)] = [
            ("[2.0]", "dimension 0 is 2.0, not a non-negative integer"),           // float literal
            ("[2.5]", "dimension 0 is 2.5, not a non-negative integer"),
            ("[1e1]", "dimension 0 is 10.0, not a non-negative integer"),
            ("[true]", "dimension 0 is true, not a non-negative integer"),
            ("[\"2\"]", "dimension 0 is \"2\", not a non-negative integer"),
            ("[null]", "dimension 0 is null, not a non-negative integer"),
            ("[[2]]", "dimension 0 is an array, not a non-negative integer"),
            ("[18446744073709551615]", "dimension 0 is 18446744073709551615, not a non-negative integer"),
            ("2", "\"shape\" is a number, not an array"),
            ("{}", "\"shape\" is an object, not an array"),
        ]
        for (i, (shape, detail)) in cases.enumerated() {
            let u = try writeSafetensors("shape\(i)", header: "{" + entry(shape: shape) + "}", data: [UInt8](repeating: 0, count: 8))
            assertThrows(.invalidShape(path: u.path, tensor: "t", detail: detail)) { try open(u) }
        }
        let u = try writeSafetensors("noshape", header: #"{"t":{"dtype":"F32","data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertThrows(.invalidShape(path: u.path, tensor: "t", detail: "the \"shape\" field is missing")) { try open(u) }
    }

    func testDataOffsetsWrongTypes() throws {
        let cases: [(String, String)] = [
            ("[0,8,16]", "expected 2 integers, found 3 elements"),
            ("[0]", "expected 2 integers, found 1 elements"),
            ("[-8,8]", "begin is -8, not a non-negative integer"),
            ("[0,8.0]", "end is 8.0, not a non-negative integer"),
            ("[0,\"8\"]", "end is \"8\", not a non-negative integer"),
            ("[0,18446744073709551615]", "end is 18446744073709551615, not a non-negative integer"),
            ("\"0-8\"", "\"data_offsets\" is a string, not an array"),
        ]
        for (i, (offsets, detail)) in cases.enumerated() {
            let u = try writeSafetensors("off\(i)", header: "{" + entry(offsets: offsets) + "}", data: [UInt8](repeating: 0, count: 8))
            assertThrows(.invalidDataOffsets(path: u.path, tensor: "t", detail: detail)) { try open(u) }
        }
    }

    func testDataOffsetsPastDataSection() throws {
        let u = try writeSafetensors("pastdata", header: "{" + entry(shape: "[4]", offsets: "[0,16]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.dataOffsetsPastEnd(path: u.path, tensor: "t", end: 16, dataSectionSize: 8)) { try open(u) }
        // Absurd offsets must not overflow anything.
        let big = Int.max
        let u2 = try writeSafetensors("pastdata2", header: "{" + entry(shape: "[2]", offsets: "[\(big - 8),\(big)]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.dataOffsetsPastEnd(path: u2.path, tensor: "t", end: big, dataSectionSize: 8)) { try open(u2) }
    }

    func testBeginAfterEnd() throws {
        let u = try writeSafetensors("reversed", header: "{" + entry(offsets: "[8,0]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.dataOffsetsReversed(path: u.path, tensor: "t", begin: 8, end: 0)) { try open(u) }
    }

    func testByteCountDiffersFromShape() throws {
        let u = try writeSafetensors("mismatch", header: "{" + entry(dtype: "\"F16\"", shape: "[3]", offsets: "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.byteCountMismatch(path: u.path, tensor: "t", dtype: .f16, shape: [3], expectedBytes: 6, actualBytes: 8)) { try open(u) }
        let message = WeightsError.byteCountMismatch(path: u.path, tensor: "t", dtype: .f16, shape: [3], expectedBytes: 6, actualBytes: 8).description
        XCTAssertTrue(message.contains(u.path) && message.contains("'t'"), message)
    }

    func testShapeProductOverflow() throws {
        let u = try writeSafetensors("overflow", header: "{" + entry(shape: "[4294967296,4294967296]", offsets: "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.tensorSizeOverflow(path: u.path, tensor: "t", shape: [1 << 32, 1 << 32], dtype: .f32)) { try open(u) }
        // Product fits, × dtype size does not.
        let n = Int.max / 2 + 1
        let u2 = try writeSafetensors("overflow2", header: "{" + entry(shape: "[\(n)]", offsets: "[0,8]") + "}", data: [UInt8](repeating: 0, count: 8))
        assertThrows(.tensorSizeOverflow(path: u2.path, tensor: "t", shape: [n], dtype: .f32)) { try open(u2) }
        // A zero dimension makes any other dimension harmless.
        let u3 = try writeSafetensors("zerodim", header: "{" + entry(shape: "[0,9223372036854775807]", offsets: "[0,0]") + "}")
        XCTAssertEqual(try open(u3).info("t").elementCount, 0)
    }

    func testOverlappingRanges() throws {
        let header = "{" + entry("a", shape: "[2]", offsets: "[0,8]") + "," + entry("b", shape: "[2]", offsets: "[4,12]") + "}"
        let u = try writeSafetensors("overlap", header: header, data: [UInt8](repeating: 0, count: 12))
        assertThrows(.overlappingTensors(path: u.path, tensor: "b", range: 4 ..< 12, other: "a", otherRange: 0 ..< 8)) { try open(u) }
        // Identical ranges (aliasing) overlap too.
        let header2 = "{" + entry("a") + "," + entry("b") + "}"
        let u2 = try writeSafetensors("alias", header: header2, data: [UInt8](repeating: 0, count: 8))
        assertThrows(.overlappingTensors(path: u2.path, tensor: "b", range: 0 ..< 8, other: "a", otherRange: 0 ..< 8)) { try open(u2) }
        // A zero-size tensor strictly inside another one's bytes is rejected like the Rust crate does.
        let header3 = "{" + entry("a") + "," + entry("z", shape: "[0]", offsets: "[4,4]") + "}"
        let u3 = try writeSafetensors("inside", header: header3, data: [UInt8](repeating: 0, count: 8))
        assertThrows(.overlappingTensors(path: u3.path, tensor: "z", range: 4 ..< 4, other: "a", otherRange: 0 ..< 8)) { try open(u3) }
    }

    func testGapBetweenTensorsIsRejected() throws {
        let header = "{" + entry("a", offsets: "[0,8]") + "," + entry("b", offsets: "[12,20]") + "}"
        let u = try writeSafetensors("gap", header: header, data: [UInt8](repeating: 0, count: 20))
        assertThrows(.gapInDataSection(path: u.path, gap: 8 ..< 12, after: "a", before: "b")) { try open(u) }
        let u2 = try writeSafetensors("gapstart", header: "{" + entry(offsets: "[4,12]") + "}", data: [UInt8](repeating: 0, count: 12))
        assertThrows(.gapInDataSection(path: u2.path, gap: 0 ..< 4, after: nil, before: "t")) { try open(u2) }
    }

    func testTrailingBytesAreRejected() throws {
        let u = try writeSafetensors("trailing", header: "{" + entry() + "}", data: [UInt8](repeating: 0, count: 9))
        assertThrows(.trailingBytes(path: u.path, dataEnd: 8, dataSectionSize: 9)) { try open(u) }
        let u2 = try writeSafetensors("onlytrailing", header: "{}", data: [1])
        assertThrows(.trailingBytes(path: u2.path, dataEnd: 0, dataSectionSize: 1)) { try open(u2) }
    }

    func testZeroSizeTensorsAtBoundariesAreFine() throws {
        let header = "{" + [entry("a"), entry("z0", shape: "[0]", offsets: "[0,0]"), entry("z8", shape: "[0]", offsets: "[8,8]"),
                            entry("z8b", shape: "[2,0]", offsets: "[8,8]"), entry("b", offsets: "[8,16]"),
                            entry("zend", shape: "[0]", offsets: "[16,16]")].joined(separator: ",") + "}"
        let u = try writeSafetensors("zeros", header: header, data: [UInt8](repeating: 0, count: 16))
        let f = try open(u)
        XCTAssertEqual(f.tensorNames, ["a", "b", "z0", "z8", "z8b", "zend"])
    }

    func testTruncatedFile() throws {
        var w = SafetensorsWriter()
        try w.add("first", shape: [4], floats: [1, 2, 3, 4], as: .f32)
        try w.add("second", shape: [4], floats: [1, 2, 3, 4], as: .f16)
        let good = url("good.safetensors")
        try w.write(to: good)
        let bytes = try Array(Data(contentsOf: good))
        let u = try writeBytes("truncated", Array(bytes.dropLast(3)))
        let f0 = try open(good)
        let dataSize = f0.fileSize - 8 - f0.headerLength
        assertThrows(.dataOffsetsPastEnd(path: u.path, tensor: "second", end: dataSize, dataSectionSize: dataSize - 3)) { try open(u) }
        // Cut inside the header: the declared length is now past EOF.
        let u2 = try writeBytes("truncated-header", Array(bytes.prefix(20)))
        assertThrows(.headerLengthPastEndOfFile(path: u2.path, headerLength: UInt64(f0.headerLength), fileSize: 20)) { try open(u2) }
    }

    func testMetadataMustBeStrings() throws {
        let u = try writeSafetensors("meta", header: #"{"__metadata__":{"epochs":3}}"#)
        assertThrows(.invalidMetadata(path: u.path, detail: "the value of 'epochs' is a number, not a string")) { try open(u) }
        let u2 = try writeSafetensors("meta2", header: #"{"__metadata__":["a"]}"#)
        assertThrows(.invalidMetadata(path: u2.path, detail: "it is an array, not an object")) { try open(u2) }
        let u3 = try writeSafetensors("meta3", header: #"{"__metadata__":null}"#)
        XCTAssertEqual(try open(u3).metadata, [:])
    }

    func testHeaderPaddingAndUnknownFieldsAreAccepted() throws {
        let header = #"{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":"ignored"}}"# + "       \n"
        let u = try writeSafetensors("padded", header: header, data: [0, 0, 0x80, 0x3F])
        XCTAssertEqual(try open(u).floats("t"), [1])
    }

    /// Every prefix of a valid file, and many single-byte corruptions, must throw a
    /// WeightsError or open cleanly — never crash, hang or read out of bounds.
    func testTruncationsAndRandomCorruptionNeverCrash() throws {
        let good = url("fuzz-base.safetensors")
        try writeMixedSample(to: good)
        let bytes = try Array(Data(contentsOf: good))
        for n in 0 ..< bytes.count {
            let u = try writeBytes("prefix", Array(bytes.prefix(n)))
            XCTAssertThrowsError(try open(u), "prefix \(n)") { XCTAssertTrue($0 is WeightsError) }
        }
        var rng = SplitMix64(seed: 0xDA4C_400D)
        var opened = 0
        for _ in 0 ..< 1500 {
            var mutated = bytes
            for _ in 0 ..< Int(rng.next() % 3 + 1) {
                let i = Int(rng.next() % UInt64(mutated.count))
                mutated[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            let u = try writeBytes("mutated", mutated)
            do {
                let f = try open(u)
                opened += 1
                for name in f.tensorNames {
                    let info = try f.info(name)
                    if info.dtype.isFloatingPoint { _ = try f.floats(name) }
                    _ = try f.withRawBytes(name) { $0.reduce(0) { $0 &+ Int($1) } }
                }
            } catch is WeightsError {
            } catch {
                XCTFail("non-WeightsError \(error)")
            }
        }
        XCTAssertGreaterThan(opened, 0) // data-byte mutations leave a valid file
    }

    func testDescriptionsNameFileAndTensor() {
        let p = "/models/x.safetensors"
        let errors: [WeightsError] = [
            .invalidShape(path: p, tensor: "unet.w", detail: "d"),
            .invalidDataOffsets(path: p, tensor: "unet.w", detail: "d"),
            .dataOffsetsReversed(path: p, tensor: "unet.w", begin: 8, end: 0),
            .dataOffsetsPastEnd(path: p, tensor: "unet.w", end: 9, dataSectionSize: 8),
            .tensorSizeOverflow(path: p, tensor: "unet.w", shape: [1], dtype: .f32),
            .overlappingTensors(path: p, tensor: "unet.w", range: 0 ..< 8, other: "unet.b", otherRange: 4 ..< 8),
            .gapInDataSection(path: p, gap: 8 ..< 12, after: "unet.b", before: "unet.w"),
            .unknownDType(path: p, tensor: "unet.w", dtype: "X"),
            .invalidTensorEntry(path: p, tensor: "unet.w", detail: "d"),
            .bufferSizeMismatch(path: p, tensor: "unet.w", expected: 1, actual: 2),
        ]
        for e in errors {
            XCTAssertTrue(e.description.contains(p) && e.description.contains("'unet.w'"), e.description)
            XCTAssertTrue(e.description.hasSuffix("."), e.description)
        }
    }
}

/// Deterministic PRNG for the corruption test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
