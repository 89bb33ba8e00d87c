import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights
import Foundation

/// SDXL's text conditioning: the family's text encoders (base: CLIP ViT-L and OpenCLIP ViT-bigG; refiner: bigG
/// alone), as diffusers 0.42.1 `StableDiffusionXLImg2ImgPipeline.encode_prompt` combines them:
///
///     prompt_2 = prompt_2 or prompt
///     for (prompt, tokenizer, text_encoder) in zip([prompt, prompt_2], tokenizers, text_encoders):
///         ids = tokenizer(prompt, padding="max_length", max_length=77, truncation=True)
///         out = text_encoder(ids, output_hidden_states=True)
///         pooled = pooled or out.text_embeds          # the first encoder with a projection
///         embeds.append(out.hidden_states[-(clip_skip or 0) - 2])
///     prompt_embeds = concat(embeds, dim=-1)          # [1, 77, Σ widths]
///
///     negative_prompt is None and force_zeros_for_empty_prompt → zeros like prompt_embeds and pooled
///     otherwise: negative_prompt = negative_prompt or ""; negative_prompt_2 = negative_prompt_2 or negative_prompt;
///                encoded as above
///
/// An empty `negativePrompt` ("") is encoded, not zeroed: only an absent one is. The refiner's single encoder
/// gets `prompt` (zip pairs the first prompt with the first tokenizer). Prompts take A1111's syntax (see `encode`);
/// where diffusers would truncate a prompt past 75 tokens, it continues in further chunks, as in A1111.
public struct SDXLPromptEncoder: Sendable {
    public struct Encoder: Sendable {
        public let description: ModelFamily.TextEncoder
        public let model: CLIPTextModel
    }

    /// What conditions the UNet: `promptEmbeds` [B, 77, Σ widths] (cross-attention context) and `pooled`
    /// [B, projection] (the added conditioning's `text_embeds`).
    public struct Embeddings: Sendable {
        public let promptEmbeds: Tensor
        public let pooled: Tensor
    }

    public let encoders: [Encoder]
    public let forceZerosForEmptyPrompt: Bool

    /// Checks that the encoders give a pooled output (one has a projection).
    public init(encoders: [Encoder], forceZerosForEmptyPrompt: Bool, source: String) throws {
        guard encoders.contains(where: { $0.model.projectionWidth != nil }) else {
            throw WeightsError.incompatibleComponents(source: source, detail: "no text encoder has a text_projection, so there is no pooled text embedding for SDXL's added conditioning")
        }
        self.encoders = encoders
        self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt
    }

    /// The text encoders of `checkpoint`'s family, configured by `configFolder` (diffusers folder; nil: the
    /// family's values). `force_zeros_for_empty_prompt` comes from `model_index.json`, else the family.
    public static func load(_ checkpoint: Checkpoint, configFolder: URL?) throws -> SDXLPromptEncoder {
        let encoders = try checkpoint.family.textEncoders.map {
            Encoder(description: $0, model: try StableDiffusionModels.loadTextEncoder($0, of: checkpoint, configFolder: configFolder))
        }
        let index = try configFolder.flatMap { try Checkpoint.jsonObject($0.appendingPathComponent("model_index.json")) }
        let forceZeros = (index?["force_zeros_for_empty_prompt"] as? Bool) ?? checkpoint.family.forceZerosForEmptyPrompt
        return try SDXLPromptEncoder(encoders: encoders, forceZerosForEmptyPrompt: forceZeros, source: checkpoint.sourceName)
    }

    /// Textual-inversion embeddings as the encoders take them: vector counts by name (the tokenizer's, alike for every
    /// encoder) and, per encoder in order, its vectors by name (SDXL files: `clip_l` for CLIP ViT-L, `clip_g` for bigG).
    public struct EmbeddingTables: Sendable {
        public let counts: [String: Int]
        public let vectors: [[String: TextualInversionEmbedding]]
    }

    /// `embeddings` split per encoder (`TextualInversionEmbedding.perTextEncoder`); one made for another family (a
    /// one-tensor SD 1.x/2.x embedding, or widths that differ) is refused, naming its file and widths.
    public func embeddingTables(_ embeddings: [TextualInversionEmbedding], family: String) throws -> EmbeddingTables {
        var counts: [String: Int] = [:]
        var vectors = [[String: TextualInversionEmbedding]](repeating: [:], count: encoders.count)
        for embedding in embeddings {
            let parts = try embedding.perTextEncoder(encoders.map { ($0.description, $0.model.config.width) }, family: family)
            for (index, part) in parts.enumerated() { vectors[index][embedding.name] = part }
            counts[embedding.name] = embedding.count
        }
        return EmbeddingTables(counts: counts, vectors: vectors)
    }

    /// The width of `promptEmbeds` (the UNet's cross-attention width).
    public var contextWidth: Int { encoders.reduce(0) { $0 + $1.model.config.width } }

