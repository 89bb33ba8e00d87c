extension Tensor {
    /// Batched matrix product: `self` [..., M, K] × `other` [..., K, N] → [..., M, N].
    /// `other` may also be a plain [K, N] matrix shared by every batch (then one GEMM does all).
    /// `transposeOther` reads `other` as [..., N, K].
    public func matmul(_ other: Tensor, transposeOther: Bool = false) -> Tensor {
        precondition(rank >= 2 && other.rank >= 2, "matmul needs matrices, got \(shape) and \(other.shape)")
        let m = dim(-2), k = dim(-1)
        let n = transposeOther ? other.dim(-2) : other.dim(-1)
        let otherK = transposeOther ? other.dim(-1) : other.dim(-2)
        precondition(k == otherK, "matmul: inner sizes differ, \(shape) × \(other.shape)")
        let batch = count / max(m * k, 1)
        var out = Tensor(uninitialized: Array(shape.dropLast()) + [n])
        let shared = other.rank == 2
        precondition(shared || other.count / max(otherK * n, 1) == batch, "matmul: batch sizes differ, \(shape) × \(other.shape)")
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { c in
                    if shared {
                        // Fold the batch into M: one large GEMM.
                        BLAS.sgemm(transposeB: transposeOther, m: batch * m, n: n, k: k,
                                   a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: transposeOther ? k : n,
                                   c: c.baseAddress!, ldc: n)
                    } else {
                        for i in 0..<batch {
                            BLAS.sgemm(transposeB: transposeOther, m: m, n: n, k: k,
                                       a: a.baseAddress! + i * m * k, lda: k,
                                       b: b.baseAddress! + i * k * n, ldb: transposeOther ? k : n,
                                       c: c.baseAddress! + i * m * n, ldc: n)
                        }
                    }
                }
            }
        }
        return out
    }

    /// `self += alpha · a · b` in place (one GEMM with beta 1), for `a` [M, K] and `b` [K, N] read as matrices and
    /// `self` holding M·N elements: a LoRA's update merged into its weight without a temporary.
    public mutating func addMatmul(_ a: Tensor, _ b: Tensor, rows m: Int, inner k: Int, alpha: Float) {
        let n = count / max(m, 1)
        precondition(a.count == m * k && b.count == k * n && m * n == count, "addMatmul: \(a.shape) · \(b.shape) does not fill \(shape)")
        withUnsafeMutableBufferPointer { c in
            a.withUnsafeBufferPointer { x in
                b.withUnsafeBufferPointer { y in
                    BLAS.sgemm(m: m, n: n, k: k, alpha: alpha, a: x.baseAddress!, lda: k, b: y.baseAddress!, ldb: n,
                               beta: 1, c: c.baseAddress!, ldc: n)
                }
            }
        }
    }

    /// `torch.nn.functional.linear`: `self` [..., in] · weightᵀ + bias, with weight [out, in] and bias [out].
    public func linear(weight: Tensor, bias: Tensor? = nil) -> Tensor {
        precondition(weight.rank == 2 && weight.dim(1) == dim(-1), "linear: input \(shape) does not fit weight \(weight.shape)")
        let inFeatures = weight.dim(1), outFeatures = weight.dim(0)
        let rows = count / max(inFeatures, 1)
        var out = Tensor(uninitialized: Array(shape.dropLast()) + [outFeatures])
        out.withUnsafeMutableBufferPointer { c in
            var beta: Float = 0
            if let bias {
                precondition(bias.count == outFeatures, "linear: bias \(bias.shape) does not fit weight \(weight.shape)")
                bias.withUnsafeBufferPointer { b in
                    for r in 0..<rows { (c.baseAddress! + r * outFeatures).update(from: b.baseAddress!, count: outFeatures) }
                }
                beta = 1
            }
            withUnsafeBufferPointer { x in
                weight.withUnsafeBufferPointer { w in
                    BLAS.sgemm(transposeB: true, m: rows, n: outFeatures, k: inFeatures,
                               a: x.baseAddress!, lda: inFeatures, b: w.baseAddress!, ldb: inFeatures,
                               beta: beta, c: c.baseAddress!, ldc: outFeatures)
                }
            }
        }
        return out
    }
}
