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
        Tensor.withScratch(count: AttentionHead.scratchCount(blockRows: chunk, keys: keys, dv: valueWidth / heads)) { scratch in
            AttentionHead.forEach(query: query, key: key, value: value, out: &out, heads: heads, alpha: alpha,
                                  causal: causal) { pairs, head in
                for pair in 0..<pairs { head(pair).attend(blockRows: chunk, scratch: scratch, parallel: true) }
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
        let (queries, keys) = (query.shape[1], key.shape[1])
        let rowsPerBlock = max(1, min(queries, attentionThreadScoreBudget / max(keys, 1)))
        var out = Tensor(uninitialized: [query.shape[0], queries, value.shape[2]])
        AttentionHead.forEach(query: query, key: key, value: value, out: &out, heads: heads, alpha: alpha,
                              causal: causal) { pairs, head in
            BLAS.withThreadCount(1) {
                Parallel.forEach(pairs) { pair in
                    Tensor.withScratch(count: AttentionHead.scratchCount(blockRows: rowsPerBlock, keys: keys,
                                                                         dv: value.shape[2] / heads)) { scratch in
                        head(pair).attend(blockRows: rowsPerBlock, scratch: scratch, parallel: false)
                    }
                }
            }
        }
        return out
    }
}

/// One (batch, head) pair of an attention call: its slices of the packed query, key, value and output, addressed
/// with strides.
struct AttentionHead {
    let q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, o: UnsafeMutablePointer<Float>
    let queries: Int, keys: Int, d: Int, dv: Int, width: Int, valueWidth: Int
    let alpha: Float, causal: Bool
    /// bfloat16 copies of this head's q, k, v, in bf16 mode: q and k in their packed layout, v in its own
    /// [keys, `paddedDV`] block when `paddedDV` > dv (else packed too).
    var half: (q: UnsafePointer<UInt16>, k: UnsafePointer<UInt16>, v: UnsafePointer<UInt16>)? = nil

    /// Columns of this head's bf16 V and of its e^S·V product: in bf16 mode with many keys, dv rounded up to a
    /// whole AVX-512 register of Float32 accumulators (16), with zero columns (`Tensor.attentionPadsValues`).
    /// oneDNN's bf16 kernel runs a 40-wide product (SD 1.5's heads at 64×64 latents) slower than a 48-wide one:
    /// `bench kernels`, self-attention at 4096 tokens 0.176–0.206 s against 0.190–0.213 s, at 9216 tokens
    /// 0.96–1.04 s against 1.07–1.21 s (three alternating runs, best of 20). With 77 keys (cross-attention) the
    /// padded copy of V costs more than it saves (0.015–0.017 s against 0.013–0.014 s), so few keys stay unpadded.
    static func paddedDV(_ dv: Int, keys: Int) -> Int {
        Tensor.precision == .bf16 && Tensor.attentionPadsValues && keys >= 1024 ? (dv + 15) / 16 * 16 : dv
    }
    var paddedDV: Int { AttentionHead.paddedDV(dv, keys: keys) }

