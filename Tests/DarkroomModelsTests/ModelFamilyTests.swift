import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// Families are recognised from their data (`ModelFamily`): the sdxl fixture (tools/reference/make_sdxl_fixtures.py)
/// in both layouts, and single files rewritten from it with a text encoder missing or renamed.
final class ModelFamilyTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-family-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// The sdxl single file with `edit` applied to each tensor's key; nil drops it.
    func rewrite(_ name: String, _ edit: (String) -> String?) throws -> URL {
        let source = try SafetensorsFile(url: ModelFixtures.singleFile("sdxl"))
        var writer = SafetensorsWriter()
        for info in source.tensorInfos where info.dtype.isFloatingPoint {
            if let key = edit(info.name) { try writer.add(key, shape: info.shape, floats: try source.floats(info.name), as: .f16) }
        }
        let url = directory.appendingPathComponent(name)
        try writer.write(to: url)
        return url
    }

    func testSDXLIsRecognisedInBothLayoutsWithTheSameTensors() throws {
        let single = try Checkpoint.open(ModelFixtures.singleFile("sdxl"))
        let folder = try Checkpoint.open(ModelFixtures.diffusers("sdxl"))
        XCTAssertEqual(single.family, .sdxl)
        XCTAssertEqual(folder.family, .sdxl)
        XCTAssertEqual(folder.family.components, ["unet", "vae", "text_encoder", "text_encoder_2"])
        // The single file's converted keys are exactly the diffusers folder's (the bigG tower keeps all its
        // blocks, its projection is transposed, label_emb becomes add_embedding), with equal values.
        XCTAssertEqual(single.keys, folder.keys)
        XCTAssertEqual(single.shape("text_encoder_2.text_projection.weight"), [6, 8])
        XCTAssertNotNil(single.shape("text_encoder_2.text_model.encoder.layers.2.self_attn.q_proj.weight"))
        XCTAssertNotNil(single.shape("unet.add_embedding.linear_2.bias"))
        for key in folder.keys {
            XCTAssertEqual(try single.tensor(key).scalars, try folder.tensor(key).scalars, key)
        }
    }

    func testFamilyDefaultsAreData() {
        XCTAssertEqual(ModelFamily.sd1.defaultResolution, 512)
        XCTAssertEqual(ModelFamily.sdxl.defaultResolution, 1024)
        XCTAssertEqual(ModelFamily.sd2.defaultResolution, 512)
        XCTAssertEqual(ModelFamily.sd2.vPredictionResolution, 768)
        XCTAssertEqual(ModelFamily.sdxl.vaeScalingFactor, 0.13025)
        XCTAssertEqual(ModelFamily.sd2.vaeScalingFactor, 0.18215)
        XCTAssertEqual(ModelFamily.sdxl.textEncoders.map(\.component), ["text_encoder", "text_encoder_2"])
        XCTAssertEqual(ModelFamily.sdxlRefiner.textEncoders.map(\.component), ["text_encoder_2"])
        XCTAssertEqual(ModelFamily.sdxl.addedConditioning?.timeIDCount, 6)
        XCTAssertEqual(ModelFamily.sdxlRefiner.addedConditioning?.timeIDCount, 5)
        XCTAssertEqual(ModelFamily.sdxl.heads, .width(64))
        XCTAssertEqual(ModelFamily.sd1.heads, .count(8))
    }

    /// Only `conditioner.embedders.0.model.*` (bigG with its projection): the refiner, its tower as `text_encoder_2`.
    func testRefinerIsRecognisedFromItsOnlyEmbedder() throws {
        let url = try rewrite("refiner.safetensors") { key in
            if key.hasPrefix("conditioner.embedders.0.") { return nil }
            return key.replacingOccurrences(of: "conditioner.embedders.1.", with: "conditioner.embedders.0.")
        }
        let checkpoint = try Checkpoint.open(url)
        XCTAssertEqual(checkpoint.family, .sdxlRefiner)
        XCTAssertFalse(checkpoint.keys.contains { $0.hasPrefix("text_encoder.") })
        XCTAssertEqual(checkpoint.shape("text_encoder_2.text_projection.weight"), [6, 8])
    }

    func testSDXLWithoutItsSecondTextEncoderOrProjectionIsRefusedNamingWhatIsMissing() throws {
        let noBigG = try rewrite("no-bigg.safetensors") { $0.hasPrefix("conditioner.embedders.1.") ? nil : $0 }
        XCTAssertThrowsError(try Checkpoint.open(noBigG)) { error in
            let text = "\(error)"
            for fragment in [noBigG.path, "SDXL", "second text encoder", "OpenCLIP ViT-bigG", "conditioner.embedders.1.model.*"] {
                XCTAssert(text.contains(fragment), "'\(text)' lacks '\(fragment)'")
            }
        }
        let noProjection = try rewrite("no-projection.safetensors") { $0.hasSuffix("embedders.1.model.text_projection") ? nil : $0 }
        XCTAssertThrowsError(try Checkpoint.open(noProjection)) { error in
            let text = "\(error)"
            for fragment in [noProjection.path, "SDXL", "conditioner.embedders.1.model.text_projection"] {
                XCTAssert(text.contains(fragment), "'\(text)' lacks '\(fragment)'")
            }
        }
    }

    /// A config whose `addition_time_embed_dim` does not fill add_embedding's input with the pooled embedding and the
    /// time ids is refused at load, naming the file and the widths (every UNet call would otherwise stop on it).
    func testAddedConditioningWidthThatDoesNotFitIsRefusedAtLoad() throws {
        let folder = directory.appendingPathComponent("sdxl")
        try FileManager.default.copyItem(at: ModelFixtures.folder("sdxl").appendingPathComponent("diffusers"), to: folder)
        let config = folder.appendingPathComponent("unet/config.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any])
        XCTAssertEqual(json["addition_time_embed_dim"] as? Int, 8)   // make_sdxl_fixtures.py: 6 pooled + 6 ids × 8 = 54
        json["addition_time_embed_dim"] = 4
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        XCTAssertThrowsError(try StableDiffusionModels.load(folder)) { error in
            let text = "\(error)"
            for fragment in [config.path, "54 inputs", "addition_time_embed_dim", "make 30"] {
                XCTAssert(text.contains(fragment), "'\(text)' lacks '\(fragment)'")
            }
        }
    }

    /// A UNet key of the SDXL layout that matches no rule is named, as for SD 1.x.
    func testStrayUNetKeyIsNamed() throws {
        let url = try rewrite("stray.safetensors") { $0 == "model.diffusion_model.label_emb.0.2.bias" ? "model.diffusion_model.label_emb.0.3.bias" : $0 }
        XCTAssertThrowsError(try Checkpoint.open(url)) { error in
            XCTAssert("\(error)".contains("model.diffusion_model.label_emb.0.3.bias"), "\(error)")
        }
    }
}
