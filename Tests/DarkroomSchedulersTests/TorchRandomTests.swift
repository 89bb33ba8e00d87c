import Foundation
import XCTest
import DarkroomSchedulers

// Every expected value here was produced by torch itself: tools/reference/make_random_fixtures.py runs
// torch.randn / torch.rand (float32) on torch.Generator("cpu").manual_seed(seed) and writes
// Tests/Fixtures/random/random.{json,bin}. Comparisons are on bit patterns (exact equality).

private let randomFixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()
    .deletingLastPathComponent()
    .appendingPathComponent("Fixtures")
    .appendingPathComponent("random")

private struct RandomFixtureIndex: Decodable {
    struct Segment: Decodable { let start: Int; let count: Int; let offset: Int }
    struct Draw: Decodable {
        let op: String
        let shape: [Int]
        let numel: Int
        let segments: [Segment]
        let sum_f64: Double
        let fnv1a64: String
    }
    struct Case: Decodable { let name: String; let seed: String; let draws: [Draw] }
    let torch_version: String
    let cpu_capability: String
    let values_file: String
    let cases: [Case]
}

private final class RandomFixtures: @unchecked Sendable {
    static let shared = RandomFixtures()
    let index: RandomFixtureIndex
    let values: [UInt32]

    private init() {
        let json = try! Data(contentsOf: randomFixturesDirectory.appendingPathComponent("random.json"))
        index = try! JSONDecoder().decode(RandomFixtureIndex.self, from: json)
        let blob = try! Data(contentsOf: randomFixturesDirectory.appendingPathComponent(index.values_file))
        values = blob.withUnsafeBytes { raw in
            (0..<(blob.count / 4)).map { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
    }

    func fixtureCase(_ name: String) -> RandomFixtureIndex.Case {
        guard let c = index.cases.first(where: { $0.name == name }) else { fatalError("no fixture case \(name)") }
        return c
    }
}

private func fnv1a64(_ values: [Float]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for v in values {
        var bits = v.bitPattern.littleEndian
        for _ in 0..<4 {
            h ^= UInt64(bits & 0xff)
            h = h &* 0x0000_0100_0000_01b3
            bits >>= 8
        }
    }
    return h
}

/// Units in the last place between two finite floats of the same sign (for failure messages only).
private func ulpDistance(_ a: UInt32, _ b: UInt32) -> Int64 {
    func ordered(_ x: UInt32) -> Int64 { x & 0x8000_0000 != 0 ? -Int64(x & 0x7fff_ffff) : Int64(x) }
    return abs(ordered(a) - ordered(b))
}

final class TorchRandomTests: XCTestCase {
    /// Replays one fixture case (one generator, its draws in order) and compares every stored value exactly.
    private func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let fixtures = RandomFixtures.shared
        let fixture = fixtures.fixtureCase(name)
        guard let seed = UInt64(fixture.seed) else { return XCTFail("bad seed \(fixture.seed)", file: file, line: line) }
        var source = TorchRandomSource(seed: seed)
        for (k, draw) in fixture.draws.enumerated() {
            let got = draw.op == "randn" ? source.normal(shape: draw.shape) : source.uniform(shape: draw.shape)
            let what = "\(name) draw \(k) (\(draw.op) \(draw.shape), seed \(fixture.seed))"
            XCTAssertEqual(got.count, draw.numel, what, file: file, line: line)
            guard got.count == draw.numel else { continue }
            var mismatches = 0, worst: Int64 = 0, first = -1
            for segment in draw.segments {
                for i in 0..<segment.count {
                    let expected = fixtures.values[segment.offset + i]
                    let actual = got[segment.start + i].bitPattern
                    if expected != actual {
                        mismatches += 1
                        worst = max(worst, ulpDistance(expected, actual))
                        if first < 0 { first = segment.start + i }
                    }
                }
            }
            XCTAssertEqual(mismatches, 0, "\(what): \(mismatches) stored values differ (max \(worst) ulp, first at \(first))",
                           file: file, line: line)
            XCTAssertEqual(String(format: "%016llx", fnv1a64(got)), draw.fnv1a64, "\(what): hash of all values",
                           file: file, line: line)
            let sum = got.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(sum, draw.sum_f64, accuracy: 1e-9 * max(1, Double(draw.numel)), "\(what): float64 sum",
                           file: file, line: line)
        }
    }

    private static let seeds: [UInt64] = [0, 1, 42, 1234, (1 << 32) - 1, 1 << 32, 1 << 63, .max]
    private static let shapes: [[Int]] = [[1, 4, 8, 8], [1, 4, 64, 64], [17], [3, 5], [15], [16], [1], [2, 4, 96, 96]]

    private func checkSeeds(shape: [Int], file: StaticString = #filePath, line: UInt = #line) {
        for seed in Self.seeds {
            check("randn_seed\(seed)_\(shape.map(String.init).joined(separator: "x"))", file: file, line: line)
        }
    }

    // Fresh generator per case: torch.randn(shape, generator=Generator().manual_seed(seed)) for the 8 seeds
    // 0, 1, 42, 1234, 2^32-1, 2^32, 2^63, 2^64-1.

    /// Cases randn_seed*_1x4x8x8: 256 values, vectorised path (16 full blocks), stored whole.
    func testRandn_1x4x8x8() { checkSeeds(shape: [1, 4, 8, 8]) }
    /// Cases randn_seed*_1x4x64x64: 16384 values; first/last 1000 + middle 256 exact, hash and sum of all.
    func testRandn_1x4x64x64() { checkSeeds(shape: [1, 4, 64, 64]) }
    /// Cases randn_seed*_2x4x96x96: 73728 values (SD latent batch of 2); stored slices exact, hash and sum.
    func testRandn_2x4x96x96() { checkSeeds(shape: [2, 4, 96, 96]) }
    /// Cases randn_seed*_17: vectorised path with a recomputed tail block (draws 17 + 16 uniforms).
    func testRandn_17() { checkSeeds(shape: [17]) }
    /// Cases randn_seed*_16: exactly one block, no tail.
    func testRandn_16() { checkSeeds(shape: [16]) }
    /// Cases randn_seed*_15: largest small-path size (normal_distribution<double>, cached pairs).
    func testRandn_15() { checkSeeds(shape: [15]) }
    /// Cases randn_seed*_3x5: 15 values with a 2-D shape (small path).
    func testRandn_3x5() { checkSeeds(shape: [3, 5]) }
    /// Cases randn_seed*_1: one small-path sample (r·cos θ; r·sin θ stays cached).
    func testRandn_1() { checkSeeds(shape: [1]) }

    // Several draws from ONE generator, in order.

    /// Case diffusers_like (seed 42): randn(1,4,8,8), randn(1,4,8,8), randn(5).
    func testSequenceDiffusersLike() { check("diffusers_like") }
    /// Case small_cache_across_calls (seed 7): randn(3), randn(20), randn(3), rand(10), randn(1), randn(33),
    /// randn(2) — the cached small-path sample survives the large and rand calls in between.
    func testSequenceSmallPathCache() { check("small_cache_across_calls") }
    /// Case rand_then_randn (seed 2024): rand(4,4), randn(2,3), rand(3), randn(1,4,16,16).
    func testSequenceRandThenRandn() { check("rand_then_randn") }
    /// Case tail_blocks (seed 99): randn(31), randn(47), randn(1,4,3,5) (60 values), randn(65).
    func testSequenceTailBlocks() { check("tail_blocks") }
    /// Case rand_only (seed 0): rand(1,4,8,8), rand(5).
    func testUniform() { check("rand_only") }
    /// Case big_seed_rand (seed 2^64-1): rand(17), randn(4).
    func testUniformLargeSeed() { check("big_seed_rand") }

    /// Every case in the fixture index is replayed by one of the tests above (a case added to the script
    /// needs a test here).
    func testEveryFixtureCaseIsCovered() {
        var covered: Set<String> = ["diffusers_like", "small_cache_across_calls", "rand_then_randn", "tail_blocks",
                                    "rand_only", "big_seed_rand"]
        for seed in Self.seeds {
            for shape in Self.shapes { covered.insert("randn_seed\(seed)_\(shape.map(String.init).joined(separator: "x"))") }
        }
        let names = Set(RandomFixtures.shared.index.cases.map(\.name))
        XCTAssertEqual(names.subtracting(covered), [], "fixture cases without a test")
        XCTAssertEqual(covered.subtracting(names), [], "tests without a fixture case")
    }

    /// The fixtures were made by torch's vectorised (AVX2/AVX512) kernel, which this source implements.
    func testFixtureMetadata() {
        let index = RandomFixtures.shared.index
        XCTAssertTrue(["AVX2", "AVX512"].contains(index.cpu_capability), "fixtures made with \(index.cpu_capability)")
        XCTAssertTrue(index.torch_version.hasPrefix("2."), index.torch_version)
    }

    /// torch seeds the engine from the low 32 bits: cases randn_seed0_* and randn_seed4294967296_* are equal
    /// in the fixtures, and so are the streams here.
    func testSeedUsesLow32Bits() {
        var a = TorchRandomSource(seed: 0), b = TorchRandomSource(seed: 1 << 32)
        XCTAssertEqual(a.normal(count: 100).map(\.bitPattern), b.normal(count: 100).map(\.bitPattern))
        let f = RandomFixtures.shared
        XCTAssertEqual(f.fixtureCase("randn_seed0_1x4x8x8").draws[0].fnv1a64,
                       f.fixtureCase("randn_seed4294967296_1x4x8x8").draws[0].fnv1a64)
    }

    /// normal(shape:) is normal(count: product); empty shapes give nothing and consume nothing.
    func testShapeAndEmpty() {
        var a = TorchRandomSource(seed: 5), b = TorchRandomSource(seed: 5)
        XCTAssertEqual(a.normal(shape: [2, 3, 4]).map(\.bitPattern), b.normal(count: 24).map(\.bitPattern))
        XCTAssertEqual(a.normal(count: 0), [])
        XCTAssertEqual(a.uniform(count: 0), [])
        XCTAssertEqual(a.normal(count: 40).map(\.bitPattern), b.normal(count: 40).map(\.bitPattern))
    }

    /// The exact float32 FMA emulation agrees with the platform's fused multiply-add (libm fmaf / hardware).
    func testFMAEmulationMatchesHardware() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200_000 {
            let a = Float(bitPattern: UInt32.random(in: 0x3000_0000...0x4100_0000, using: &rng) | (rng.next() & 0x8000_0000))
            let b = Float(bitPattern: UInt32.random(in: 0x3000_0000...0x4100_0000, using: &rng) | (rng.next() & 0x8000_0000))
            let c = Float(bitPattern: UInt32.random(in: 0x2000_0000...0x4100_0000, using: &rng) | (rng.next() & 0x8000_0000))
            let expected = c.addingProduct(a, b)
            XCTAssertEqual(fma32(a, b, c).bitPattern, expected.bitPattern, "fma(\(a), \(b), \(c))")
            // Cancellation-heavy case: c ≈ -a·b.
            let d = -(a * b)
            XCTAssertEqual(fma32(a, b, d).bitPattern, d.addingProduct(a, b).bitPattern, "fma(\(a), \(b), \(d))")
        }
    }

    /// The SIMD kernel used by `normal` equals the scalar reference lane for lane (random uniform blocks,
    /// plus the extreme uniforms 0 and 1 - 2^-24 in both halves).
    func testSIMDKernelMatchesScalarReference() {
        var rng = SystemRandomNumberGenerator()
        var blocks: [[Float]] = (0..<20_000).map { _ in (0..<16).map { _ in Float(UInt32.random(in: 0..<(1 << 24), using: &rng)) * 0x1p-24 } }
        blocks.append([Float](repeating: 0, count: 16))
        blocks.append([Float](repeating: 1 - 0x1p-24, count: 16))
        blocks.append((0..<16).map { $0 % 2 == 0 ? 0 : 1 - 0x1p-24 })
        for block in blocks {
            var simd = block, scalar = block
            simd.withUnsafeMutableBufferPointer { torchNormalFill16SIMD($0.baseAddress!) }
            scalar.withUnsafeMutableBufferPointer { torchNormalFill16Scalar($0.baseAddress!) }
            XCTAssertEqual(simd.map(\.bitPattern), scalar.map(\.bitPattern), "block \(block)")
            XCTAssertTrue(simd.allSatisfy(\.isFinite), "block \(block)")
        }
    }
}