    /// Calls `body(pairs, head)` with the number of (batch, head) pairs and the head of each pair index.
    /// In bf16 (`Tensor.precision`), the heads also carry bfloat16 copies of query, key and value for oneDNN.
    static func forEach(query: Tensor, key: Tensor, value: Tensor, out: inout Tensor, heads: Int, alpha: Float,
                        causal: Bool, _ body: (Int, (Int) -> AttentionHead) -> Void) {
        guard Tensor.precision == .bf16 else {
            return forEach(query: query, key: key, value: value, out: &out, heads: heads, alpha: alpha, causal: causal,
                           half: nil, body)
        }
        let (qc, kc) = (query.count, key.count)
        let (batch, keys, valueWidth) = (value.shape[0], value.shape[1], value.shape[2])
        let dv = valueWidth / heads, paddedDV = AttentionHead.paddedDV(dv, keys: keys)
        let vc = paddedDV == dv ? value.count : batch * heads * keys * paddedDV
        Tensor.withScratch(count: (qc + kc + vc + 1) / 2) { scratch in
            scratch.withMemoryRebound(to: UInt16.self, capacity: qc + kc + vc) { half in
                query.withUnsafeBufferPointer { HalfConversion.encodeBFloat16(from: $0.baseAddress!, into: half, count: qc) }
                key.withUnsafeBufferPointer { HalfConversion.encodeBFloat16(from: $0.baseAddress!, into: half + qc, count: kc) }
                value.withUnsafeBufferPointer { v in
                    let (v, halfV) = (v.baseAddress!, half + qc + kc)
                    guard paddedDV != dv else { return HalfConversion.encodeBFloat16(from: v, into: halfV, count: vc) }
                    // [B, keys, heads·dv] → [B, heads, keys, paddedDV], zero columns after each head's dv.
                    Parallel.forEach(batch * heads) { pair in
                        let (b, h) = (pair / heads, pair % heads)
                        let block = halfV + pair * keys * paddedDV
                        for j in 0..<keys {
                            let row = block + j * paddedDV
                            HalfConversion.encodeBFloat16Serial(from: v + (b * keys + j) * valueWidth + h * dv, into: row, count: dv)
                            (row + dv).update(repeating: 0, count: paddedDV - dv)
                        }
                    }
                }
                forEach(query: query, key: key, value: value, out: &out, heads: heads, alpha: alpha, causal: causal,
                        half: (UnsafePointer(half), UnsafePointer(half + qc), UnsafePointer(half + qc + kc)), body)
            }
        }
    }

