import Foundation

/// A prompt as A1111 feeds it to CLIP: one or more 77-token chunks (start token, 75 prompt tokens or
/// padding, end token) and a weight per token (1.0 for the start/end/padding positions), plus where
/// textual-inversion embeddings replace token embeddings (`fixes`).
///
/// The text encoder side (scale each hidden state by its weight, then restore the original mean) is
/// not done here.
public struct WeightedPrompt: Sendable, Equatable {
    /// Each chunk has exactly 77 ids.
    public var chunks: [[Int]]
    /// Each has exactly 77 weights, aligned with `chunks`.
    public var weights: [[Float]]
    /// Per chunk, the embeddings placed in it (A1111's `PromptChunkFix`); their positions hold id 0.
    public var fixes: [[EmbeddingFix]]

    public init(chunks: [[Int]], weights: [[Float]], fixes: [[EmbeddingFix]]? = nil) {
        self.chunks = chunks
        self.weights = weights
        self.fixes = fixes ?? chunks.map { _ in [] }
    }
}

/// An embedding's vectors go into a chunk's input embeddings from `position` (counted in the 77-token
/// row, start token = 0) for as many positions as it has vectors.
public struct EmbeddingFix: Sendable, Equatable {
    public var position: Int
    public var name: String

    public init(position: Int, name: String) {
        self.position = position
        self.name = name
    }
}

extension CLIPTokenizer {
    /// Prompt tokens per chunk (77 minus the start and end tokens).
    public static let chunkLength = 75

    /// Parses A1111 attention syntax and splits the prompt into 77-token chunks the way A1111's
    /// `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line` does (re-implemented, not copied):
    ///
    /// - every parsed piece is tokenized on its own (`encode`), its tokens carrying the piece's weight;
    /// - a `BREAK` marker ends the current chunk (padding it);
    /// - when a chunk holds 75 tokens and the next token is not a comma, if a comma was among the last
    ///   `commaPaddingBacklog` tokens of the chunk, the tokens after that comma move to the next chunk
    ///   (0 turns this off; A1111's option `comma_padding_backtrack`, default 20);
    /// - each chunk is padded to 75 with the end token, then wrapped as start + 75 + end;
    /// - with a `padToken` other than the end token (SD2), every position after the chunk's first end
    ///   token is set to `padToken`, as A1111 does before running SD2's text encoder;
    /// - an empty prompt still gives one chunk;
    /// - `embeddings` (name → vector count): where a piece's tokens continue with the ids of an embedding's
    ///   name (`embeddingMatch`), that many positions of id 0 carry the piece's weight and a fix records
    ///   the embedding; one that does not fit in the chunk's remaining positions starts the next chunk.
    ///   (A1111 `tokenize_line` and `EmbeddingDatabase.find_embedding_at_position`. One difference: when
    ///   the comma backtrack moves tokens to the next chunk, fixes among them move too; A1111 leaves them
    ///   in the old chunk, past its end.)
    public func weightedChunks(_ prompt: String, padToken: Int, commaPaddingBacklog: Int = 20,
                               embeddings: [String: Int] = [:]) -> WeightedPrompt {
        let length = Self.chunkLength
        let lookup = embeddingLookup(embeddings.keys)
        var result = WeightedPrompt(chunks: [], weights: [])
        var tokens: [Int] = []
        var weights: [Float] = []
        var fixes: [EmbeddingFix] = []      // positions counted without the start token until the chunk ends
        var lastComma = -1

        func finishChunk() {
            var ids = [startToken]
            ids.append(contentsOf: tokens)
            var ws: [Float] = [1]
            ws.append(contentsOf: weights)
            while ids.count < length + 1 {
                ids.append(endToken)
                ws.append(1)
            }
            ids.append(endToken)
            ws.append(1)
            if padToken != endToken, let firstEnd = ids.firstIndex(of: endToken) {
                for k in (firstEnd + 1)..<ids.count { ids[k] = padToken }
            }
            result.chunks.append(ids)
            result.weights.append(ws)
            result.fixes.append(fixes.map { EmbeddingFix(position: $0.position + 1, name: $0.name) })
            tokens.removeAll(keepingCapacity: true)
            weights.removeAll(keepingCapacity: true)
            fixes.removeAll()
            lastComma = -1
        }

        for piece in PromptAttention.parse(prompt) {
            if piece.text == PromptAttention.breakMarker && piece.weight == -1 {
                finishChunk()
                continue
            }
            let weight = Float(piece.weight)
            let pieceTokens = encode(piece.text)
            var position = 0
            while position < pieceTokens.count {
                let token = pieceTokens[position]
                if let comma = commaToken, token == comma {
                    lastComma = tokens.count
                } else if commaPaddingBacklog != 0, tokens.count == length, lastComma != -1,
                          tokens.count - lastComma <= commaPaddingBacklog {
                    let cut = lastComma + 1
                    let movedTokens = Array(tokens[cut...])
                    let movedWeights = Array(weights[cut...])
                    let movedFixes = fixes.filter { $0.position >= cut }.map { EmbeddingFix(position: $0.position - cut, name: $0.name) }
                    tokens.removeSubrange(cut...)
                    weights.removeSubrange(cut...)
                    fixes.removeAll { $0.position >= cut }
                    finishChunk()
                    tokens = movedTokens
                    weights = movedWeights
                    fixes = movedFixes
                }
                if tokens.count == length { finishChunk() }
                guard let (name, matched) = Self.embeddingMatch(lookup, pieceTokens, at: position), let count = embeddings[name] else {
                    tokens.append(token)
                    weights.append(weight)
                    position += 1
                    continue
                }
                let vectors = min(max(count, 1), length)
                if tokens.count + vectors > length { finishChunk() }
                fixes.append(EmbeddingFix(position: tokens.count, name: name))
                tokens.append(contentsOf: repeatElement(0, count: vectors))
                weights.append(contentsOf: repeatElement(weight, count: vectors))
                position += matched
            }
        }
        if !tokens.isEmpty || result.chunks.isEmpty { finishChunk() }
        return result
    }
}

