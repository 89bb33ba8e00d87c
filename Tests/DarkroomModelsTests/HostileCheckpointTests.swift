import DarkroomModels
import DarkroomWeights
import Foundation
import XCTest

/// Checkpoints and configs that used to trap (index out of range, division by zero, precondition) now throw
/// errors naming the file, the key and the problem. Each case rewrites the sd1 (or sd1 diffusers) fixture.
final class HostileCheckpointTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// The sd1 single file with `edit` applied to every (key, shape, values); nil drops the tensor.
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

    /// A copy of the sd1 diffusers folder with `file`'s JSON object edited.
    func diffusersCopy(editing file: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let folder = directory.appendingPathComponent("sd1-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: ModelFixtures.diffusers("sd1"), to: folder)
        let url = folder.appendingPathComponent(file)
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return folder
    }

    func loadError(_ url: URL, config: URL? = ModelFixtures.diffusers("sd1")) -> WeightsError? {
        do {
            _ = try StableDiffusionModels.load(url, config: config)
            XCTFail("\(url.lastPathComponent) loaded")
            return nil
        } catch let error as WeightsError {
            return error
        } catch {
            XCTFail("\(error)")
            return nil
        }
    }

    func testMalformedLDMKeyIsNamed() throws {
        for stray in ["model.diffusion_model.time_embed", "model.diffusion_model.input_blocks.99999999999999999999.0.weight",
                      "model.diffusion_model.output_blocks.-1.0.in_layers.0.weight", "model.diffusion_model.out"] {
            let url = try rewrite("stray.safetensors") { key, shape, values in
                key == "model.diffusion_model.time_embed.0.bias" ? (stray, shape, values) : (key, shape, values)
            }
            XCTAssertEqual(loadError(url), .unrecognizedKey(key: stray, path: url.path), stray)
            try FileManager.default.removeItem(at: url)
        }
        // A VAE resnet key cut short (`block.1` without a layer) is ignored, and then missing.
        let short = try rewrite("short.safetensors") { key, shape, values in
            key == "first_stage_model.encoder.down.0.block.1.conv1.weight" ? ("first_stage_model.encoder.down.0.block.1", shape, values) : (key, shape, values)
        }
        XCTAssertEqual(loadError(short), .missingTensor(key: "vae.encoder.down_blocks.0.resnets.1.conv1.weight", source: short.path))
    }

    /// A UNet weight of the right element count but the wrong shape; a VAE attention projection with a 3×3
    /// kernel (used to be reshaped blindly and trap).
    func testWrongShapesNameKeyAndBothShapes() throws {
        let key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
        var original: [Int] = []
        let url = try rewrite("q.safetensors") { k, shape, values in
            guard k == key else { return (k, shape, values) }
            original = shape
            return (k, [shape[0] * shape[1] / 4, 4], values)                 // same element count, wrong shape
        }
        guard case let .unexpectedShape(canonical, expected, found, _)? = loadError(url) else { return XCTFail() }
        XCTAssertEqual(canonical, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight")
        XCTAssertEqual(found, [original[0] * original[1] / 4, 4])
        XCTAssertEqual(expected, "\(original)")

        let attention = "first_stage_model.decoder.mid.attn_1.q.weight"
        let kernel = try rewrite("kernel.safetensors") { k, shape, values in
            k == attention ? (k, [shape[0], shape[1], 3, 3], Array(repeating: 0.01, count: shape[0] * shape[1] * 9)) : (k, shape, values)
        }
        guard case let .unexpectedShape(name, _, shape, _)? = loadError(kernel) else { return XCTFail() }
        XCTAssertEqual(name, "vae.decoder.mid_block.attentions.0.to_q.weight")
        XCTAssertEqual(shape.suffix(2), [3, 3])
    }

    func testNonFiniteWeightsAreFoundAtLoad() throws {
        let key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
        let nan = try rewrite("nan.safetensors") { k, shape, values in
            guard k == key else { return (k, shape, values) }
            var v = values; v[7] = .nan; return (k, shape, v)
        }
        XCTAssertEqual(loadError(nan), .nonFiniteWeights(key: "unet.down_blocks.0.resnets.0.conv1.weight", source: nan.path, element: 7))
        let inf = try rewrite("inf.safetensors") { k, shape, values in
            guard k == "first_stage_model.decoder.conv_out.bias" else { return (k, shape, values) }
            var v = values; v[0] = -.infinity; return (k, shape, v)
        }
        XCTAssertEqual(loadError(inf), .nonFiniteWeights(key: "vae.decoder.conv_out.bias", source: inf.path, element: 0))
    }

    /// A load records which tensors it found finite (`ScanRecord`); the record holds only for the same file: one
    /// rewritten at the same path with a NaN is scanned again and refused.
    func testScanRecordsHoldOnlyForTheSameFile() throws {
        let records = directory.appendingPathComponent("scanned")
        SafetensorsFile.scanRecordFolder = records
        defer { SafetensorsFile.scanRecordFolder = nil }
        let key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
        let url = try rewrite("model.safetensors") { k, shape, values in (k, shape, values) }
        _ = try StableDiffusionModels.load(url, config: ModelFixtures.diffusers("sd1"))
        let files = try FileManager.default.contentsOfDirectory(atPath: records.path)
        XCTAssertEqual(files.count, 1, "\(files)")
        let text = try String(contentsOf: records.appendingPathComponent(files[0]), encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("darkroom scan record 1\t\(url.path)\t"), text)
        XCTAssertTrue(text.contains("\n\(key)\n"), "the UNet's conv1 is recorded as scanned")
        _ = try StableDiffusionModels.load(url, config: ModelFixtures.diffusers("sd1"))   // from the record

        try FileManager.default.removeItem(at: url)
        let nan = try rewrite("model.safetensors") { k, shape, values in
            guard k == key else { return (k, shape, values) }
            var v = values; v[7] = .nan; return (k, shape, v)
        }
        XCTAssertEqual(loadError(nan), .nonFiniteWeights(key: "unet.down_blocks.0.resnets.0.conv1.weight", source: nan.path, element: 7))
    }

    /// The UNet's cross-attention reads a context twice as wide as the text encoder gives.
    func testTextEncoderWidthMustMatchCrossAttention() throws {
        let url = try rewrite("context.safetensors") { k, shape, values in
            guard k.contains("attn2.to_k.weight") || k.contains("attn2.to_v.weight") else { return (k, shape, values) }
            return (k, [shape[0], shape[1] * 2], values + values)
        }
        guard case let .incompatibleComponents(source, detail)? = loadError(url) else { return XCTFail() }
        XCTAssertEqual(source, url.path)
        XCTAssert(detail.contains("cross-attention"), detail)
    }

    /// A VAE with 8 latent channels under a UNet that predicts 4.
    func testLatentChannelsMustMatch() throws {
        let url = try rewrite("latent.safetensors") { k, shape, values in
            k == "first_stage_model.post_quant_conv.weight" ? (k, [8, 8, 1, 1], Array(repeating: 0.01, count: 64)) : (k, shape, values)
        }
        guard case let .incompatibleComponents(_, detail)? = loadError(url) else { return XCTFail() }
        XCTAssert(detail.contains("8 latent channels"), detail)
    }

    func testHeadCountsThatCannotSplitTheWidthAreRefused() throws {
        // The sd1 fixture's UNet levels are 32 and 64 channels wide; its text encoder 32.
        for heads in [0, -2, 3] as [Any] {
            let folder = try diffusersCopy(editing: "unet/config.json") { $0["attention_head_dim"] = heads }
            guard case let .invalidConfig(path, detail)? = loadError(folder, config: nil) else { return XCTFail("\(heads)") }
            XCTAssert(path.hasSuffix("unet/config.json (num_attention_heads / attention_head_dim)"), path)
            XCTAssert(detail.contains("\(heads) attention heads"), detail)
        }
        let perLevel = try diffusersCopy(editing: "unet/config.json") { $0["attention_head_dim"] = [8, 0] }
        XCTAssertNotNil(loadError(perLevel, config: nil))
        for heads in [0, -1, 5] {
            let folder = try diffusersCopy(editing: "text_encoder/config.json") { $0["num_attention_heads"] = heads }
            guard case let .invalidConfig(path, detail)? = loadError(folder, config: nil) else { return XCTFail("\(heads)") }
            XCTAssert(path.hasSuffix("text_encoder/config.json"), path)
            XCTAssert(detail.contains("num_attention_heads is \(heads)"), detail)
        }
        // The same from an A1111 .yaml beside a single file.
        let single = directory.appendingPathComponent("withyaml.safetensors")
        try FileManager.default.copyItem(at: ModelFixtures.singleFile("sd1"), to: single)
        let yaml = directory.appendingPathComponent("withyaml.yaml")
        try "model:\n  params:\n    unet_config:\n      params:\n        num_heads: 3\n".write(to: yaml, atomically: true, encoding: .utf8)
        guard case let .invalidConfig(path, _)? = loadError(single, config: nil) else { return XCTFail() }
        XCTAssertEqual(path, yaml.path + " (num_heads / num_head_channels)")
    }

    func testVAEScalingFactorMustBePositive() throws {
        let folder = try diffusersCopy(editing: "vae/config.json") { $0["scaling_factor"] = 0 }
        guard case let .invalidConfig(path, _)? = loadError(folder, config: nil) else { return XCTFail() }
        XCTAssert(path.hasSuffix("vae/config.json"), path)
    }
}