    private static func forEach(query: Tensor, key: Tensor, value: Tensor, out: inout Tensor, heads: Int, alpha: Float,
                                causal: Bool, half: (UnsafePointer<UInt16>, UnsafePointer<UInt16>, UnsafePointer<UInt16>)?,
                                _ body: (Int, (Int) -> AttentionHead) -> Void) {
        let (batch, queries, keys) = (query.shape[0], query.shape[1], key.shape[1])
        let width = query.shape[2], valueWidth = value.shape[2]
        let d = width / heads, dv = valueWidth / heads, paddedDV = AttentionHead.paddedDV(dv, keys: keys)
        query.withUnsafeBufferPointer { q in
            key.withUnsafeBufferPointer { k in
                value.withUnsafeBufferPointer { v in
                    out.withUnsafeMutableBufferPointer { o in
                        let (q, k, v, o) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, o.baseAddress!)
                        body(batch * heads) { pair in
                            let (b, h) = (pair / heads, pair % heads)
                            return AttentionHead(q: q + b * queries * width + h * d, k: k + b * keys * width + h * d,
                                                 v: v + b * keys * valueWidth + h * dv,
                                                 o: o + b * queries * valueWidth + h * dv,
                                                 queries: queries, keys: keys, d: d, dv: dv, width: width,
                                                 valueWidth: valueWidth, alpha: alpha, causal: causal,
                                                 half: half.map { (q, k, v) in
                                                     (q + b * queries * width + h * d, k + b * keys * width + h * d,
                                                      paddedDV == dv ? v + b * keys * valueWidth + h * dv
                                                        : v + pair * keys * paddedDV) })
                        }
                    }
                }
            }
        }
    }

    /// Floats of scratch `attend` needs for blocks of `blockRows` rows: the scores, one scale a row and, in bf16, the
    /// rounded e^S and, with padded V columns, the padded product.
    static func scratchCount(blockRows: Int, keys: Int, dv: Int) -> Int {
        guard Tensor.precision == .bf16 else { return blockRows * keys + blockRows }
        let padded = paddedDV(dv, keys: keys) == dv ? 0 : blockRows * paddedDV(dv, keys: keys)
        return blockRows * keys + blockRows + (blockRows * keys + 1) / 2 + padded
    }

    /// Every query row, `blockRows` at a time: S = α·Q·Kᵀ into the scores [blockRows, keys], the causal mask,
    /// e^(S − max) per row with 1/Σ into the row scales, then O = e^S·V with each row scaled by its 1/Σ (dv values
    /// a row instead of every key). In bf16 the exponentials are rounded to bfloat16 as they are made, in the same
    /// pass (Σ sums them unrounded). `parallel` spreads the rows' softmax over the workers. `scratch` holds
    /// `scratchCount(blockRows:keys:)` floats.
    func attend(blockRows: Int, scratch: UnsafeMutablePointer<Float>, parallel: Bool) {
        let scores = scratch, rowScales = scratch + blockRows * keys
        let rounded = half == nil ? nil : UnsafeMutableRawPointer(rowScales + blockRows)
            .bindMemory(to: UInt16.self, capacity: blockRows * keys)
        // With padded V: e^S·V's paddedDV columns, before the scaled copy of the first dv into the output.
        let paddedOut = half == nil || paddedDV == dv ? nil : rowScales + blockRows + (blockRows * keys + 1) / 2
        var start = 0
        while start < queries {
            let rows = min(blockRows, queries - start)
            if !scoresBF16(start: start, rows: rows, scores: scores, parallel: parallel) {
                BLAS.sgemm(transposeB: true, m: rows, n: keys, k: d, alpha: alpha,
                           a: q + start * width, lda: width, b: k, ldb: width, c: scores, ldc: keys)
            }
            let softmax = { (range: Range<Int>) in
                for r in range {
                    let row = scores + r * keys
                    if causal, start + r + 1 < keys {
                        (row + start + r + 1).update(repeating: -.infinity, count: keys - start - r - 1)
                    }
                    if let rounded {
                        rowScales[r] = Tensor.exponentiateRow(row, keys, roundedInto: rounded + r * keys)
                    } else {
                        rowScales[r] = Tensor.exponentiateRow(row, keys)
                    }
                }
            }
            if parallel {
                Parallel.forEachRange(rows, grain: max(1, 16_384 / max(keys, 1)), softmax)
            } else {
                softmax(0..<rows)
            }
            if let paddedOut, valuesBF16Padded(rows: rows, rounded: rounded!, into: paddedOut, parallel: parallel) {
                let out = o + start * valueWidth
                for r in 0..<rows {
                    let scale = rowScales[r], source = paddedOut + r * paddedDV
                    for j in 0..<dv { out[r * valueWidth + j] = source[j] * scale }
                }
                start += rows
                continue
            }
            // (With padded V, a oneDNN failure comes here too: its bf16 V is not in the unpadded layout.)
            if paddedOut != nil || !valuesBF16(start: start, rows: rows, scores: scores, rounded: rounded, parallel: parallel) {
                if rounded != nil {  // oneDNN failed: e^S again in Float32, from the rounded values
                    for i in 0..<(rows * keys) { scores[i] = HalfConversion.float(fromBFloat16Bits: rounded![i]) }
                }
                BLAS.sgemm(m: rows, n: dv, k: keys, a: scores, lda: keys, b: v, ldb: valueWidth,
                           c: o + start * valueWidth, ldc: valueWidth)
            }
            let out = o + start * valueWidth
            for r in 0..<rows {
                let scale = rowScales[r]
                for j in 0..<dv { out[r * valueWidth + j] *= scale }
            }
            start += rows
        }
    }
}

extension AttentionHead {
    /// S = α·Q·Kᵀ for `rows` queries from `start` on oneDNN in bf16; false (nothing done) in fp32 or after a
    /// oneDNN error (reported), and the caller runs the fp32 product.
    func scoresBF16(start: Int, rows: Int, scores: UnsafeMutablePointer<Float>, parallel: Bool) -> Bool {
        guard let half else { return scoresFloat32OnOneDNN(start: start, rows: rows, scores: scores, parallel: parallel) }
        do throws(OneDNNError) {
            try OneDNN.gemm(m: rows, n: keys, k: d, type: .bf16,
                            a: .matrix(UnsafeRawPointer(half.q + start * width), strides: (width, 1)),
                            b: .matrix(UnsafeRawPointer(half.k), strides: (1, width)),
                            c: scores, ldc: keys, alpha: alpha, parallel: parallel)
            return true
        } catch {
            Precision.reportFallback(error)
            return false
        }
    }

