import DarkroomTensor
import XCTest

/// Freed large tensors are kept (up to a limit) and handed to the next tensor of a similar size.
final class LargeBlockCacheTests: XCTestCase {
    let cache = LargeBlockCache.shared
    var savedLimit = 0, savedPerLargest = 0

    override func setUp() { (savedLimit, savedPerLargest) = (cache.limitBytes, cache.blocksPerLargest); cache.releaseAll() }
    override func tearDown() {
        (cache.limitBytes, cache.blocksPerLargest) = (savedLimit, savedPerLargest)
        cache.releaseAll()
    }

    func testFreedBlockIsReusedBySimilarSize() {
        let mib = 1 << 20
        do { _ = Tensor(shape: [4 * mib], repeating: 1) }  // 16 MiB, freed at once
        XCTAssertEqual(cache.cachedBytes, 16 * mib)
        // A 12 MiB tensor fits in the 16 MiB block (at most twice its size): the block leaves the cache.
        var reused: Tensor? = Tensor(shape: [3 * mib], repeating: 2)
        XCTAssertEqual(cache.cachedBytes, 0)
        XCTAssertEqual(reused!.scalars.allSatisfy { $0 == 2 }, true)  // the reused memory holds the new values
        reused = nil
        XCTAssertEqual(cache.cachedBytes, 16 * mib, "a reused block is cached again at its real size")
        // A 4 MiB tensor is less than half of it: fresh memory, the 16 MiB block stays cached.
        let small = Tensor(shape: [mib], repeating: 3)
        XCTAssertEqual(cache.cachedBytes, 16 * mib)
        XCTAssertEqual(small.count, mib)
    }

    func testLimitBoundsTheCache() {
        let mib = 1 << 20
        cache.limitBytes = 12 * mib
        cache.blocksPerLargest = 0
        do {
            let a = Tensor(shape: [2 * mib], repeating: 1), b = Tensor(shape: [2 * mib], repeating: 1)
            XCTAssertEqual(a.count + b.count, 4 * mib)
        }
        XCTAssertEqual(cache.cachedBytes, 8 * mib, "the second 8 MiB block would pass the 12 MiB limit: the oldest went")
        cache.releaseAll()
        XCTAssertEqual(cache.cachedBytes, 0)
        cache.limitBytes = 0
        do { _ = Tensor(shape: [2 * mib], repeating: 1) }
        XCTAssertEqual(cache.cachedBytes, 0)
    }

    /// The limit rises to `blocksPerLargest` blocks of the largest size asked for (a VAE decode's activations), and
    /// falls back to `limitBytes` once `releaseAll` forgets that size.
    func testLimitRisesWithTheLargestBlock() {
        let mib = 1 << 20
        cache.limitBytes = 12 * mib
        cache.blocksPerLargest = 2
        do {
            let a = Tensor(shape: [2 * mib], repeating: 1), b = Tensor(shape: [2 * mib], repeating: 1)
            XCTAssertEqual(a.count + b.count, 4 * mib)
        }
        XCTAssertEqual(cache.cachedBytes, 16 * mib, "two 8 MiB blocks fit 2 × 8 MiB, above the 12 MiB floor")
        do {
            let a = Tensor(shape: [2 * mib], repeating: 1), b = Tensor(shape: [2 * mib], repeating: 1)
            let c = Tensor(shape: [2 * mib], repeating: 1)
            XCTAssertEqual(a.count + b.count + c.count, 6 * mib)
        }
        XCTAssertEqual(cache.cachedBytes, 16 * mib, "a third 8 MiB block is past 2 × 8 MiB: the oldest went")
        cache.releaseAll()
        do {
            // 6 MiB blocks: the largest since the release, so the limit is the 12 MiB floor again (2 × 6 MiB too).
            let a = Tensor(shape: [mib + mib / 2], repeating: 1), b = Tensor(shape: [mib + mib / 2], repeating: 1)
            let c = Tensor(shape: [mib + mib / 2], repeating: 1)
            XCTAssertEqual(a.count + b.count + c.count, 4 * mib + mib / 2)
        }
        XCTAssertEqual(cache.cachedBytes, 12 * mib, "after the release, three 6 MiB blocks: two are kept, not the 16 MiB")
    }
}
