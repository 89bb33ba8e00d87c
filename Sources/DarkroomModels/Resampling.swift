import DarkroomTensor
import DarkroomWeights

/// diffusers `Downsample2D`: a 3×3 stride-2 convolution (`conv`). The UNet pads 1 on every side;
/// the VAE encoder pads only right and bottom (`F.pad(x, (0, 1, 0, 1))`, then no padding).
struct Downsample2D: Sendable {
    let conv: Conv2d

    init(_ w: WeightScope, channels: Int, asymmetricPadding: Bool) throws {
        conv = try Conv2d(w["conv"], in: channels, out: channels, kernel: 3, stride: 2,
                          padding: asymmetricPadding ? Padding2D(left: 0, right: 1, top: 0, bottom: 1) : .uniform(1))
    }

    func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// diffusers `Upsample2D`: nearest-neighbour 2× (or to the skip connection's size), then a 3×3 `conv`.
struct Upsample2D: Sendable {
    let conv: Conv2d

    init(_ w: WeightScope, channels: Int) throws {
        conv = try Conv2d(w["conv"], in: channels, out: channels, kernel: 3)
    }

    func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        let size = size ?? (x.shape[2] * 2, x.shape[3] * 2)
        return conv(x.upsampleNearest(height: size.height, width: size.width))
    }
}
