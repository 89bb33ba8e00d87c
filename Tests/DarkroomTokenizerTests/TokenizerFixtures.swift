import Foundation
import XCTest

/// Tests/Fixtures/tokenizer/clip_tokens.json, written by tools/reference/make_tokenizer_fixtures.py
/// (transformers' CLIPTokenizer + our Python port of A1111's prompt parsing and chunking).
struct TokenizerFixture: Decodable {
    struct EncodeCase: Decodable {
        var text: String
        var ids: [Int]
        var padded_eos: [Int]
        var padded_zero: [Int]
    }

    struct RandomCase: Decodable {
        var text: String
        var ids: [Int]
    }

    struct ParsedPiece: Decodable {
        var text: String
        var weight: Double

        init(from decoder: Decoder) throws {
            var c = try decoder.unkeyedContainer()
            text = try c.decode(String.self)
            weight = try c.decode(Double.self)
        }
    }

    struct AttentionCase: Decodable {
        var text: String
        var parsed: [ParsedPiece]
    }

    struct RandomAttentionCase: Decodable {
        var text: String
        var parsed: [ParsedPiece]
        /// Each chunk up to and including its first end token (the rest is end tokens, weight 1.0).
        var chunk_heads: [[Int]]
        var weight_heads: [[Double]]

        /// The full 77-token chunks (padded with the end token).
        func chunks(end: Int) -> [[Int]] { chunk_heads.map { $0 + Array(repeating: end, count: 77 - $0.count) } }
        var weights: [[Double]] { weight_heads.map { $0 + Array(repeating: 1.0, count: 77 - $0.count) } }
    }

    struct RandomChunkCase: Decodable {
        var text: String
        var pad: Int
        var backtrack: Int
        /// Each chunk up to and including its first end token (the rest is `pad`, weight 1.0).
        var chunk_heads: [[Int]]
        var weight_heads: [[Double]]

        var chunks: [[Int]] { chunk_heads.map { $0 + Array(repeating: pad, count: 77 - $0.count) } }
        var weights: [[Double]] { weight_heads.map { $0 + Array(repeating: 1.0, count: 77 - $0.count) } }
    }

    struct ChunkCase: Decodable {
        var name: String
        var text: String
        var pad: Int
        var backtrack: Int
        var token_count: Int
        var chunks: [[Int]]
        var weights: [[Double]]
    }

    struct UnicodeSweep: Decodable {
        var template: String
        var ranges: [[Int]]
        var blocks: [String: String]
    }

    var vocab_size: Int
    var bos: Int
    var eos: Int
    var comma: Int
    var encode: [EncodeCase]
    var random: [RandomCase]
    var combining_marks: [RandomCase]
    var unicode_sweep: UnicodeSweep
    var attention: [AttentionCase]
    var attention_raises: [String]
    var attention_random: [RandomAttentionCase]
    var chunk_random: [RandomChunkCase]
    var chunks: [ChunkCase]

    /// Tests/ (the directory holding Fixtures/).
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    /// The package root.
    static let packageDirectory = testsDirectory.deletingLastPathComponent()

    static func load() throws -> TokenizerFixture {
        let url = testsDirectory.appendingPathComponent("Fixtures/tokenizer/clip_tokens.json")
        let data = try Data(contentsOf: url)
        return try JSONDecoder().decode(TokenizerFixture.self, from: data)
    }
}

/// Prints a readable form of a text for failure messages.
func show(_ text: String) -> String {
    String(reflecting: text.count > 80 ? String(text.prefix(80)) + "…" : text)
}
