import DarkroomTensor
import DarkroomWeights
import Foundation
import XCTest

/// 16-bit checkpoints stay 16-bit in memory (`Weight`), borrowed from the file's mapping, and expand to exactly
/// the Float32 values a full conversion gives, through every key transform (reshape, rows of a fused matrix).
final class WeightStorageTests: XCTestCase {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models")

    func check(_ checkpoint: Checkpoint, _ key: String, format: Weight.Format, file: StaticString = #filePath, line: UInt = #line) throws {
        let weight = try checkpoint.weight(key)
        let tensor = try checkpoint.tensor(key)
        XCTAssertEqual(weight.format, format, key, file: file, line: line)
        XCTAssertEqual(weight.shape, tensor.shape, key, file: file, line: line)
        XCTAssertEqual(weight.float32.scalars, tensor.scalars, key, file: file, line: line)
        weight.withFloat32 { XCTAssertEqual($0.scalars, tensor.scalars, key, file: file, line: line) }
        XCTAssertEqual(weight.storedBytes, tensor.count * (format == .float32 ? 4 : 2))
    }

    func testSingleFileF16WeightsStayHalf() throws {
        let sd2 = try Checkpoint.open(Self.models.appendingPathComponent("sd2v/sd2v.safetensors"))
        try check(sd2, "unet.conv_in.weight", format: .float16)
        // q/k/v are row blocks of OpenCLIP's fused in_proj_weight.
        for projection in ["q_proj", "k_proj", "v_proj"] {
            try check(sd2, "text_encoder.text_model.encoder.layers.0.self_attn.\(projection).weight", format: .float16)
        }
        XCTAssertNotEqual(try sd2.weight("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.weight").float32.scalars,
                          try sd2.weight("text_encoder.text_model.encoder.layers.0.self_attn.k_proj.weight").float32.scalars)
    }

    /// Float32 checkpoints are borrowed from the mapping too (no second copy of a 4 GB file), including the
    /// row blocks of a fused q/k/v matrix: the sd2v fixture rewritten in F32.
    func testSingleFileF32WeightsAreBorrowed() throws {
        let source = try SafetensorsFile(url: Self.models.appendingPathComponent("sd2v/sd2v.safetensors"))
        var writer = SafetensorsWriter()
        for name in source.tensorNames {
            let info = try source.info(name)
            if info.dtype.isFloatingPoint { try writer.add(name, shape: info.shape, floats: try source.floats(name), as: .f32) }
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("f32-\(UUID().uuidString.prefix(8)).safetensors")
        try writer.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let checkpoint = try Checkpoint.open(url)
        for key in ["unet.conv_in.weight", "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.weight"] {
            try check(checkpoint, key, format: .float32)
            XCTAssertTrue(try checkpoint.weight(key).isBorrowed, key)
        }
        XCTAssertFalse(try checkpoint.tensor("unet.conv_in.weight").isBorrowed, "tensor() is an owned copy")
    }

    func testBF16AndDiffusersFolders() throws {
        let inpaint = try Checkpoint.open(Self.models.appendingPathComponent("sd1_inpaint/sd1_inpaint.safetensors"))
        try check(inpaint, "unet.conv_in.weight", format: .bfloat16)
        let folder = try Checkpoint.open(Self.models.appendingPathComponent("sd1/diffusers"))
        let key = try XCTUnwrap(folder.keys.first { $0.hasSuffix("proj_in.weight") })
        try check(folder, key, format: .float16)
    }

    /// Between uses the pipeline takes the UNet's pages out of the resident set; a borrowed weight read afterwards
    /// maps them back and gives the same values. Checked on every UNet tensor of a single file and a folder.
    func testDroppedPagesComeBack() throws {
        for path in ["sd2v/sd2v.safetensors", "sd1/diffusers"] {
            let checkpoint = try Checkpoint.open(Self.models.appendingPathComponent(path))
            let keys = checkpoint.keys.filter { $0.hasPrefix("unet.") }
            XCTAssertGreaterThan(keys.count, 50, path)
            let weights = try keys.map { try checkpoint.weight($0) }
            let before = weights.map(\.float32.scalars)
            checkpoint.dropResidentPages(prefix: "unet")
            for (i, weight) in weights.enumerated() { XCTAssertEqual(weight.float32.scalars, before[i], "\(path) \(keys[i])") }
        }
    }
}