extension CLIPTokenizer {
    /// The names among `names` whose token ids occur in `prompt` the way `weightedChunks` finds them,
    /// in order of first appearance (which embeddings a prompt uses, before any is loaded).
    public func embeddingNames(in prompt: String, among names: some Collection<String>) -> [String] {
        let lookup = embeddingLookup(names)
        guard !lookup.isEmpty else { return [] }
        var found: [String] = []
        for piece in PromptAttention.parse(prompt) where !(piece.text == PromptAttention.breakMarker && piece.weight == -1) {
            let tokens = encode(piece.text)
            var position = 0
            while position < tokens.count {
                if let (name, matched) = Self.embeddingMatch(lookup, tokens, at: position) {
                    if !found.contains(name) { found.append(name) }
                    position += matched
                } else {
                    position += 1
                }
            }
        }
        return found
    }

    /// A1111 `register_embedding_by_name`: each name's ids (tokenized without start/end), grouped by the
    /// first id, longest first (ties by name). Names that tokenize to nothing are left out.
    func embeddingLookup(_ names: some Sequence<String>) -> [Int: [(ids: [Int], name: String)]] {
        var lookup: [Int: [(ids: [Int], name: String)]] = [:]
        for name in names.sorted() {
            let ids = encode(name)
            guard let first = ids.first else { continue }
            lookup[first, default: []].append((ids, name))
        }
        for key in lookup.keys { lookup[key]?.sort { $0.ids.count != $1.ids.count ? $0.ids.count > $1.ids.count : $0.name < $1.name } }
        return lookup
    }

    /// A1111 `find_embedding_at_position`: the first (longest) name whose ids continue `tokens` at `position`.
    static func embeddingMatch(_ lookup: [Int: [(ids: [Int], name: String)]], _ tokens: [Int], at position: Int) -> (String, Int)? {
        guard !lookup.isEmpty, position < tokens.count, let candidates = lookup[tokens[position]] else { return nil }
        for (ids, name) in candidates where position + ids.count <= tokens.count && tokens[position..<(position + ids.count)].elementsEqual(ids) {
            return (name, ids.count)
        }
        return nil
    }
}
