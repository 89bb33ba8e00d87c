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
