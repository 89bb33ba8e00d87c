import Foundation
import XCTest
import DarkroomWeights

/// A fresh directory per test case instance, removed in tearDown.
class TempDirTestCase: XCTestCase {
    var tempDir: URL!

    override func setUpWithError() throws {
        tempDir = FileManager.default.temporaryDirectory
            .appendingPathComponent("darkroom-weights-tests-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tempDir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let dir = tempDir { try? FileManager.default.removeItem(at: dir) }
    }

    func url(_ name: String) -> URL { tempDir.appendingPathComponent(name) }

    /// Writes raw bytes to a file in the temp dir.
    @discardableResult
    func writeBytes(_ name: String, _ bytes: [UInt8]) throws -> URL {
        let u = url(name)
        try Data(bytes).write(to: u)
        return u
    }

    /// Writes `8-byte LE length + header + data`; `declaredLength` overrides the length field.
    @discardableResult
    func writeSafetensors(_ name: String, header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) throws -> URL {
        try writeSafetensors(name, headerBytes: Array(header.utf8), data: data, declaredLength: declaredLength)
    }

    @discardableResult
    func writeSafetensors(_ name: String, headerBytes: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil) throws -> URL {
        let n = declaredLength ?? UInt64(headerBytes.count)
        var bytes = withUnsafeBytes(of: n.littleEndian) { Array($0) }
        bytes += headerBytes
        bytes += data
        return try writeBytes(name, bytes)
    }

    /// Asserts that `body` throws exactly `expected`.
    func assertThrows<T>(_ expected: WeightsError, file: StaticString = #filePath, line: UInt = #line,
                         _ body: () throws -> T) {
        do {
            _ = try body()
            XCTFail("expected \(expected), nothing was thrown", file: file, line: line)
        } catch let error as WeightsError {
            XCTAssertEqual(error, expected, file: file, line: line)
        } catch {
            XCTFail("expected \(expected), got non-WeightsError \(error)", file: file, line: line)
        }
    }

    /// Asserts that `body` throws a WeightsError satisfying `matches`; returns it.
    @discardableResult
    func assertThrows<T>(file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T,
                         matches: (WeightsError) -> Bool) -> WeightsError? {
        do {
            _ = try body()
            XCTFail("expected an error, nothing was thrown", file: file, line: line)
        } catch let error as WeightsError {
            XCTAssertTrue(matches(error), "unexpected error: \(error)", file: file, line: line)
            return error
        } catch {
            XCTFail("got non-WeightsError \(error)", file: file, line: line)
        }
        return nil
    }
}

/// Bit-exact comparison of Float arrays (NaN == NaN when the bits agree).
func XCTAssertBitsEqual(_ a: [Float], _ b: [UInt32], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.map(\.bitPattern).map { String(format: "0x%08X", $0) },
                   b.map { String(format: "0x%08X", $0) }, file: file, line: line)
}

/// Root of the package (…/dev-weights), found from this file's location.
let packageRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent() // DarkroomWeightsTests
    .deletingLastPathComponent() // Tests
    .deletingLastPathComponent()

let fixturesDir = packageRoot.appendingPathComponent("Tests/Fixtures/safetensors")
