import DarkroomModels
import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights

/// diffusers `encode_prompt` with A1111's prompt syntax: the negative and positive prompts become
/// text-encoder hidden states [2, 77·chunks, width] (negative first, as diffusers concatenates them for
/// classifier-free guidance), or just the positive one [1, …] when guidance is off.
///
/// Prompts are tokenized as A1111 does (weights `(word:1.3)`, `[word]`, `BREAK`, 75-token chunks). A plain
/// prompt of up to 75 tokens gives the same ids as diffusers' tokenizer call, so its embedding is
/// diffusers'. When the two prompts need different numbers of chunks, the shorter is extended with the
/// empty prompt's chunk, as A1111's `pad_cond_uncond` does.
///
/// A word naming one of `embeddings` is replaced by its vectors (`PromptEncoder+Embeddings.swift`).
struct PromptEncoder {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel
    let clipSkip: Int
    /// The checkpoint's family: which embeddings its text encoder takes.
    let family: ModelFamily
    var embeddings: [TextualInversionEmbedding] = []

    func encode(prompt: String, negativePrompt: String, guidance: Bool) throws -> Tensor {
        let pad = textEncoder.config.padToken
        let (counts, vectors) = try embeddingTables()
        func encoded(_ text: String) -> Tensor {
            textEncoder(tokenizer.weightedChunks(text, padToken: pad, embeddings: counts), embeddings: vectors, skipLastLayers: clipSkip)
        }
        var positive = encoded(prompt)
        guard guidance else { return positive }
        var negative = encoded(negativePrompt)
        if positive.shape[1] != negative.shape[1] {
            let empty = textEncoder(tokenizer.weightedChunks("", padToken: pad), skipLastLayers: clipSkip)
            while negative.shape[1] < positive.shape[1] { negative = Tensor.concatenate([negative, empty], axis: 1) }
            while positive.shape[1] < negative.shape[1] { positive = Tensor.concatenate([positive, empty], axis: 1) }
        }
        return Tensor.concatenate([negative, positive], axis: 0)
    }
}
