import DarkroomTensor
import DarkroomWeights

/// diffusers `Attention` as Stable Diffusion uses it: multi-head attention with `to_q`, `to_k`, `to_v`
/// and `to_out.0`. In the UNet's transformer blocks q/k/v have no bias and `context` (the text
/// embedding) supplies keys and values for cross-attention. In the VAE's mid block it is spatial
/// self-attention with one head, q/k/v biases, its own `group_norm` and a residual connection.
struct Attention: Sendable {
    let heads: Int
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    let groupNorm: GroupNorm?

    init(_ w: WeightScope, queryDim: Int, contextDim: Int? = nil, heads: Int, headDim: Int,
         qkvBias: Bool = false, groupNorm: GroupNorm? = nil) throws {
        let inner = heads * headDim
        self.heads = heads
        toQ = try Linear(w["to_q"], in: queryDim, out: inner, bias: qkvBias)
        toK = try Linear(w["to_k"], in: contextDim ?? queryDim, out: inner, bias: qkvBias)
        toV = try Linear(w["to_v"], in: contextDim ?? queryDim, out: inner, bias: qkvBias)
        toOut = try Linear(w["to_out.0"], in: inner, out: queryDim)
        self.groupNorm = groupNorm
    }

    /// x [B, N, C]; context [B, M, D] or nil for self-attention → [B, N, C].
    func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let context = context ?? x
        return toOut(Tensor.attention(query: toQ(x), key: toK(context), value: toV(context), heads: heads))
    }

    /// Spatial self-attention with residual (VAE): x [B, C, H, W] → [B, C, H, W].
    func spatial(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let normed = groupNorm.map { $0(x) } ?? x
        let tokens = normed.reshaped([b, c, h * w]).permuted([0, 2, 1])        // [B, HW, C]
        var attended = self(tokens).permuted([0, 2, 1]).reshaped([b, c, h, w])
        attended += x                                                        // attended + x, in place
        return attended
    }
}

/// diffusers `FeedForward` with GEGLU (SD): `net.0.proj` [dim → 2·inner], GEGLU, `net.2` [inner → dim].
struct FeedForward: Sendable {
    let projection: Linear, output: Linear

    init(_ w: WeightScope, dim: Int, inner: Int) throws {
        projection = try Linear(w["net.0.proj"], in: dim, out: inner * 2)
        output = try Linear(w["net.2"], in: inner, out: dim)
    }

    func callAsFunction(_ x: Tensor) -> Tensor { output(projection(x).geglu()) }
}

/// diffusers `BasicTransformerBlock` (SD): pre-norm self-attention, cross-attention, GEGLU feed-forward,
/// each with a residual.
struct BasicTransformerBlock: Sendable {
    let norm1: LayerNorm, attn1: Attention
    let norm2: LayerNorm, attn2: Attention
    let norm3: LayerNorm, ff: FeedForward

    init(_ w: WeightScope, dim: Int, contextDim: Int, heads: Int, headDim: Int) throws {
        norm1 = try LayerNorm(w["norm1"], width: dim)
        attn1 = try Attention(w["attn1"], queryDim: dim, heads: heads, headDim: headDim)
        norm2 = try LayerNorm(w["norm2"], width: dim)
        attn2 = try Attention(w["attn2"], queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm3 = try LayerNorm(w["norm3"], width: dim)
        // The feed-forward width is read from the checkpoint (4·dim in every SD model).
        let inner = (w.shape("ff.net.2.weight")?.last) ?? dim * 4
        ff = try FeedForward(w["ff"], dim: dim, inner: inner)
    }

    /// Each residual is summed into its sublayer's fresh output (sublayer + x, as diffusers adds them).
    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var a = attn1(norm1(x))
        a += x
        var b = attn2(norm2(a), context: context)
        b += a
        var c = ff(norm3(b))
        c += b
        return c
    }
}

/// diffusers `Transformer2DModel` (SD): GroupNorm, `proj_in` (1×1 conv in SD 1.x, linear in SD 2.x),
/// transformer blocks over the H·W tokens, `proj_out`, residual.
struct Transformer2DModel: Sendable {
    let norm: GroupNorm
    let projectIn: Projection, projectOut: Projection
    let blocks: [BasicTransformerBlock]

    /// 1×1 convolution or linear layer; the same matrix, applied before or after flattening.
    enum Projection: Sendable {
        case conv(Conv2d), linear(Linear)
    }

    init(_ w: WeightScope, channels: Int, contextDim: Int, heads: Int, depth: Int, linearProjection: Bool) throws {
        norm = try GroupNorm(w["norm"], channels: channels, epsilon: 1e-6)
        if linearProjection {
            projectIn = .linear(try Linear(w["proj_in"], in: channels, out: channels))
            projectOut = .linear(try Linear(w["proj_out"], in: channels, out: channels))
        } else {
            projectIn = .conv(try Conv2d(w["proj_in"], in: channels, out: channels, kernel: 1))
            projectOut = .conv(try Conv2d(w["proj_out"], in: channels, out: channels, kernel: 1))
        }
        blocks = try (0..<depth).map {
            try BasicTransformerBlock(w["transformer_blocks.\($0)"], dim: channels, contextDim: contextDim,
                                      heads: heads, headDim: channels / heads)
        }
    }

    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var hidden = norm(x)
        if case .conv(let conv) = projectIn { hidden = conv(hidden) }
        hidden = hidden.permuted([0, 2, 3, 1]).reshaped([b, h * w, c])         // [B, HW, C]
        if case .linear(let linear) = projectIn { hidden = linear(hidden) }
        for block in blocks { hidden = block(hidden, context: context) }
        if case .linear(let linear) = projectOut { hidden = linear(hidden) }
        hidden = hidden.reshaped([b, h, w, c]).permuted([0, 3, 1, 2])           // [B, C, H, W]
        if case .conv(let conv) = projectOut { hidden = conv(hidden) }
        hidden += x
        return hidden
    }
}
