import Foundation

/// Byte-level BPE over one pre-token ("word"), with `</w>` on the word's last symbol.
///
/// Immutable tables plus a lock-protected cache of word -> ids, so one instance can be shared by
/// every copy of `CLIPTokenizer` and used from any thread.
final class BPEModel: @unchecked Sendable {
    /// Vocabulary id of each byte's symbol (`byteSymbol`) and of the same symbol ending a word (`byteSymbolEnd`).
    let byteSymbol: [Int32]
    let byteSymbolEnd: [Int32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    let startToken: Int
    let endToken: Int
    let commaToken: Int?
    let vocabularySize: Int
    /// id -> vocabulary spelling ("" for an id the vocabulary skips).
    let tokens: [String]

    // All mutable state; guarded by `lock`.
    private let lock = NSLock()
    private var cache: [[UInt8]: [Int32]] = [:]
    static let cacheLimit = 20_000

    init(_ source: VocabularySource) throws {
        let vocab = source.tokenToID
        func id(_ token: String, _ path: String) throws -> Int {
            guard let value = vocab[token] else { throw TokenizerError.missingToken(path: path, token: token) }
            return value
        }
        guard let maxID = vocab.values.max(), maxID < Int(Int32.max) else {
            throw TokenizerError.malformedVocabulary(path: source.vocabPath, reason: "ids out of range")
        }
        vocabularySize = maxID + 1
        var spellings = [String](repeating: "", count: maxID + 1)
        for (token, value) in vocab { spellings[value] = token }
        tokens = spellings
        startToken = try id(VocabularyLoader.startOfText, source.vocabPath)
        endToken = try id(VocabularyLoader.endOfText, source.vocabPath)
        commaToken = vocab["," + VocabularyLoader.endOfWord]

        var plain = [Int32](repeating: 0, count: 256)
        var final = [Int32](repeating: 0, count: 256)
        for b in 0..<256 {
            let ch = String(ByteLevel.character[b])
            plain[b] = Int32(try id(ch, source.vocabPath))
            final[b] = Int32(try id(ch + VocabularyLoader.endOfWord, source.vocabPath))
        }
        byteSymbol = plain
        byteSymbolEnd = final

        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(source.merges.count)
        for (rank, merge) in source.merges.enumerated() {
            guard let left = vocab[merge.left], let right = vocab[merge.right] else {
                let missing = vocab[merge.left] == nil ? merge.left : merge.right
                throw TokenizerError.malformedMerges(
                    path: source.mergesPath, line: merge.line,
                    reason: "symbol \(String(reflecting: missing)) is not in the vocabulary \(source.vocabPath)")
            }
            guard let merged = vocab[merge.left + merge.right] else {
                throw TokenizerError.malformedMerges(
                    path: source.mergesPath, line: merge.line,
                    reason: "merged token \(String(reflecting: merge.left + merge.right)) is not in the vocabulary \(source.vocabPath)")
            }
            // A repeated pair keeps its last rank, as a Python dict / the Rust HashMap build does.
            table[Self.key(left, right)] = UInt64(rank) << 32 | UInt64(merged)
        }
        merges = table
    }

    @inline(__always) private static func key(_ left: Int, _ right: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: left)) << 32 | UInt64(UInt32(truncatingIfNeeded: right))
    }

    @inline(__always) private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    /// Appends the ids of one word (its UTF-8 bytes) to `out`.
    func encodeWord(_ bytes: [UInt8], into out: inout [Int]) {
        guard !bytes.isEmpty else { return }
        lock.lock()
        let hit = cache[bytes]
        lock.unlock()
        if let hit {
            for t in hit { out.append(Int(t)) }
            return
        }
        let ids = merge(bytes)
        lock.lock()
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        lock.unlock()
        for t in ids { out.append(Int(t)) }
    }

    /// Repeatedly merges the adjacent pair with the lowest rank (all its non-overlapping occurrences,
    /// left to right) until no adjacent pair has a merge rule.
    func merge(_ bytes: [UInt8]) -> [Int32] {
        var symbols = [Int32]()
        symbols.reserveCapacity(bytes.count)
        for b in bytes.dropLast() { symbols.append(byteSymbol[Int(b)]) }
        if let last = bytes.last { symbols.append(byteSymbolEnd[Int(last)]) }
        while symbols.count > 1 {
            var bestRank = UInt64.max
            var bestValue: UInt64 = 0
            var bestLeft: Int32 = 0
            var bestRight: Int32 = 0
            for i in 0..<(symbols.count - 1) {
                if let value = merges[Self.key(symbols[i], symbols[i + 1])] {
                    let rank = value >> 32
                    if rank < bestRank {
                        bestRank = rank
                        bestValue = value
                        bestLeft = symbols[i]
                        bestRight = symbols[i + 1]
                    }
                }
            }
            if bestRank == UInt64.max { break }
            let merged = Int32(truncatingIfNeeded: bestValue & 0xFFFF_FFFF)
            var write = 0
            var read = 0
            let count = symbols.count
            while read < count {
                if read + 1 < count && symbols[read] == bestLeft && symbols[read + 1] == bestRight {
                    symbols[write] = merged
                    read += 2
                } else {
                    symbols[write] = symbols[read]
                    read += 1
                }
                write += 1
            }
            symbols.removeLast(count - write)
        }
        return symbols
    }
}
