import Foundation

/// The arithmetic of the matrix products (linear layers, convolutions, attention).
///
/// `bf16` follows `torch.autocast("cpu", dtype=torch.bfloat16)`: the operands of each product are rounded to
/// bfloat16 (weights once, kept; activations on every call), products accumulate and are written in Float32 by
/// oneDNN (`OneDNN`), and everything else (norms, softmax, activations, residual sums) stays Float32. Unlike
/// autocast, a product's output is not rounded to bf16 afterwards.
public enum Precision: String, Sendable, CaseIterable {
    /// Float32 throughout: OpenBLAS, diffusers parity (the default).
    case fp32
    /// bfloat16 products with Float32 accumulation on oneDNN.
    case bf16
}

extension Tensor {
    /// The precision the kernels' products use (fp32 unless set).
    nonisolated(unsafe) public static var precision = Precision.fp32
}

extension Precision {
    /// Receives, once per distinct reason, why a bf16 product ran in fp32 instead (a oneDNN error). Writes to
    /// standard error unless replaced (a service passes its logger).
    nonisolated(unsafe) public static var fallbackHandler: @Sendable (String) -> Void = { reason in
        FileHandle.standardError.write(Data("darkroom: bf16 product ran in fp32: \(reason)\n".utf8))
    }

    /// Reasons reported so far.
    public static var fallbackReasons: [String] { fallbackLock.withLock { reported } }

    static func reportFallback(_ error: OneDNNError) {
        let reason = error.description
        let isNew = fallbackLock.withLock { () -> Bool in
            if reported.contains(reason) { return false }
            reported.append(reason)
            return true
        }
        if isNew { fallbackHandler(reason) }
    }

    nonisolated(unsafe) private static var reported: [String] = []
    private static let fallbackLock = Mutex()
}

extension Precision {
    /// Whether the bf16 mode runs its large-plane 3×3 convolutions (the VAE's, from `Tensor.winogradLargePlane` up)
    /// as bf16 F(2×2, 3×3) instead of Float32 F(4×4, 3×3). Which is faster depends on the machine: oneDNN's bf16
    /// products run at about 400 GFLOP/s on both kinds of machine this project runs on, OpenBLAS's sgemm at about
    /// 200 on one and 430 on the other, and F(4×4) needs 1.8× fewer products. nil (the default) measures both once
    /// per process, at the first such convolution (`LargePlaneMeasurement`, about half a second), and keeps the
    /// faster; true or false forces it (tests, `bench model --bf16-large-planes`). Both stay below autocast's error.
    nonisolated(unsafe) public static var bf16OnLargePlanesSetting: Bool?

    /// The choice in force: the setting, or the measurement.
    public static var bf16OnLargePlanes: Bool { bf16OnLargePlanesSetting ?? LargePlaneMeasurement.shared.bf16IsFaster }
}

/// Times one large-plane convolution (256 channels at 128×128, as a VAE decoder's middle up-block) both ways:
/// Float32 F(4×4, 3×3) on OpenBLAS and bf16 F(2×2, 3×3) on oneDNN, the best of three each. bf16 is chosen only when
/// it is at least 10 % faster, so that a machine near the balance keeps one choice from run to run (the two give
/// different roundings of the same image).
public struct LargePlaneMeasurement: Sendable {
    public let fp32Seconds: Double, bf16Seconds: Double
    public var bf16IsFaster: Bool { bf16Seconds < 0.9 * fp32Seconds }

    public static let shared = LargePlaneMeasurement()

    init() {
        var random = SplitMix64(seed: 13)
        let channels = 256, side = 128
        let x = Tensor(shape: [1, channels, side, side], scalars: (0..<(channels * side * side)).map { _ in (2 * random.uniform() - 1) })
        let w = Tensor(shape: [channels, channels, 3, 3],
                       scalars: (0..<(channels * channels * 9)).map { _ in (2 * random.uniform() - 1) / Float(9 * channels).squareRoot() })
        func best(_ body: () -> Void) -> Double {
            (0..<3).map { _ in
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }.min()!
        }
        fp32Seconds = best { _ = x.winogradConvolution(weight: w, transform: .f43) }
        var failed = false
        let bf16 = best {
            do throws(OneDNNError) { _ = try x.winogradConvolution(weight: w, transform: .f23, products: .bf16) } catch { failed = true }
        }
        bf16Seconds = failed ? .infinity : bf16
    }
}
