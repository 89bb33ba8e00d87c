import DarkroomTensor
import DarkroomWeights

/// diffusers `ResnetBlock2D` (SD configuration: 32 groups, default time-embedding norm, scale 1):
///
///     h = conv1(silu(norm1(x)))
///     h = h + time_emb_proj(silu(temb))[:, :, None, None]     (UNet only)
///     h = conv2(silu(norm2(h)))
///     out = conv_shortcut(x) + h                              (1×1 shortcut when widths differ)
struct ResnetBlock2D: Sendable {
    let norm1: GroupNorm, conv1: Conv2d
    let timeEmbeddingProjection: Linear?
    let norm2: GroupNorm, conv2: Conv2d
    let shortcut: Conv2d?

    init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, timeEmbedding: Int?, epsilon: Float) throws {
        norm1 = try GroupNorm(w["norm1"], channels: inChannels, epsilon: epsilon)
        conv1 = try Conv2d(w["conv1"], in: inChannels, out: outChannels, kernel: 3)
        timeEmbeddingProjection = try timeEmbedding.map { try Linear(w["time_emb_proj"], in: $0, out: outChannels) }
        norm2 = try GroupNorm(w["norm2"], channels: outChannels, epsilon: epsilon)
        conv2 = try Conv2d(w["conv2"], in: outChannels, out: outChannels, kernel: 3)
        shortcut = inChannels == outChannels ? nil
            : try Conv2d(w["conv_shortcut"], in: inChannels, out: outChannels, kernel: 1)
    }

    /// `temb` is the already SiLU-activated time embedding [B, T] (shared by every block of a step).
    func callAsFunction(_ x: Tensor, _ activatedTimeEmbedding: Tensor? = nil) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let projection = timeEmbeddingProjection, let temb = activatedTimeEmbedding {
            let t = projection(temb)                                   // [B, C]
            h += t.reshaped([t.dim(0), t.dim(1), 1, 1])
        }
        norm2.apply(to: &h, silu: true)  // conv1's output is not needed again: normalised in place
        h = conv2(h)
        h += shortcut?(x) ?? x           // into conv2's output; the same sums as (shortcut(x) ?? x) + h
        return h
    }
}
