import DarkroomModels
import DarkroomWeights
import Foundation
import DarkroomTestSupport
import XCTest

/// Broken checkpoints give errors that name the file and the key, never a crash. Each case is the
/// sd1 fixture's single file rewritten with one defect.
final class CheckpointErrorTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// Copies the sd1 single file with `edit` applied to (key, shape, values) of every tensor; nil drops it.
    func rewrite(_ name: String, _ edit: (String, [Int], [Float]) -> (String, [Int], [Float])?) throws -> URL {
        let source = try SafetensorsFile(url: ModelFixtures.singleFile("sd1"))
        var writer = SafetensorsWriter()
        for info in source.tensorInfos where info.dtype.isFloatingPoint {
            if let (key, shape, values) = edit(info.name, info.shape, try source.floats(info.name)) {
                try writer.add(key, shape: shape, floats: values, as: .f16)
            }
        }
        let url = directory.appendingPathComponent(name)
        try writer.write(to: url)
        return url
    }

    func assertError(_ url: URL, contains fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try StableDiffusionModels.load(url, config: ModelFixtures.diffusers("sd1")), file: file, line: line) { error in
            let text = "\(error)"
            for fragment in fragments { XCTAssert(text.contains(fragment), "'\(text)' lacks '\(fragment)'", file: file, line: line) }
        }
    }

    func testMissingTensorIsNamed() throws {
        let dropped = "model.diffusion_model.output_blocks.4.1.proj_out.weight"
        let url = try rewrite("missing.safetensors") { $0 == dropped ? nil : ($0, $1, $2) }
        // Canonical name of output_blocks.4.1 with 2 layers per block: up_blocks.1.attentions.1.
        assertError(url, contains: ["unet.up_blocks.1.attentions.1.proj_out.weight", url.path])
    }

    func testWrongShapeIsNamed() throws {
        let changed = "first_stage_model.decoder.up.0.block.1.conv2.weight"
        let url = try rewrite("shape.safetensors") { key, shape, values in
            guard key == changed else { return (key, shape, values) }
            return (key, [shape[0], shape[1], 1, 9], values)   // same count, wrong shape
        }
        // decoder.up.0 is the last of 4 decoder levels: up_blocks.3.
        assertError(url, contains: ["vae.decoder.up_blocks.3.resnets.1.conv2.weight", "[32, 32, 1, 9]", "[32, 32, 3, 3]"])
    }

    func testPickleIsRefusedWithConversionAdvice() throws {
        let url = directory.appendingPathComponent("model.ckpt")
        try Data("PK\u{3}\u{4} not really".utf8).write(to: url)
        XCTAssertThrowsError(try StableDiffusionModels.load(url)) { error in
            XCTAssert("\(error)".contains("pickled"))
            XCTAssert("\(error)".contains("safetensors"))
        }
    }

    func testSDXLAndTextEncoderLessFilesAreUnknownFamilies() throws {
        let xl = try rewrite("xl.safetensors") { key, shape, values in
            (key.replacingOccurrences(of: "cond_stage_model.transformer.", with: "conditioner.embedders.0.transformer."), shape, values)
        }
        assertError(xl, contains: ["SDXL"])
        let noText = try rewrite("notext.safetensors") { $0.hasPrefix("cond_stage_model.") ? nil : ($0, $1, $2) }
        assertError(noText, contains: ["no text encoder"])
    }

    func testMissingCheckpointAndCorruptFile() throws {
        let missing = directory.appendingPathComponent("nothing.safetensors")
        XCTAssertThrowsError(try StableDiffusionModels.load(missing)) { XCTAssert("\($0)".contains(missing.path)) }
        let corrupt = directory.appendingPathComponent("corrupt.safetensors")
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 1, 2, 3]).write(to: corrupt)
        XCTAssertThrowsError(try StableDiffusionModels.load(corrupt)) { XCTAssert("\($0)".contains(corrupt.path)) }
    }
}
