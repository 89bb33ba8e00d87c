import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights

/// The shape of a CLIP text transformer, from its tensors plus what shapes cannot show (activation, heads).
public struct CLIPTextConfig: Sendable, Equatable {
    public enum Activation: String, Sendable { case quickGELU = "quick_gelu", gelu = "gelu" }

    public var vocabularySize: Int
    public var maxPositions: Int
    public var width: Int
    public var layers: Int
    public var heads: Int
    public var intermediateWidth: Int
    public var activation: Activation
    /// The id the tokenizer pads with: the end token for SD 1.x (OpenAI CLIP), 0 for SD 2.x (OpenCLIP).
    public var padToken: Int

    /// Token ids per chunk the tokenizer produces (start + 75 + end): the position table must hold them.
    public static let tokensPerChunk = 77

    /// Sizes from `w` (diffusers/transformers names under `text_model.`); `heads` defaults to width/`headWidth`
    /// (64: the head size of every CLIP text tower SD uses).
    public static func detect(from w: WeightScope, activation: Activation, padToken: Int, heads: Int? = nil,
                              headWidth: Int = 64) throws -> CLIPTextConfig {
        let tokens = try w.requireShape("embeddings.token_embedding.weight", rank: 2)
        let positions = try w.requireShape("embeddings.position_embedding.weight", rank: 2)
        let layers = w.countIndices("encoder.layers")
        guard layers > 0 else { throw WeightsError.missingTensor(key: w.key("encoder.layers.0.mlp.fc1.weight"), source: w.sourceName) }
        return CLIPTextConfig(vocabularySize: tokens[0], maxPositions: positions[0], width: tokens[1], layers: layers,
                              heads: heads ?? max(1, tokens[1] / max(headWidth, 1)),
                              intermediateWidth: try w.requireShape("encoder.layers.0.mlp.fc1.weight", rank: 2)[0],
                              activation: activation, padToken: padToken)
    }
}

/// transformers `CLIPEncoderLayer`: pre-norm causal self-attention and MLP, each with a residual.
struct CLIPEncoderLayer: Sendable {
    let layerNorm1: LayerNorm, layerNorm2: LayerNorm
    let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear
    let fc1: Linear, fc2: Linear
    let heads: Int
    let activation: CLIPTextConfig.Activation

    init(_ w: WeightScope, config: CLIPTextConfig) throws {
        let d = config.width
        layerNorm1 = try LayerNorm(w["layer_norm1"], width: d)
        qProj = try Linear(w["self_attn.q_proj"], in: d, out: d)
        kProj = try Linear(w["self_attn.k_proj"], in: d, out: d)
        vProj = try Linear(w["self_attn.v_proj"], in: d, out: d)
        outProj = try Linear(w["self_attn.out_proj"], in: d, out: d)
        layerNorm2 = try LayerNorm(w["layer_norm2"], width: d)
        fc1 = try Linear(w["mlp.fc1"], in: d, out: config.intermediateWidth)
        fc2 = try Linear(w["mlp.fc2"], in: config.intermediateWidth, out: d)
        heads = config.heads
        activation = config.activation
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = layerNorm1(x)
        var x = x + outProj(Tensor.attention(query: qProj(h), key: kProj(h), value: vProj(h), heads: heads, causal: true))
        let hidden = fc1(layerNorm2(x))
        x = x + fc2(activation == .quickGELU ? hidden.quickGELU() : hidden.gelu())
        return x
    }
}

/// transformers `CLIPTextModel` as Stable Diffusion uses it: token + position embeddings, causal
/// encoder layers, final LayerNorm; the output is the hidden state of every token ([B, 77, width]).
/// SD 2.x's OpenCLIP tower arrives here already cut before its last layer (it uses the penultimate
/// layer), as diffusers' converted text encoders are. With `textProjection` it is transformers
/// `CLIPTextModelWithProjection` (SDXL's OpenCLIP ViT-bigG): `encode` also gives the pooled, projected output.
public struct CLIPTextModel: Sendable {
    public let config: CLIPTextConfig
    let tokenEmbedding: Tensor, positionEmbedding: Tensor
    internal(set) var layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm
    /// `text_projection` [projection, width], without bias (CLIPTextModelWithProjection); nil for plain towers.
    let textProjection: Linear?

