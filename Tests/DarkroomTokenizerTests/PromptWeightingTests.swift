import DarkroomTokenizer
import Foundation
import XCTest

final class PromptWeightingTests: XCTestCase {
    func testParseMatchesReference() throws {
        let f = try TokenizerFixture.load()
        XCTAssertGreaterThanOrEqual(f.attention.count, 15)
        for c in f.attention {
            let got = parsePromptAttention(c.text)
            XCTAssertEqual(got.map(\.text), c.parsed.map(\.text), "texts for \(show(c.text))")
            XCTAssertEqual(got.map(\.weight), c.parsed.map { Float($0.weight) }, "weights for \(show(c.text))")
        }
    }

    /// Random mixes of brackets, weights, escapes, BREAK and text: parse and chunks.
    func testRandomSyntaxMatchesReference() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try TokenizerFixture.load()
        XCTAssertEqual(f.attention_random.count, 300)
        var failures = 0
        for c in f.attention_random {
            let got = parsePromptAttention(c.text)
            let chunks = tok.weightedChunks(c.text, padToken: tok.endToken)
            let ok = got.map(\.text) == c.parsed.map(\.text)
                && got.map(\.weight) == c.parsed.map { Float($0.weight) }
                && chunks.chunks == c.chunks(end: tok.endToken)
                && chunks.weights == c.weights.map { $0.map { Float($0) } }
            if !ok {
                failures += 1
                XCTFail("\(show(c.text)): parsed \(got), expected \(c.parsed.map { ($0.text, $0.weight) })")
                if failures > 10 { break }
            }
        }
    }

    /// The examples in A1111's parse_prompt_attention docstring (also asserted by the generator).
    func testPublishedExamples() {
        func check(_ text: String, _ expected: [(String, Double)], line: UInt = #line) {
            let got = parsePromptAttention(text)
            XCTAssertEqual(got.map(\.text), expected.map(\.0), line: line)
            XCTAssertEqual(got.map(\.weight), expected.map { Float($0.1) }, line: line)
        }
        check("normal text", [("normal text", 1.0)])
        check("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        check("(unbalanced", [("unbalanced", 1.1)])
        check("\\(literal\\]", [("(literal]", 1.0)])
        check("(unnecessary)(parens)", [("unnecessaryparens", 1.1)])
        check("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
            ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
            ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1),
        ])
    }

    /// A1111 raises on a weight Python's float() rejects; we keep the `:...)` as literal text instead.
    func testUnparseableWeightIsLiteralText() throws {
        let f = try TokenizerFixture.load()
        XCTAssertEqual(f.attention_raises, ["(bad weight:1.2.3)", "(dot only:.)"])
        let a = parsePromptAttention("(bad weight:1.2.3)")
        XCTAssertEqual(a.map(\.text), ["bad weight:1.2.3)"])
        XCTAssertEqual(a.map(\.weight), [Float(1.1)])
        let b = parsePromptAttention("(dot only:.) x")
        XCTAssertEqual(b.map(\.text), ["dot only:.) x"])
        XCTAssertEqual(b.map(\.weight), [Float(1.1)])
    }

    func testChunksMatchReference() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try TokenizerFixture.load()
        for c in f.chunks {
            let got = tok.weightedChunks(c.text, padToken: c.pad, commaPaddingBacklog: c.backtrack)
            XCTAssertEqual(got.chunks.count, c.chunks.count, "chunk count for \(c.name)")
            XCTAssertEqual(got.chunks, c.chunks, "ids for \(c.name)")
            XCTAssertEqual(got.weights, c.weights.map { $0.map { Float($0) } }, "weights for \(c.name)")
            for chunk in got.chunks { XCTAssertEqual(chunk.count, 77) }
            for w in got.weights { XCTAssertEqual(w.count, 77) }
            XCTAssertEqual(tok.encode(c.text).count, c.token_count, "token count for \(c.name)")
        }
    }

    func testRandomLongPromptsMatchReference() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try TokenizerFixture.load()
        XCTAssertEqual(f.chunk_random.count, 40)
        XCTAssertTrue(f.chunk_random.contains { $0.chunks.count >= 3 })
        for c in f.chunk_random {
            let got = tok.weightedChunks(c.text, padToken: c.pad, commaPaddingBacklog: c.backtrack)
            XCTAssertEqual(got.chunks, c.chunks, "ids for \(show(c.text)) pad \(c.pad) backtrack \(c.backtrack)")
            XCTAssertEqual(got.weights, c.weights.map { $0.map { Float($0) } }, "weights for \(show(c.text))")
        }
    }

    func testChunkShapes() throws {
        let tok = try CLIPTokenizer.bundled()
        let short = tok.weightedChunks("a (cat:1.5)", padToken: tok.endToken)
        XCTAssertEqual(short.chunks.count, 1)
        XCTAssertEqual(Array(short.chunks[0].prefix(4)), [49406, 320, 2368, 49407])
        XCTAssertEqual(Array(short.weights[0].prefix(4)), [1, 1, 1.5, 1])
        XCTAssertEqual(short.chunks[0].dropFirst(3).allSatisfy { $0 == 49407 }, true)

        let sd2 = tok.weightedChunks("a (cat:1.5)", padToken: 0)
        XCTAssertEqual(Array(sd2.chunks[0].prefix(5)), [49406, 320, 2368, 49407, 0])
        XCTAssertEqual(sd2.chunks[0].dropFirst(4).allSatisfy { $0 == 0 }, true)

        let split = tok.weightedChunks("a cat BREAK a dog", padToken: tok.endToken)
        XCTAssertEqual(split.chunks.count, 2)
        XCTAssertEqual(Array(split.chunks[1].prefix(4)), [49406, 320, 1929, 49407])

        // "break" in lowercase is just a word.
        XCTAssertEqual(tok.weightedChunks("a cat break a dog", padToken: tok.endToken).chunks.count, 1)
    }
}
