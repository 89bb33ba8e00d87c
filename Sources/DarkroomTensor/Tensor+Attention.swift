extension Tensor {
    /// Upper bound of one attention score block, in floats (16 MiB): queries are processed in chunks of
    /// `attentionScoreBudget / keys` rows, so memory is O(tokens × chunk), not O(tokens²).
    nonisolated(unsafe) public static var attentionScoreBudget = 4 << 20

    /// Multi-head scaled dot-product attention, softmax(Q·Kᵀ·scale)·V, on the packed layout diffusers'
    /// `Attention` produces before `head_to_batch_dim`: query [B, Nq, heads·d], key [B, Nk, heads·d],
    /// value [B, Nk, heads·dv] → [B, Nq, heads·dv]. Heads are addressed with strides (no permute copies).
    /// `scale` defaults to 1/√d. `causal` masks keys after each query (key j > query i), as CLIP's text encoder.
    public static func attention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float? = nil,
                                 causal: Bool = false) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.rank == 3, "attention: rank-3 inputs expected")
        let (batch, queries, keys) = (query.shape[0], query.shape[1], key.shape[1])
        let width = query.shape[2], valueWidth = value.shape[2]
        precondition(key.shape[0] == batch && value.shape[0] == batch && value.shape[1] == keys && key.shape[2] == width
                     && width % heads == 0 && valueWidth % heads == 0,
                     "attention: query \(query.shape), key \(key.shape), value \(value.shape), heads \(heads)")
        let d = width / heads, dv = valueWidth / heads
        let alpha = scale ?? 1 / Float(d).squareRoot()
        if Parallel.workers > 1, batch * heads >= Parallel.workers, queries * keys >= 1 << 20 {
            return attentionPerThread(query: query, key: key, value: value, heads: heads, alpha: alpha, causal: causal)
        }
        let chunk = max(1, min(queries, attentionScoreBudget / max(keys, 1)))
        var out = Tensor(uninitialized: [batch, queries, valueWidth])
        Tensor.withScratch(count: chunk * keys + chunk) { scores in
            let rowScales = scores + chunk * keys
            query.withUnsafeBufferPointer { q in
                key.withUnsafeBufferPointer { k in
                    value.withUnsafeBufferPointer { v in
                        out.withUnsafeMutableBufferPointer { o in
                            for b in 0..<batch {
                                for h in 0..<heads {
                                    let qh = q.baseAddress! + b * queries * width + h * d
                                    let kh = k.baseAddress! + b * keys * width + h * d
                                    let vh = v.baseAddress! + b * keys * valueWidth + h * dv
                                    let oh = o.baseAddress! + b * queries * valueWidth + h * dv
                                    var start = 0
                                    while start < queries {
                                        let rows = min(chunk, queries - start)
                                        // S[rows, keys] = scale · Q[rows, d] · K[keys, d]ᵀ
                                        BLAS.sgemm(transposeB: true, m: rows, n: keys, k: d, alpha: alpha,
                                                   a: qh + start * width, lda: width, b: kh, ldb: width,
                                                   c: scores, ldc: keys)
                                        Parallel.forEachRange(rows, grain: max(1, 16_384 / max(keys, 1))) { range in
                                            for r in range {
                                                let row = scores + r * keys
                                                if causal {
                                                    let visible = start + r + 1
                                                    if visible < keys { (row + visible).update(repeating: -.infinity, count: keys - visible) }
                                                }
                                                rowScales[r] = Tensor.exponentiateRow(row, keys)
                                            }
                                        }
                                        // O[rows, dv] = softmax(S) · V[keys, dv]: e^S · V, each row scaled by 1/Σe^S.
                                        BLAS.sgemm(m: rows, n: dv, k: keys, a: scores, lda: keys, b: vh, ldb: valueWidth,
                                                   c: oh + start * valueWidth, ldc: valueWidth)
                                        Tensor.scaleRows(oh + start * valueWidth, stride: valueWidth, rows: rows,
                                                         width: dv, by: rowScales)
                                        start += rows
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Scores per thread, in floats (4 MiB: 256 rows of 4096 keys; measured best of 64–256 rows at 512 px).
    nonisolated(unsafe) public static var attentionThreadScoreBudget = 1 << 20

    /// Large attention (≥ 1M scores per head, e.g. 4096 tokens at 512 px): each worker takes whole (batch, head)
    /// pairs and runs single-threaded GEMMs over blocks of query rows small enough that S = Q·Kᵀ, its softmax and
    /// S·V stay in that core's cache, instead of two-thread GEMMs streaming a 16 MiB score block through memory
    /// three times. Same arithmetic per row as the chunked path.
    static func attentionPerThread(query: Tensor, key: Tensor, value: Tensor, heads: Int, alpha: Float, causal: Bool) -> Tensor {
        let (batch, queries, keys) = (query.shape[0], query.shape[1], key.shape[1])
        let width = query.shape[2], valueWidth = value.shape[2]
        let d = width / heads, dv = valueWidth / heads
        let rowsPerBlock = max(1, min(queries, attentionThreadScoreBudget / max(keys, 1)))
        var out = Tensor(uninitialized: [batch, queries, valueWidth])
        query.withUnsafeBufferPointer { q in
            key.withUnsafeBufferPointer { k in
                value.withUnsafeBufferPointer { v in
                    out.withUnsafeMutableBufferPointer { o in
                        let (q, k, v, o) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, o.baseAddress!)
                        BLAS.withThreadCount(1) {
                            Parallel.forEach(batch * heads) { pair in
                                let (b, h) = (pair / heads, pair % heads)
                                let qh = q + b * queries * width + h * d
                                let kh = k + b * keys * width + h * d
                                let vh = v + b * keys * valueWidth + h * dv
                                let oh = o + b * queries * valueWidth + h * dv
                                Tensor.withScratch(count: rowsPerBlock * keys + rowsPerBlock) { scores in
                                    let rowScales = scores + rowsPerBlock * keys
                                    var start = 0
                                    while start < queries {
                                        let rows = min(rowsPerBlock, queries - start)
                                        BLAS.sgemm(transposeB: true, m: rows, n: keys, k: d, alpha: alpha,
                                                   a: qh + start * width, lda: width, b: kh, ldb: width, c: scores, ldc: keys)
                                        for r in 0..<rows {
                                            let row = scores + r * keys
                                            if causal {
                                                let visible = start + r + 1
                                                if visible < keys { (row + visible).update(repeating: -.infinity, count: keys - visible) }
                                            }
                                            rowScales[r] = Tensor.exponentiateRow(row, keys)
                                        }
                                        BLAS.sgemm(m: rows, n: dv, k: keys, a: scores, lda: keys, b: vh, ldb: valueWidth,
                                                   c: oh + start * valueWidth, ldc: valueWidth)
                                        Tensor.scaleRows(oh + start * valueWidth, stride: valueWidth, rows: rows,
                                                         width: dv, by: rowScales)
                                        start += rows
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// rows[r, 0..<width] *= scales[r], rows `stride` floats apart.
    static func scaleRows(_ p: UnsafeMutablePointer<Float>, stride: Int, rows: Int, width: Int,
                          by scales: UnsafePointer<Float>) {
        for r in 0..<rows {
            let row = p + r * stride, scale = scales[r]
            for j in 0..<width { row[j] *= scale }
        }
    }
}
