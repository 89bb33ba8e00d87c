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
        XCTAssertEqual(ModelHash.short(for: file), "ba7816bf8f")
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent(".darkroom-hashes.json").path))
        try Data("abcd".utf8).write(to: file)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(60)], ofItemAtPath: file.path)
        XCTAssertEqual(ModelHash.short(for: file), "88d4266fd4", "SHA-256(\"abcd\") after the file changed")
        XCTAssertNil(ModelHash.short(for: folder), "folders (diffusers layout) have no A1111 hash")
    }
}
