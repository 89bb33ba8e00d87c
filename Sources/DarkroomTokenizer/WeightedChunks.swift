import Foundation

/// A prompt as A1111 feeds it to CLIP: one or more 77-token chunks (start token, 75 prompt tokens or
/// padding, end token) and a weight per token (1.0 for the start/end/padding positions).
///
/// The text encoder side (scale each hidden state by its weight, then restore the original mean) is
/// not done here.
public struct WeightedPrompt: Sendable, Equatable {
    /// Each chunk has exactly 77 ids.
    public var chunks: [[Int]]
    /// Each has exactly 77 weights, aligned with `chunks`.
    public var weights: [[Float]]

    public init(chunks: [[Int]], weights: [[Float]]) {
        self.chunks = chunks
        self.weights = weights
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
    /// - an empty prompt still gives one chunk.
    public func weightedChunks(_ prompt: String, padToken: Int, commaPaddingBacklog: Int = 20) -> WeightedPrompt {
        let length = Self.chunkLength
        var result = WeightedPrompt(chunks: [], weights: [])
        var tokens: [Int] = []
        var weights: [Float] = []
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
            tokens.removeAll(keepingCapacity: true)
            weights.removeAll(keepingCapacity: true)
            lastComma = -1
        }

        for piece in PromptAttention.parse(prompt) {
            if piece.text == PromptAttention.breakMarker && piece.weight == -1 {
                finishChunk()
                continue
            }
            let weight = Float(piece.weight)
            for token in encode(piece.text) {
                if let comma = commaToken, token == comma {
                    lastComma = tokens.count
                } else if commaPaddingBacklog != 0, tokens.count == length, lastComma != -1,
                          tokens.count - lastComma <= commaPaddingBacklog {
                    let cut = lastComma + 1
                    let movedTokens = Array(tokens[cut...])
                    let movedWeights = Array(weights[cut...])
                    tokens.removeSubrange(cut...)
                    weights.removeSubrange(cut...)
                    finishChunk()
                    tokens = movedTokens
                    weights = movedWeights
                }
                if tokens.count == length { finishChunk() }
                tokens.append(token)
                weights.append(weight)
            }
        }
        if !tokens.isEmpty || result.chunks.isEmpty { finishChunk() }
        return result
    }
}
