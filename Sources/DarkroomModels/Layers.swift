import DarkroomTensor
import DarkroomWeights

/// `nn.Linear`: weight [out, in] (kept as stored, see `Weight`), optional bias [out].
struct Linear: Sendable {
    let weight: Weight
    let bias: Tensor?

    /// Loads `<scope>.weight` (and `<scope>.bias` when `bias`), checking the shape [out, in].
    init(_ w: WeightScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws {
        weight = try w.weight("weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? try w.tensor("bias", shape: [outFeatures]) : nil
    }

    func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }
}

/// `nn.Conv2d`: weight [out, in, k, k] (kept as stored, see `Weight`), bias [out].
struct Conv2d: Sendable {
    let weight: Weight
    let bias: Tensor?
    let stride: Int
    let padding: Padding2D

    init(_ w: WeightScope, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1,
         padding: Padding2D? = nil, bias: Bool = true) throws {
        weight = try w.weight("weight", shape: [outChannels, inChannels, kernel, kernel])
        self.bias = bias ? try w.tensor("bias", shape: [outChannels]) : nil
        self.stride = stride
        self.padding = padding ?? .uniform(kernel / 2)
    }

    var outChannels: Int { weight.shape[0] }

    func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
    }
}

/// `nn.GroupNorm` with affine weight/bias [C]; `silu` fuses the SiLU that usually follows.
struct GroupNorm: Sendable {
    let weight: Tensor, bias: Tensor
    let groups: Int
    let epsilon: Float

    init(_ w: WeightScope, channels: Int, groups: Int = 32, epsilon: Float) throws {
        guard channels % groups == 0 else {
            throw WeightsError.unexpectedShape(key: w.key("weight"), expected: "a multiple of \(groups) channels",
                                               found: [channels], source: w.sourceName)
        }
        weight = try w.tensor("weight", shape: [channels])
        bias = try w.tensor("bias", shape: [channels])
        self.groups = groups
        self.epsilon = epsilon
    }

    func callAsFunction(_ x: Tensor, silu: Bool = false) -> Tensor {
        x.groupNorm(groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: silu)
    }

    /// The same over `x`'s own elements, for an activation not needed afterwards.
    func apply(to x: inout Tensor, silu: Bool = false) {
        x.formGroupNorm(groups: groups, weight: weight, bias: bias, epsilon: epsilon, silu: silu)
    }
}

/// `nn.LayerNorm` over the last dimension.
struct LayerNorm: Sendable {
    let weight: Tensor, bias: Tensor
    let epsilon: Float

    init(_ w: WeightScope, width: Int, epsilon: Float = 1e-5) throws {
        weight = try w.tensor("weight", shape: [width])
        bias = try w.tensor("bias", shape: [width])
        self.epsilon = epsilon
    }

    func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, epsilon: epsilon) }
}
