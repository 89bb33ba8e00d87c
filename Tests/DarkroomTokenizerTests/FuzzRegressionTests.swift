import Foundation
import XCTest
import DarkroomTokenizer

/// Replays Tests/Fixtures/fuzz/prompt/ (inputs found by `tools/fuzz prompt`, minimised) through what the fuzz
/// target calls: A1111 attention parsing, weighted 75-token chunks (SD1 and SD2 padding) and encoding.
final class FuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/prompt")

    func testFuzzPromptsTokenize() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let files = try FileManager.default.contentsOfDirectory(at: Self.folder, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
        for url in files {
            let prompt = String(decoding: try Data(contentsOf: url), as: UTF8.self)
            let start = Date()
            XCTAssertFalse(parsePromptAttention(prompt).contains { $0.weight.isNaN }, url.lastPathComponent)
            let chunks = tokenizer.weightedChunks(prompt, padToken: tokenizer.endToken)
            XCTAssertTrue(chunks.chunks.allSatisfy { $0.count == 77 }, url.lastPathComponent)
            _ = tokenizer.weightedChunks(prompt, padToken: 0, commaPaddingBacklog: 0)
            XCTAssertTrue(tokenizer.encode(prompt).allSatisfy { (0..<tokenizer.vocabularySize).contains($0) }, url.lastPathComponent)
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, "\(url.lastPathComponent) is slow to tokenize")
        }
    }
}