    /// `w` is the tower (`…text_model`); `projection` the scope of `text_projection` beside it, whose output
    /// width is read from its shape.
    public init(_ w: WeightScope, config: CLIPTextConfig, projection: WeightScope? = nil) throws {
        self.config = config
        tokenEmbedding = try w.tensor("embeddings.token_embedding.weight", shape: [config.vocabularySize, config.width])
        positionEmbedding = try w.tensor("embeddings.position_embedding.weight", shape: [config.maxPositions, config.width])
        layers = try (0..<config.layers).map { try CLIPEncoderLayer(w["encoder.layers.\($0)"], config: config) }
        finalLayerNorm = try LayerNorm(w["final_layer_norm"], width: config.width)
        textProjection = try projection.map { scope in
            let shape = try scope.requireShape("weight", rank: 2)
            return try Linear(scope, in: config.width, out: shape[0], bias: false)
        }
    }

    /// The pooled output's width (`text_projection`'s rows); nil without a projection.
    public var projectionWidth: Int? { textProjection?.weight.shape[0] }

    /// Token + position embeddings for `ids`, with textual-inversion `overrides` (see `callAsFunction`).
    func embed(_ ids: [[Int]], overrides: [[(position: Int, vectors: [Float])]]) -> Tensor {
        // `load` refuses position tables shorter than a chunk; longer rows are cut rather than trapping.
        let length = min(ids.first?.count ?? 0, config.maxPositions)
        let d = config.width
        var x = Tensor(zeros: [ids.count, length, d])
        x.withUnsafeMutableBufferPointer { out in
            tokenEmbedding.withUnsafeBufferPointer { tokens in
                positionEmbedding.withUnsafeBufferPointer { positions in
                    for (b, row) in ids.enumerated() {
                        for (i, id) in row.prefix(length).enumerated() {
                            let token = min(max(id, 0), config.vocabularySize - 1)
                            for k in 0..<d { out[(b * length + i) * d + k] = tokens[token * d + k] + positions[i * d + k] }
                        }
                        for (position, vectors) in b < overrides.count ? overrides[b] : [] where vectors.count % d == 0 && position >= 0 {
                            for i in position..<min(length, position + vectors.count / d) {
                                for k in 0..<d { out[(b * length + i) * d + k] = vectors[(i - position) * d + k] + positions[i * d + k] }
                            }
                        }
                    }
                }
            }
        }
        return x
    }

    /// What SDXL's pipelines take from a tower (diffusers `encode_prompt` with `output_hidden_states=True`):
    /// `hiddenStates` per `output` — `hidden_states[-(skipLastLayers + 2)]` for `.penultimateHiddenState` (the
    /// output of that layer, without the final LayerNorm), or what `callAsFunction` returns for
    /// `.lastHiddenState` — and, with a projection, `pooled` [B, projection]: the final LayerNorm of the last
    /// layer's output at each row's end token, through `text_projection` (transformers' `text_embeds`).
    ///
    /// The end token is the row's first largest id, transformers' rule for the `eos_token_id: 2` the SDXL
    /// text-encoder configs carry (`input_ids.argmax(-1)`); with CLIP's tokenizer that is the first `<|endoftext|>`.
    public func encode(_ ids: [[Int]], output: ModelFamily.TextEncoder.Output, skipLastLayers: Int = 0,
                       overrides: [[(position: Int, vectors: [Float])]] = []) -> (hiddenStates: Tensor, pooled: Tensor?) {
        if output == .lastHiddenState, textProjection == nil {
            return (self(ids, overrides: overrides, skipLastLayers: skipLastLayers), nil)
        }
        var x = embed(ids, overrides: overrides)
        // hidden_states[k] is the output of layer k (hidden_states[0]: the embeddings).
        let kept = max(0, layers.count - 1 - max(0, skipLastLayers))
        var selected = x
        for (index, layer) in layers.enumerated() {
            x = layer(x)
            if index + 1 == kept { selected = x }
        }
        let last = finalLayerNorm(x)                                             // [B, T, W]
        let hidden = output == .lastHiddenState ? self(ids, overrides: overrides, skipLastLayers: skipLastLayers) : selected
        guard let textProjection else { return (hidden, nil) }
        let (batch, length, width) = (last.shape[0], last.shape[1], last.shape[2])
        var rows = Tensor(zeros: [batch, width])
        rows.withUnsafeMutableBufferPointer { out in
            last.withUnsafeBufferPointer { states in
                for (b, row) in ids.enumerated() where b < batch {
                    let tokens = row.prefix(length)
                    guard let top = tokens.max(), let position = tokens.firstIndex(of: top) else { continue }
                    for k in 0..<width { out[b * width + k] = states[(b * length + position) * width + k] }
                }
            }
        }
        return (hidden, textProjection(rows))                                  // [B, projection]
    }

