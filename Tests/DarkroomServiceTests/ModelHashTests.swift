import DarkroomService
import Foundation
import XCTest

final class ModelHashTests: XCTestCase {
    /// FIPS 180-2, appendix B.1: SHA-256("abc"). A1111's "Model hash" is the first 10 hex digits of the
    /// file's SHA-256; it is cached by size and modification time, and recomputed when the file changes.
    func testKnownAnswerAndCache() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("model.safetensors")
        try Data("abc".utf8).write(to: file)
        XCTAssertEqual(try ModelHash.sha256(of: file), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let state = folder.appendingPathComponent("state")
        XCTAssertEqual(ModelHash.short(for: file, cacheFolder: state), "ba7816bf8f")
        let cache = state.appendingPathComponent("model-hashes.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.path), "cached in the state folder, not beside the model")
        // The cached value is used while size and time match: a forged entry shows it is read.
        var entries = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: cache)) as? [String: [String: Any]])
        let key = try XCTUnwrap(entries.keys.first)
        entries[key]?["sha256"] = String(repeating: "0", count: 64)
        try JSONSerialization.data(withJSONObject: entries).write(to: cache)
        XCTAssertEqual(ModelHash.short(for: file, cacheFolder: state), "0000000000")
        try Data("abcd".utf8).write(to: file)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(60)], ofItemAtPath: file.path)
        XCTAssertEqual(ModelHash.short(for: file, cacheFolder: state), "88d4266fd4", "SHA-256(\"abcd\") after the file changed")
        XCTAssertNil(ModelHash.short(for: folder, cacheFolder: state), "folders (diffusers layout) have no A1111 hash")
        XCTAssertEqual(ModelHash.short(for: file, cacheFolder: nil), "88d4266fd4", "no cache folder: computed")
        XCTAssertEqual(ModelHash.defaultCacheFolder(environment: ["STATE_DIRECTORY": "/var/lib/darkroom:/x", "HOME": "/root"])?.path, "/var/lib/darkroom")
        XCTAssertEqual(ModelHash.defaultCacheFolder(environment: ["HOME": "/home/u"])?.path, "/home/u/.cache/darkroom")
    }
}
