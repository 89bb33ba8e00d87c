import Foundation

extension Tensor {
    /// Sinusoidal timestep embedding, matching diffusers `models/embeddings.py::get_timestep_embedding`
    /// (computed in float32 as diffusers does): frequencies exp(-ln(maxPeriod)·i/(half − shift)),
    /// [sin, cos] (or [cos, sin] with `flipSinToCos`), zero-padded when `dimension` is odd.
    public static func timestepEmbedding(_ timesteps: [Float], dimension: Int, flipSinToCos: Bool,
                                         downscaleFrequencyShift: Float, scale: Float = 1, maxPeriod: Float = 10_000) -> Tensor {
        let half = dimension / 2
        let frequencies = (0..<half).map { i -> Float in
            let exponent = -Foundation.log(maxPeriod) * Float(i) / (Float(half) - downscaleFrequencyShift)
            return Foundation.exp(exponent)
        }
        var out = Tensor(zeros: [timesteps.count, dimension])
        out.withUnsafeMutableBufferPointer { o in
            for (row, t) in timesteps.enumerated() {
                for i in 0..<half {
                    let argument = scale * (t * frequencies[i])
                    let (first, second) = flipSinToCos ? (cos(argument), sin(argument)) : (sin(argument), cos(argument))
                    o[row * dimension + i] = first
                    o[row * dimension + half + i] = second
                }
            }
        }
        return out
    }
}