    /// Hidden states for `ids` (each row one prompt's token ids), after the final LayerNorm.
    /// `skipLastLayers` (A1111 "Clip skip" − 1) stops that many layers early. `overrides[row]` replaces
    /// token embeddings from `position` on with `vectors` (count × width, textual inversion; A1111
    /// `sd_hijack.py::EmbeddingsWithFixes`), before the position embeddings are added; vectors past the
    /// row's end are dropped, and overrides whose vectors are not whole rows of this width are ignored
    /// (callers check widths first).
    public func callAsFunction(_ ids: [[Int]], overrides: [[(position: Int, vectors: [Float])]] = [],
                               skipLastLayers: Int = 0) -> Tensor {
        var x = embed(ids, overrides: overrides)
        for layer in layers.dropLast(max(0, min(skipLastLayers, layers.count - 1))) { x = layer(x) }
        return finalLayerNorm(x)
    }
}

extension CLIPTextModel {
    /// A1111's weighted, chunked prompt encoding (`sd_hijack_clip.py::process_tokens`): each 77-token chunk
    /// is encoded on its own, its hidden states multiplied per token by the attention weights, then
    /// rescaled so the chunk's overall mean is what it was before weighting; chunks are concatenated
    /// along the token axis → [1, 77·chunks, width]. The prompt's embedding fixes take their vectors
    /// from `embeddings` (by name; a name not there keeps the placeholder id's embedding).
    public func callAsFunction(_ prompt: WeightedPrompt, embeddings: [String: TextualInversionEmbedding] = [:],
                               skipLastLayers: Int = 0) -> Tensor {
        encode(prompt, output: .lastHiddenState, embeddings: embeddings, skipLastLayers: skipLastLayers).hiddenStates
    }

    /// The same for any `output` (SDXL's towers: `.penultimateHiddenState`, as A1111's SDXL embedders encode each
    /// chunk), with the pooled output of the first chunk, unweighted (A1111 `sd_hijack_clip.py`: `zs[0].pooled`),
    /// when the tower has a projection.
    public func encode(_ prompt: WeightedPrompt, output: ModelFamily.TextEncoder.Output,
                       embeddings: [String: TextualInversionEmbedding] = [:],
                       skipLastLayers: Int = 0) -> (hiddenStates: Tensor, pooled: Tensor?) {
        var pooled: Tensor?
        let chunks = prompt.chunks.enumerated().map { index, ids -> Tensor in
            let fixes = index < prompt.fixes.count ? prompt.fixes[index] : []
            let overrides = fixes.compactMap { fix in embeddings[fix.name].map { (position: fix.position, vectors: $0.vectors) } }
            let encoded = encode([ids], output: output, skipLastLayers: skipLastLayers, overrides: [overrides])
            if index == 0 { pooled = encoded.pooled }
            var z = encoded.hiddenStates                                         // [1, 77, W]
            let weights = index < prompt.weights.count ? prompt.weights[index] : []
            guard weights.contains(where: { $0 != 1 }) else { return z }
            let (tokens, width) = (z.shape[1], z.shape[2])
            let originalMean = z.scalars.reduce(0.0) { $0 + Double($1) } / Double(z.count)
            z.withUnsafeMutableBufferPointer { p in
                for (token, weight) in weights.prefix(tokens).enumerated() {
                    for k in 0..<width { p[token * width + k] *= weight }
                }
            }
            let newMean = z.scalars.reduce(0.0) { $0 + Double($1) } / Double(z.count)
            return z * Float(originalMean / newMean)
        }
        return (Tensor.concatenate(chunks, axis: 1), pooled)
    }
}
