import Foundation

/// The byte <-> printable-character table of OpenAI's byte-level BPE (`bytes_to_unicode` in CLIP/GPT-2).
///
/// The 188 bytes that are printable Latin-1 (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) stand for themselves;
/// the other 68 bytes (controls, space, DEL, NBSP, soft hyphen ...) are mapped, in increasing order,
/// to U+0100, U+0101, ... The *order* of this table is also the order of the first 256 vocabulary ids.
enum ByteLevel {
    /// `order[i]` is the byte whose symbol has vocabulary id `i` (and `i + 256` with `</w>`).
    static let order: [UInt8] = {
        var printable: [UInt8] = []
        printable += Array(UInt8(ascii: "!")...UInt8(ascii: "~"))
        printable += Array(UInt8(0xA1)...UInt8(0xAC))
        printable += Array(UInt8(0xAE)...UInt8(0xFF))
        let set = Set(printable)
        var rest: [UInt8] = []
        for b in 0...255 where !set.contains(UInt8(b)) { rest.append(UInt8(b)) }
        return printable + rest
    }()

    /// `character[b]` is the printable stand-in for byte `b`.
    static let character: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in order {
            let isPrintable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if isPrintable {
                table[Int(b)] = Unicode.Scalar(b)
            } else {
                // 256...323 are all valid scalars.
                table[Int(b)] = Unicode.Scalar(next) ?? " "
                next += 1
            }
        }
        return table
    }()

    /// The vocabulary spelling of a byte string (each byte replaced by its stand-in character).
    static func spell<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(character[Int(b)]) }
        return String(s)
    }
}

/// Raw material for a tokenizer: a token -> id map and the ordered merge list.
struct VocabularySource {
    var tokenToID: [String: Int]
    /// Merge rules in rank order: (left, right, line number in the file for errors).
    var merges: [(left: String, right: String, line: Int)]
    var vocabPath: String
    var mergesPath: String
}

enum VocabularyLoader {
    static let startOfText = "<|startoftext|>"
    static let endOfText = "<|endoftext|>"
    static let endOfWord = "</w>"
    /// CLIP uses the first 49152 - 256 - 2 = 48,894 merges of bpe_simple_vocab_16e6.
    static let clipMergeCount = 49152 - 256 - 2

    static func readFile(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
    }

    /// open_clip's `bpe_simple_vocab_16e6.txt.gz`: a header line, then merges "a b" one a line.
    /// The vocabulary is derived exactly as open_clip/OpenAI CLIP do: 256 byte symbols, the same
    /// with `</w>`, one token per merge, then `<|startoftext|>` and `<|endoftext|>`.
    static func openCLIPMerges(gzipData: Data, path: String) throws -> VocabularySource {
        let bytes = try Gzip.decompress(gzipData, path: path)
        var merges: [(left: String, right: String, line: Int)] = []
        merges.reserveCapacity(clipMergeCount)
        var lineNumber = 0
        var start = 0
        var index = 0
        let n = bytes.count
        while index <= n && merges.count < clipMergeCount {
            if index == n || bytes[index] == 0x0A {
                lineNumber += 1
                if lineNumber > 1 {  // line 1 is the "#version" header
                    let line = String(decoding: bytes[start..<index], as: UTF8.self)
                    merges.append(try splitMerge(line, lineNumber: lineNumber, path: path))
                }
                start = index + 1
            }
            index += 1
        }
        guard merges.count == clipMergeCount else {
            throw TokenizerError.malformedMerges(
                path: path, line: lineNumber,
                reason: "expected \(clipMergeCount) merges, found \(merges.count)")
        }
        var tokens: [String] = []
        tokens.reserveCapacity(2 * 256 + merges.count + 2)
        for b in ByteLevel.order { tokens.append(String(ByteLevel.character[Int(b)])) }
        for b in ByteLevel.order { tokens.append(String(ByteLevel.character[Int(b)]) + endOfWord) }
        for m in merges { tokens.append(m.left + m.right) }
        tokens.append(startOfText)
        tokens.append(endOfText)
        var tokenToID: [String: Int] = [:]
        tokenToID.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() { tokenToID[token] = id }  // later entries win, as in a Python dict
        return VocabularySource(tokenToID: tokenToID, merges: merges, vocabPath: path, mergesPath: path)
    }

    /// A diffusers/transformers `tokenizer/` folder's `vocab.json` + `merges.txt`.
    static func huggingFace(vocabJSON: URL, merges mergesURL: URL) throws -> VocabularySource {
        let vocabData = try readFile(vocabJSON)
        let tokenToID: [String: Int]
        do {
            tokenToID = try JSONDecoder().decode([String: Int].self, from: vocabData)
        } catch {
            throw TokenizerError.malformedVocabulary(
                path: vocabJSON.path, reason: "expected a JSON object of token -> integer id (\(error))")
        }
        guard !tokenToID.isEmpty else {
            throw TokenizerError.malformedVocabulary(path: vocabJSON.path, reason: "the vocabulary is empty")
        }
        if let bad = tokenToID.first(where: { $0.value < 0 }) {
            throw TokenizerError.malformedVocabulary(
                path: vocabJSON.path, reason: "negative id \(bad.value) for token \(String(reflecting: bad.key))")
        }
        let mergesData = try readFile(mergesURL)
        guard let text = String(data: mergesData, encoding: .utf8) else {
            throw TokenizerError.malformedMerges(path: mergesURL.path, line: 1, reason: "not valid UTF-8")
        }
        var merges: [(left: String, right: String, line: Int)] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(raw)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.isEmpty { continue }
            if lineNumber == 1 && line.hasPrefix("#version") { continue }
            merges.append(try splitMerge(String(line), lineNumber: lineNumber, path: mergesURL.path))
        }
        return VocabularySource(tokenToID: tokenToID, merges: merges, vocabPath: vocabJSON.path, mergesPath: mergesURL.path)
    }

    private static func splitMerge(_ line: String, lineNumber: Int, path: String) throws -> (left: String, right: String, line: Int) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw TokenizerError.malformedMerges(
                path: path, line: lineNumber, reason: "expected two symbols separated by one space, got \(String(reflecting: line))")
        }
        return (String(parts[0]), String(parts[1]), lineNumber)
    }
}
