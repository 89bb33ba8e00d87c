import DarkroomTokenizer
import Foundation
import XCTest

final class CLIPTokenizerTests: XCTestCase {
    private func fixture() throws -> TokenizerFixture { try TokenizerFixture.load() }

    func testSpecialTokensAndVocabularySize() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        XCTAssertEqual(tok.startToken, f.bos)
        XCTAssertEqual(tok.endToken, f.eos)
        XCTAssertEqual(tok.startToken, 49406)
        XCTAssertEqual(tok.endToken, 49407)
        XCTAssertEqual(tok.vocabularySize, f.vocab_size)
        XCTAssertEqual(tok.commaToken, f.comma)
    }

    func testEncodeMatchesTransformers() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        XCTAssertGreaterThanOrEqual(f.encode.count, 40)
        for c in f.encode {
            XCTAssertEqual(tok.encode(c.text), c.ids, "encode \(show(c.text))")
        }
    }

    func testPaddedSequencesMatchTransformers() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        for c in f.encode {
            XCTAssertEqual(tok.tokenize(c.text, padToken: tok.endToken), c.padded_eos, "pad 49407 \(show(c.text))")
            XCTAssertEqual(tok.tokenize(c.text, length: 77, padToken: 0), c.padded_zero, "pad 0 \(show(c.text))")
        }
    }

    func testRandomStringsMatchTransformers() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        XCTAssertEqual(f.random.count, 300)
        var failures = 0
        for c in f.random where tok.encode(c.text) != c.ids {
            failures += 1
            XCTFail("encode \(show(c.text)): got \(tok.encode(c.text)), expected \(c.ids)")
            if failures > 10 { break }
        }
    }

    /// NFC with canonical reordering (Foundation alone gets some of these wrong on Linux).
    func testCombiningMarksMatchTransformers() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        XCTAssertEqual(f.combining_marks.count, 300)
        var failures = 0
        for c in f.combining_marks where tok.encode(c.text) != c.ids {
            failures += 1
            XCTFail("encode \(c.text.unicodeScalars.map { String($0.value, radix: 16) }): got \(tok.encode(c.text)), expected \(c.ids)")
            if failures > 10 { break }
        }
    }

    /// Every code point of planes 0, 1 and 14 in "a" + c + c + "!Q" + c: character classes,
    /// normalization and lowercasing against transformers, compared as one hash per 256 code points.
    func testUnicodeSweepMatchesTransformers() throws {
        let tok = try CLIPTokenizer.bundled()
        let sweep = try fixture().unicode_sweep
        XCTAssertEqual(sweep.template, "a{c}{c}!Q{c}")
        var checked = 0
        var mismatched: [String] = []
        for range in sweep.ranges {
            for start in stride(from: range[0], to: range[1], by: 256) {
                let cps = (start..<(start + 256)).filter { !(0xD800..<0xE000).contains($0) }
                if cps.isEmpty { continue }
                var h: UInt64 = 0xCBF2_9CE4_8422_2325
                for cp in cps {
                    guard let scalar = Unicode.Scalar(UInt32(cp)) else { continue }
                    let c = String(scalar)
                    let ids = tok.encode("a" + c + c + "!Q" + c)
                    let line = String(cp, radix: 16, uppercase: true) + " " + ids.map(String.init).joined(separator: ",") + "\n"
                    for b in line.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
                }
                let key = String(start, radix: 16, uppercase: true)
                let hex = String(h, radix: 16)
                let got = String(repeating: "0", count: 16 - hex.count) + hex
                if sweep.blocks[key] != got { mismatched.append(key) }
                checked += 1
            }
        }
        XCTAssertEqual(checked, sweep.blocks.count)
        XCTAssertEqual(mismatched, [], "blocks (first code point, hex) whose ids differ from transformers")
    }

    func testKnownIDs() throws {
        // Also asserted against open_clip's SimpleTokenizer by the fixture generator.
        let tok = try CLIPTokenizer.bundled()
        XCTAssertEqual(tok.encode("a photo of a cat"), [320, 1125, 539, 320, 2368])
        XCTAssertEqual(tok.encode(""), [])
        XCTAssertEqual(tok.tokenize("", padToken: 0), [49406, 49407] + [Int](repeating: 0, count: 75))
    }

    func testTokenizeLengths() throws {
        let tok = try CLIPTokenizer.bundled()
        let long = String(repeating: "cat ", count: 200)
        let ids = tok.tokenize(long, length: 77, padToken: tok.endToken)
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids.first, tok.startToken)
        XCTAssertEqual(ids.last, tok.endToken)
        XCTAssertEqual(tok.tokenize(long, length: 10, padToken: 0).count, 10)
        XCTAssertEqual(tok.tokenize("a", length: 2, padToken: 0), [tok.startToken, tok.endToken])
    }

    func testEncodeIsStableAcrossCacheAndThreads() throws {
        let tok = try CLIPTokenizer.bundled()
        let f = try fixture()
        let cases = f.random
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for c in cases.shuffled() where tok.encode(c.text) != c.ids {
                XCTFail("worker \(worker): encode \(show(c.text)) differs")
                return
            }
        }
    }

    // MARK: - diffusers tokenizer/ folder

    /// Writes vocab.json + merges.txt derived from the bundled merges file (the way open_clip and the
    /// fixture generator derive them), independently of the library's own loader.
    private func writeDiffusersFolder(_ dir: URL) throws {
        let gz = TokenizerFixture.packageDirectory
            .appendingPathComponent("Sources/DarkroomTokenizer/Resources/bpe_simple_vocab_16e6.txt.gz")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-dc", gz.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let raw = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let text = try XCTUnwrap(String(data: raw, encoding: .utf8))
        let merges = Array(text.split(separator: "\n", omittingEmptySubsequences: false)[1...48894])

        // bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100...
        var order = Array(33...126) + Array(161...172) + Array(174...255)
        let printable = Set(order)
        var chars: [Int: String] = [:]
        for b in order { chars[b] = String(UnicodeScalar(UInt8(b))) }
        var next = 256
        for b in 0...255 where !printable.contains(b) {
            order.append(b)
            chars[b] = String(Character(try XCTUnwrap(Unicode.Scalar(UInt32(next)))))
            next += 1
        }
        var tokens = order.map { chars[$0] ?? "" }
        tokens += order.map { (chars[$0] ?? "") + "</w>" }
        tokens += merges.map { $0.split(separator: " ").joined() }
        tokens += ["<|startoftext|>", "<|endoftext|>"]
        var vocab: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        XCTAssertEqual(vocab.count, 49408)
        try JSONSerialization.data(withJSONObject: vocab).write(to: dir.appendingPathComponent("vocab.json"))
        try Data(("#version: 0.2\n" + merges.joined(separator: "\n") + "\n").utf8)
            .write(to: dir.appendingPathComponent("merges.txt"))
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("darkroom-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testDiffusersFolderGivesIdenticalIDs() throws {
        let dir = try temporaryDirectory()
        try writeDiffusersFolder(dir)
        let folder = try CLIPTokenizer(vocabJSON: dir.appendingPathComponent("vocab.json"),
                                       merges: dir.appendingPathComponent("merges.txt"))
        let byDirectory = try CLIPTokenizer(directory: dir)
        let bundled = try CLIPTokenizer.bundled()
        XCTAssertEqual(folder.startToken, 49406)
        XCTAssertEqual(folder.endToken, 49407)
        XCTAssertEqual(folder.vocabularySize, 49408)
        XCTAssertEqual(folder.commaToken, bundled.commaToken)
        let f = try fixture()
        for c in f.encode {
            XCTAssertEqual(folder.encode(c.text), c.ids, "folder encode \(show(c.text))")
            XCTAssertEqual(byDirectory.encode(c.text), c.ids, "directory encode \(show(c.text))")
        }
        for c in f.random {
            XCTAssertEqual(folder.encode(c.text), c.ids, "folder encode \(show(c.text))")
        }
    }

    // MARK: - errors

    private func assertThrows(
        _ expected: (TokenizerError) -> Bool, naming path: String, file: StaticString = #filePath, line: UInt = #line,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            XCTFail("expected an error", file: file, line: line)
        } catch let error as TokenizerError {
            XCTAssertTrue(expected(error), "unexpected error \(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(path), "\(error) does not name \(path)", file: file, line: line)
        } catch {
            XCTFail("not a TokenizerError: \(error)", file: file, line: line)
        }
    }

    func testMissingFilesAreNamed() throws {
        let dir = try temporaryDirectory()
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        assertThrows({ if case .unreadableFile = $0 { return true }; return false }, naming: vocab.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        try Data("{\"<|startoftext|>\": 0}".utf8).write(to: vocab)
        assertThrows({ if case .unreadableFile = $0 { return true }; return false }, naming: merges.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        let gz = dir.appendingPathComponent("missing.txt.gz")
        assertThrows({ if case .unreadableFile = $0 { return true }; return false }, naming: gz.path) {
            _ = try CLIPTokenizer(openCLIPMergesGzip: gz)
        }
    }

    func testCorruptVocabularyFiles() throws {
        let dir = try temporaryDirectory()
        try writeDiffusersFolder(dir)
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        let goodVocab = try Data(contentsOf: vocab)
        let goodMerges = try Data(contentsOf: merges)

        try Data("[1, 2, 3]".utf8).write(to: vocab)
        assertThrows({ if case .malformedVocabulary = $0 { return true }; return false }, naming: vocab.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        try Data("{\"a\": \"x\"}".utf8).write(to: vocab)
        assertThrows({ if case .malformedVocabulary = $0 { return true }; return false }, naming: vocab.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }

        // A vocabulary without the special tokens.
        var dict = try XCTUnwrap(JSONSerialization.jsonObject(with: goodVocab) as? [String: Int])
        dict["<|endoftext|>"] = nil
        try JSONSerialization.data(withJSONObject: dict).write(to: vocab)
        assertThrows({ $0 == .missingToken(path: vocab.path, token: "<|endoftext|>") }, naming: vocab.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        try goodVocab.write(to: vocab)

        // A merges line that is not two symbols.
        try Data("#version: 0.2\ni n\nthree parts here\n".utf8).write(to: merges)
        assertThrows({ if case .malformedMerges(_, 3, _) = $0 { return true }; return false }, naming: merges.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        // A merge whose result is not in the vocabulary.
        try Data("#version: 0.2\ni n\nq zzzz\n".utf8).write(to: merges)
        assertThrows({ if case .malformedMerges(_, 3, _) = $0 { return true }; return false }, naming: merges.path) {
            _ = try CLIPTokenizer(vocabJSON: vocab, merges: merges)
        }
        try goodMerges.write(to: merges)
        XCTAssertNoThrow(try CLIPTokenizer(vocabJSON: vocab, merges: merges))
    }

    func testCorruptGzip() throws {
        let dir = try temporaryDirectory()
        let bad = dir.appendingPathComponent("garbage.txt.gz")
        try Data("this is not gzip at all".utf8).write(to: bad)
        assertThrows({ if case .corruptGzip = $0 { return true }; return false }, naming: bad.path) {
            _ = try CLIPTokenizer(openCLIPMergesGzip: bad)
        }
        let real = TokenizerFixture.packageDirectory
            .appendingPathComponent("Sources/DarkroomTokenizer/Resources/bpe_simple_vocab_16e6.txt.gz")
        let data = try Data(contentsOf: real)
        let truncated = dir.appendingPathComponent("truncated.txt.gz")
        try data.prefix(data.count / 2).write(to: truncated)
        assertThrows({ if case .corruptGzip = $0 { return true }; return false }, naming: truncated.path) {
            _ = try CLIPTokenizer(openCLIPMergesGzip: truncated)
        }
        // Too few merges: a valid gzip of a short file.
        let short = dir.appendingPathComponent("short.txt")
        try Data("#version: 0.2\ni n\nt h\n".utf8).write(to: short)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-f", short.path]
        try gzip.run()
        gzip.waitUntilExit()
        let shortGz = dir.appendingPathComponent("short.txt.gz")
        assertThrows({ if case .malformedMerges = $0 { return true }; return false }, naming: shortGz.path) {
            _ = try CLIPTokenizer(openCLIPMergesGzip: shortGz)
        }
        // The real file through the same path works and matches the bundled tokenizer.
        let reloaded = try CLIPTokenizer(openCLIPMergesGzip: real)
        XCTAssertEqual(reloaded.encode("a photo of a cat"), [320, 1125, 539, 320, 2368])
    }
}