    /// One prompt pair through every encoder (`prompt2` nil or empty: `prompt`). `clipSkip` as diffusers'
    /// `clip_skip` (nil: the penultimate layer).
    ///
    /// Prompts go through A1111's syntax (`(word:1.3)`, `[word]`, `BREAK`, 75-token chunks) on each tower as A1111's
    /// SDXL conditioner does (`sd_hijack_clip.py::process_tokens` per embedder: chunks weighted and rescaled to their
    /// mean, concatenated; the pooled output the first chunk's). A plain prompt of up to 75 tokens is one chunk of
    /// the same ids as diffusers' tokenizer call, so its embeddings are diffusers'.
    ///
    /// A word naming one of `embeddings` takes its vectors on each tower (A1111's `EmbeddingsWithFixes` per embedder;
    /// diffusers' `load_textual_inversion` into each encoder gives the same hidden states). The pooled output is taken at
    /// the end token, as A1111's: the embedding's positions hold id 0. (diffusers pools at argmax(ids) under the SDXL
    /// configs' legacy `eos_token_id` 2, which with an added token is the embedding's position.)
    public func encode(_ prompt: String, prompt2: String? = nil, tokenizer: CLIPTokenizer, clipSkip: Int? = nil,
                       embeddings: EmbeddingTables? = nil) -> Embeddings {
        let prompts = [prompt, Self.orElse(prompt2, prompt)]
        var embeds: [Tensor] = [], pooled: Tensor?
        for (index, (text, encoder)) in zip(prompts, encoders).enumerated() {
            let weighted = tokenizer.weightedChunks(text, padToken: encoder.model.config.padToken, embeddings: embeddings?.counts ?? [:])
            let out = encoder.model.encode(weighted, output: encoder.description.output, embeddings: embeddings?.vectors[index] ?? [:],
                                           skipLastLayers: clipSkip ?? 0)
            if pooled == nil { pooled = out.pooled }
            embeds.append(out.hiddenStates)
        }
        // Towers of one prompt chunk alike (the same tokenizer); a second prompt may need more chunks than the first:
        // the shorter is extended with the empty prompt's chunks, as A1111's `pad_cond_uncond` does for cond and uncond.
        let longest = embeds.map { $0.shape[1] }.max() ?? 0
        for (index, encoder) in zip(embeds.indices, encoders) where embeds[index].shape[1] < longest {
            let empty = encoder.model.encode(tokenizer.weightedChunks("", padToken: encoder.model.config.padToken),
                                             output: encoder.description.output, skipLastLayers: clipSkip ?? 0).hiddenStates
            while embeds[index].shape[1] < longest { embeds[index] = Tensor.concatenate([embeds[index], empty], axis: 1) }
        }
        // `init` checked that one encoder has a projection.
        return Embeddings(promptEmbeds: Tensor.concatenate(embeds, axis: 2), pooled: pooled ?? Tensor(zeros: [1, 0]))
    }

    /// `encode_prompt` with classifier-free guidance: the prompt's embeddings and the negative ones (zeros when
    /// `negativePrompt` is nil and `forceZerosForEmptyPrompt`).
    public func encodePrompt(_ prompt: String, prompt2: String? = nil, negativePrompt: String?, negativePrompt2: String? = nil,
                             tokenizer: CLIPTokenizer, clipSkip: Int? = nil,
                             embeddings: EmbeddingTables? = nil) -> (positive: Embeddings, negative: Embeddings) {
        let positive = encode(prompt, prompt2: prompt2, tokenizer: tokenizer, clipSkip: clipSkip, embeddings: embeddings)
        if negativePrompt == nil, forceZerosForEmptyPrompt {
            return (positive, Embeddings(promptEmbeds: Tensor(zeros: positive.promptEmbeds.shape), pooled: Tensor(zeros: positive.pooled.shape)))
        }
        let negative = negativePrompt ?? ""
        var unconditional = encode(negative, prompt2: Self.orElse(negativePrompt2, negative), tokenizer: tokenizer, clipSkip: clipSkip,
                                   embeddings: embeddings)
        var conditional = positive
        // Prompts of different chunk counts: the shorter extended with the empty prompt's chunks (A1111 `pad_cond_uncond`).
        if conditional.promptEmbeds.shape[1] != unconditional.promptEmbeds.shape[1] {
            let empty = encode("", tokenizer: tokenizer, clipSkip: clipSkip).promptEmbeds
            func extend(_ e: Embeddings, to length: Int) -> Embeddings {
                var embeds = e.promptEmbeds
                while embeds.shape[1] < length { embeds = Tensor.concatenate([embeds, empty], axis: 1) }
                return Embeddings(promptEmbeds: embeds, pooled: e.pooled)
            }
            let length = max(conditional.promptEmbeds.shape[1], unconditional.promptEmbeds.shape[1])
            conditional = extend(conditional, to: length)
            unconditional = extend(unconditional, to: length)
        }
        return (conditional, unconditional)
    }

    /// Python's `a or b` for an optional string: `b` when `a` is nil or empty.
    static func orElse(_ a: String?, _ b: String) -> String {
        guard let a, !a.isEmpty else { return b }
        return a
    }
}