    /// e^S·V on oneDNN in bf16 with V's zero-padded columns (`paddedDV`), into `out` [rows, paddedDV].
    func valuesBF16Padded(rows: Int, rounded: UnsafeMutablePointer<UInt16>, into out: UnsafeMutablePointer<Float>,
                          parallel: Bool) -> Bool {
        guard let half else { return false }
        do throws(OneDNNError) {
            try OneDNN.gemm(m: rows, n: paddedDV, k: keys, type: .bf16, a: .matrix(UnsafeRawPointer(rounded), strides: (keys, 1)),
                            b: .matrix(UnsafeRawPointer(half.v), strides: (paddedDV, 1)), c: out, ldc: paddedDV,
                            parallel: parallel)
            return true
        } catch {
            Precision.reportFallback(error)
            return false
        }
    }

    /// O = e^S·V on oneDNN in bf16, with e^S already rounded to bf16 (`rounded`, as autocast's attention rounds it);
    /// without them, on oneDNN in fp32 (`valuesFloat32OnOneDNN`, from the scores). False as `scoresBF16`.
    func valuesBF16(start: Int, rows: Int, scores: UnsafeMutablePointer<Float>, rounded: UnsafeMutablePointer<UInt16>?,
                    parallel: Bool) -> Bool {
        guard let half, let rounded else {
            return valuesFloat32OnOneDNN(start: start, rows: rows, scores: scores, parallel: parallel)
        }
        do throws(OneDNNError) {
            try OneDNN.gemm(m: rows, n: dv, k: keys, type: .bf16, a: .matrix(UnsafeRawPointer(rounded), strides: (keys, 1)),
                            b: .matrix(UnsafeRawPointer(half.v), strides: (valueWidth, 1)),
                            c: o + start * valueWidth, ldc: valueWidth, parallel: parallel)
            return true
        } catch {
            Precision.reportFallback(error)
            return false
        }
    }
}

extension AttentionHead {
    /// Float32 attention products on oneDNN's f32 matmul instead of OpenBLAS (`Tensor.attentionOnOneDNN`): with a
    /// 40-wide head both products are thin, where OpenBLAS packs more than it multiplies (`darkroom bench kernels`,
    /// 4096×40×4096 Q·Kᵀ: 181 against 349 GFLOP/s; 4096×4096×40 P·V: 175 against 267). Float32 in, Float32
    /// accumulation: the same arithmetic in another order.
    func scoresFloat32OnOneDNN(start: Int, rows: Int, scores: UnsafeMutablePointer<Float>, parallel: Bool) -> Bool {
        guard Tensor.attentionOnOneDNN else { return false }
        do throws(OneDNNError) {
            try OneDNN.gemm(m: rows, n: keys, k: d, type: .f32, a: .matrix(UnsafeRawPointer(q + start * width), strides: (width, 1)),
                            b: .matrix(UnsafeRawPointer(k), strides: (1, width)), c: scores, ldc: keys, alpha: alpha,
                            parallel: parallel)
            return true
        } catch {
            Precision.reportFallback(error)
            return false
        }
    }

    func valuesFloat32OnOneDNN(start: Int, rows: Int, scores: UnsafeMutablePointer<Float>, parallel: Bool) -> Bool {
        guard Tensor.attentionOnOneDNN else { return false }
        do throws(OneDNNError) {
            try OneDNN.gemm(m: rows, n: dv, k: keys, type: .f32, a: .matrix(UnsafeRawPointer(scores), strides: (keys, 1)),
                            b: .matrix(UnsafeRawPointer(v), strides: (valueWidth, 1)), c: o + start * valueWidth,
                            ldc: valueWidth, parallel: parallel)
            return true
        } catch {
            Precision.reportFallback(error)
            return false
        }
    }
}

extension Tensor {
    /// Whether fp32 attention runs its two products on oneDNN's f32 matmul (see `AttentionHead.scoresFloat32OnOneDNN`;
    /// `AttentionOneDNNTests`: relative RMS error against float64 4.2e-7, OpenBLAS's 3.7e-7).
    nonisolated(unsafe) public static var attentionOnOneDNN = true

    /// Whether bf16 attention pads each head's V with zero columns to a multiple of 16 (see `AttentionHead.paddedDV`).
    nonisolated(unsafe) public static var attentionPadsValues = true
}
