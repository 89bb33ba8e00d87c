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
