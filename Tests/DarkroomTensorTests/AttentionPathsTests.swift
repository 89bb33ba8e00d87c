import Foundation
import DarkroomTensor
import DarkroomTestSupport
import XCTest

/// Large attention runs per thread (each worker owns whole heads, single-threaded GEMMs over cache-sized row
/// blocks); small attention runs in chunks with two-thread GEMMs. Both must give the same result, causal or not.
/// The chunked path itself is checked against PyTorch in KernelParityTests. Tolerance 1e-5 of the largest
/// magnitude: the same products and sums per row, only blocked differently.
final class AttentionPathsTests: XCTestCase {
    func testPerThreadPathMatchesChunkedPath() {
        var random = SystemRandomNumberGenerator()
        func tensor(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &random) })
        }
        let (tokens, heads, d) = (1100, 2, 8)   // 1100² scores per head: above the per-thread threshold
        let q = tensor([1, tokens, heads * d]), k = tensor([1, tokens, heads * d])
        let savedWorkers = Parallel.workers, savedBudget = Tensor.attentionThreadScoreBudget
        defer { Parallel.workers = savedWorkers; Tensor.attentionThreadScoreBudget = savedBudget }
        // Value widths per head: odd, SD 1.5's 40 and SD 2's 64.
        for dv in [5, 40, 64] {
            let v = tensor([1, tokens, heads * dv])
            for causal in [false, true] {
                Parallel.workers = 1                              // chunked path
                let chunked = Tensor.attention(query: q, key: k, value: v, heads: heads, causal: causal)
                Parallel.workers = 2                              // per-thread path, blocks of 101 rows (one partial)
                Tensor.attentionThreadScoreBudget = 101 * tokens
                let perThread = Tensor.attention(query: q, key: k, value: v, heads: heads, causal: causal)
                assertClose(perThread, chunked, relative: 1e-5, "dv: \(dv), causal: \(causal)")
            }
        }
    }
}

/// fp32 attention's products on oneDNN (`Tensor.attentionOnOneDNN`) against OpenBLAS's, both against a float64
/// reference computed here (softmax(α Q Kᵀ) V per head, in Double): a faster kernel must not cost precision.
/// SD 1.5's level-0 head width (40) over 1024 tokens, both the chunked and the per-thread path.
final class AttentionOneDNNTests: XCTestCase {
    func testOneDNNFloat32ProductsAreAsAccurateAsOpenBLAS() {
        var rng = NormalSource(seed: 40)
        let (tokens, heads, d) = (1024, 2, 40)
        func tensor() -> Tensor { Tensor(shape: [1, tokens, heads * d], scalars: (0..<(tokens * heads * d)).map { _ in Float(rng.normal()) }) }
        let q = tensor(), k = tensor(), v = tensor()
        let alpha = 1 / Double(d).squareRoot()
        var reference = [Double](repeating: 0, count: tokens * heads * d)
        let (qs, ks, vs) = (q.scalars, k.scalars, v.scalars)
        for h in 0..<heads {
            for i in 0..<tokens {
                var scores = [Double](repeating: 0, count: tokens)
                for j in 0..<tokens {
                    var s = 0.0
                    for c in 0..<d { s += Double(qs[i * heads * d + h * d + c]) * Double(ks[j * heads * d + h * d + c]) }
                    scores[j] = alpha * s
                }
                let top = scores.max() ?? 0
                let e = scores.map { Foundation.exp($0 - top) }, sum = e.reduce(0, +)
                for c in 0..<d {
                    var o = 0.0
                    for j in 0..<tokens { o += e[j] * Double(vs[j * heads * d + h * d + c]) }
                    reference[i * heads * d + h * d + c] = o / sum
                }
            }
        }
        func rmsError(_ y: Tensor) -> Double {
            let squared = zip(y.scalars, reference).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
            let norm = reference.reduce(0.0) { $0 + $1 * $1 }
            return (squared / norm).squareRoot()
        }
        let saved = (Tensor.attentionOnOneDNN, Parallel.workers, Tensor.attentionThreadScoreBudget)
        defer { (Tensor.attentionOnOneDNN, Parallel.workers, Tensor.attentionThreadScoreBudget) = saved }
        for (workers, budget) in [(1, saved.2), (2, 128 * tokens)] {   // chunked; per thread in 128-row blocks
            (Parallel.workers, Tensor.attentionThreadScoreBudget) = (workers, budget)
            Tensor.attentionOnOneDNN = false
            let openBLAS = rmsError(Tensor.attention(query: q, key: k, value: v, heads: heads))
            Tensor.attentionOnOneDNN = true
            let oneDNN = rmsError(Tensor.attention(query: q, key: k, value: v, heads: heads))
            print(String(format: "  workers %d: relative RMS error OpenBLAS %.2e, oneDNN f32 %.2e", workers, openBLAS, oneDNN))
            XCTAssertLessThan(openBLAS, 1e-6)
            XCTAssertLessThanOrEqual(oneDNN, 2 * openBLAS)
        }
        XCTAssertEqual(Precision.fallbackReasons, [])
    }
}
