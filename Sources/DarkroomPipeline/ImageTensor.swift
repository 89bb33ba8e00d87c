import DarkroomImageIO
import DarkroomTensor

/// Conversions between decoded images and the tensors the VAE works on, as diffusers'
/// `VaeImageProcessor`: RGB in [0, 1] (x / 255, or / 65535 for 16-bit), then 2x − 1; back with
/// (x / 2 + 0.5) clamped to [0, 1] and quantised by rounding ×255.
public enum ImageTensor {
    /// [1, 3, H, W] in [-1, 1]. Gray is replicated to RGB; alpha is dropped (PIL's `convert("RGB")`).
    public static func tensor(from image: Image) -> Tensor {
        let (width, height, channels) = (image.width, image.height, image.layout.rawValue)
        let maximum = Float((1 << image.bitDepth) - 1)
        var out = Tensor(zeros: [1, 3, height, width])
        out.withUnsafeMutableBufferPointer { p in
            image.samples.withUnsafeBufferPointer { s in
                let plane = width * height
                for i in 0..<plane {
                    let base = i * channels
                    for c in 0..<3 {
                        let sample = channels >= 3 ? s[base + c] : s[base]
                        p[c * plane + i] = (Float(sample) / maximum) * 2 - 1
                    }
                }
            }
        }
        return out
    }

    /// A single-channel mask [1, 1, H, W] in [0, 1] from a mask image: gray, or RGB luminance exactly as
    /// PIL's `convert("L")` ((19595 R + 38470 G + 7471 B + 2¹⁵) >> 16), or, for images with alpha, the
    /// alpha channel (A1111's rule for RGBA masks: opaque = repaint).
    public static func mask(from image: Image) -> Tensor {
        let (width, height, channels) = (image.width, image.height, image.layout.rawValue)
        let maximum = Float((1 << image.bitDepth) - 1)
        var out = Tensor(zeros: [1, 1, height, width])
        out.withUnsafeMutableBufferPointer { p in
            image.samples.withUnsafeBufferPointer { s in
                for i in 0..<(width * height) {
                    let base = i * channels
                    let value: Float
                    switch image.layout {
                    case .gray: value = Float(s[base])
                    case .grayAlpha, .rgba: value = Float(s[base + channels - 1])
                    case .rgb:
                        let weighted = Int(s[base]) * 19595 + Int(s[base + 1]) * 38470 + Int(s[base + 2]) * 7471
                        value = Float((weighted + 0x8000) >> 16)
                    }
                    p[i] = value / maximum
                }
            }
        }
        return out
    }

    /// The VAE's output [1, 3, H, W] in [-1, 1] as diffusers' `output_type="np"`: (x / 2 + 0.5) clamped to [0, 1].
    public static func unitRange(_ decoded: Tensor) -> Tensor {
        var out = decoded
        out.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = unitClamp(p[i] / 2 + 0.5) }
        }
        return out
    }

    /// `x` clamped to [0, 1], with NaN as 0 (so that no Float → integer conversion of an image can trap; the
    /// pipeline refuses non-finite results before they get here, `PipelineError.nonFinite`).
    @inline(__always) static func unitClamp(_ x: Float) -> Float { x.isNaN ? 0 : min(max(x, 0), 1) }

    /// An 8-bit RGB image from [1, 3, H, W] in [0, 1] (diffusers' `numpy_to_pil`: round(x · 255)). NaN gives 0
    /// and ±inf the range's ends.
    public static func image(fromUnitRange tensor: Tensor) throws -> Image {
        guard tensor.rank == 4, tensor.shape[0] == 1, tensor.shape[1] == 3 else {
            throw PipelineError.invalidValue(field: "image", value: "a tensor of shape \(tensor.shape)", expected: "[1, 3, H, W]")
        }
        let (height, width) = (tensor.shape[2], tensor.shape[3])
        let plane = width * height
        var samples = [UInt16](repeating: 0, count: plane * 3)
        tensor.withUnsafeBufferPointer { p in
            for i in 0..<plane {
                for c in 0..<3 { samples[i * 3 + c] = UInt16((unitClamp(p[c * plane + i]) * 255).rounded()) }
            }
        }
        return try Image(width: width, height: height, layout: .rgb, bitDepth: 8, samples: samples)
    }
}
