import DarkroomTensor
import DarkroomWeights
import Foundation
import XCTest

/// bf16 packed copies kept between processes (`PackedWeightStore`): a second opening of the same checkpoint file
/// (as a later process) reads them instead of packing, and gets the same products bit for bit; a damaged store or
/// a changed checkpoint is not used, and nothing traps.
final class PackedWeightStoreTests: XCTestCase {
    var folder: URL!
    var checkpoint: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-packed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        PackedWeightStore.folder = folder.appendingPathComponent("packed")
        checkpoint = folder.appendingPathComponent("model.safetensors")
        try writeCheckpoint(seed: 1)
    }

    override func tearDownWithError() throws {
        PackedWeightStore.folder = nil
        Tensor.precision = .fp32
        try? FileManager.default.removeItem(at: folder)
    }

    /// A linear weight [96, 64] and a 3×3 kernel [16, 8, 3, 3] in fp16, from a seeded generator.
    func writeCheckpoint(seed: UInt64) throws {
        var state = seed
        func values(_ n: Int) -> [Float] {
            (0..<n).map { _ in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
            }
        }
        var writer = SafetensorsWriter()
        try writer.add("linear.weight", shape: [96, 64], floats: values(96 * 64), as: .f16)
        try writer.add("conv.weight", shape: [16, 8, 3, 3], floats: values(16 * 8 * 9), as: .f16)
        try writer.write(to: checkpoint)
    }

    /// The two products in bf16 with the weights of a fresh opening of the checkpoint (a new process's view), and
    /// how many copies that opening read from its store; `save`: then the stores are saved, as a job's end does.
    func products(save: Bool = false) throws -> (linear: [Float], conv: [Float], hits: Int) {
        let file = try SafetensorsFile(url: checkpoint)
        let linear = try file.weight("linear.weight"), conv = try file.weight("conv.weight")
        let x = Tensor(shape: [1, 5, 64], scalars: (0..<320).map { Float($0 % 17) / 17 - 0.5 })
        // 40×36: a plane that the bf16 mode runs through Winograd F(2×2, 3×3) (its U is stored too).
        let image = Tensor(shape: [1, 8, 40, 36], scalars: (0..<(8 * 40 * 36)).map { Float($0 % 23) / 23 - 0.5 })
        Tensor.precision = .bf16
        defer { Tensor.precision = .fp32 }
        let y = x.linear(weight: linear).scalars, z = image.conv2d(weight: conv, padding: .uniform(1)).scalars
        XCTAssertEqual(Precision.fallbackReasons, [])
        let hits = file.packedWeights?.hits ?? -1
        if save { PackedWeightStore.saveAll() }
        return (y, z, hits)
    }

    func storeFiles() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: PackedWeightStore.folder!, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "packed" }
    }

    func testASecondOpeningReadsTheCopiesAndGetsTheSameBits() throws {
        let first = try products(save: true)
        XCTAssertEqual(first.hits, 0, "nothing stored yet")
        XCTAssertEqual(try storeFiles().count, 1)
        let second = try products()
        XCTAssertEqual(second.hits, 2, "the packed linear weight and the Winograd U, both read back")
        XCTAssertEqual(second.linear, first.linear)
        XCTAssertEqual(second.conv, first.conv)
        // Against a run that keeps nothing: the same bits again.
        PackedWeightStore.folder = nil
        let unstored = try products()
        XCTAssertEqual(unstored.linear, first.linear)
        XCTAssertEqual(unstored.conv, first.conv)
    }

    func testADamagedStoreIsIgnored() throws {
        let first = try products(save: true)
        let store = try XCTUnwrap(try storeFiles().first)
        let bytes = try Data(contentsOf: store)
        // Cut short (the copies' ranges no longer fit), a header that does not parse, and an empty file.
        for damaged in [bytes.prefix(bytes.count / 2), Data("DRPACK01".utf8) + Data(repeating: 0xff, count: 64), Data()] {
            try damaged.write(to: store)
            let again = try products()
            XCTAssertEqual(again.hits, 0)
            XCTAssertEqual(again.linear, first.linear)
            XCTAssertEqual(again.conv, first.conv)
        }
    }

    func testAChangedCheckpointDoesNotUseTheOldCopies() throws {
        _ = try products(save: true)
        try writeCheckpoint(seed: 2)  // another file at the same path: another identity
        let changed = try products()
        XCTAssertEqual(changed.hits, 0)
        PackedWeightStore.folder = nil
        let fresh = try products()
        XCTAssertEqual(changed.linear, fresh.linear, "the new weights, packed afresh")
        XCTAssertEqual(changed.conv, fresh.conv)
    }

    func testNothingIsWrittenBeyondTheLimit() throws {
        let saved = PackedWeightStore.limitBytes
        defer { PackedWeightStore.limitBytes = saved }
        PackedWeightStore.limitBytes = 4096  // smaller than the header and the copies
        _ = try products(save: true)
        XCTAssertEqual((try? storeFiles())?.count ?? 0, 0)
    }
}
