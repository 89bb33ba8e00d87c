import Foundation
import XCTest
import DarkroomWeights

/// Replays Tests/Fixtures/fuzz/checkpoint/ and keymap/ (inputs found by `tools/fuzz checkpoint` / `keymap`,
/// minimised) through what those fuzz targets call: each must end in a `WeightsError` or a result, never a trap.
final class FuzzRegressionTests: TempDirTestCase {
    static let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz")

    func inputs(_ target: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: Self.fuzzFolder.appendingPathComponent(target), includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    /// A `header-` input is a bare JSON header: the length prefix and a zero data section are added, as the
    /// fuzz harness does.
    func checkpointFile(_ url: URL) throws -> URL {
        var bytes = [UInt8](try Data(contentsOf: url))
        if url.lastPathComponent.hasPrefix("header-") {
            var dataBytes = 0
            if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] {
                for case let tensor as [String: Any] in object.values {
                    if let offsets = tensor["data_offsets"] as? [Any], offsets.count == 2, let end = offsets[1] as? Int,
                       end > dataBytes, end <= 8 << 20 { dataBytes = end }
                }
            }
            bytes = withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { Array($0) } + bytes + [UInt8](repeating: 0, count: dataBytes)
        }
        return try writeBytes(url.lastPathComponent + ".safetensors", bytes)
    }

    func testFuzzCheckpointsThrowOrOpen() throws {
        for input in try inputs("checkpoint") {
            let file = try checkpointFile(input)
            if let safetensors = try? SafetensorsFile(url: file) {
                for info in safetensors.tensorInfos { _ = try? safetensors.weight(info.name) }
            }
            do { _ = try Checkpoint.open(file) } catch is WeightsError {}
        }
    }

    func testFuzzKeySetsConvert() throws {
        for input in try inputs("keymap") {
            let lines = String(decoding: try Data(contentsOf: input), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            var shapes: [String: [Int]] = [:]
            var keys: [String] = []
            for line in lines {
                guard let equals = line.lastIndex(of: "=") else { keys.append(String(line)); continue }
                let key = String(line[..<equals])
                // As the harness: a shape is up to 8 dimensions of 0...2^20, else none.
                let parts = line[line.index(after: equals)...].split(separator: ",", omittingEmptySubsequences: false)
                let dims = parts.compactMap { Int($0) }.filter { (0...1 << 20).contains($0) }
                keys.append(key)
                if dims.count == parts.count, dims.count <= 8 { shapes[key] = dims }
            }
            for key in keys { _ = LDMKeyMap.canonical(from: [key], shapes: { shapes[$0] }) }
            let map = LDMKeyMap.canonical(from: keys, shapes: { shapes[$0] })
            XCTAssertTrue(map.values.allSatisfy { keys.contains($0.original) }, input.lastPathComponent)
        }
    }
}
