import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// `Tests/Fixtures/controlnet/`, written by `tools/reference/make_controlnet_fixtures.py` (diffusers 0.42.1): random
/// ControlNets made with `ControlNetModel.from_unet` from the sd1 and sd2v fixture UNets, every parameter re-drawn
/// (zero convolutions included). `expected.safetensors` holds diffusers' residuals on fixed inputs (`<cn>.down.<i>`,
/// `<cn>.mid`; guess mode at scale 0.8: `<cn>.guess.*`) and the fixture UNet's output with them added (`<cn>.unet_out`).
enum ControlNetFixtures {
    static let root = ModelFixtures.root.deletingLastPathComponent().appendingPathComponent("controlnet")

    /// (fixture name in expected.safetensors, file or folder, model variant it was made from)
    static let layouts: [(name: String, url: URL, variant: String)] = [
        ("sd1_a", root.appendingPathComponent("sd1_a/diffusers"), "sd1"),          // diffusers folder, F16
        ("sd1_a", root.appendingPathComponent("sd1_a.safetensors"), "sd1"),        // control_model.* keys, F16
        ("sd1_b", root.appendingPathComponent("sd1_b.safetensors"), "sd1"),        // control_model.* keys, F32
        ("sd2v", root.appendingPathComponent("sd2v.safetensors"), "sd2v"),         // bare LDM keys, F16
    ]

    static func expected() throws -> SafetensorsFile { try SafetensorsFile(url: root.appendingPathComponent("expected.safetensors")) }
}

final class ControlNetParityTests: XCTestCase {
    /// Residuals within 1e-4 of diffusers (relative to each tensor's largest value) from every layout, plain and in
    /// guess mode, and the UNet with them added within 1e-4.
    func testResidualsMatchDiffusersInEveryLayout() throws {
        let expected = try ControlNetFixtures.expected()
        var models: [String: StableDiffusionModels] = [:]
        for (name, url, variant) in ControlNetFixtures.layouts {
            let sd = try models[variant] ?? ModelFixtures.load(variant, .diffusers)
            models[variant] = sd
            let controlNet = try sd.loadControlNet(url)
            let sample = try expected.tensor("\(name).sample"), context = try expected.tensor("\(name).context")
            let t = try expected.tensor("\(name).t").scalars, cond = try expected.tensor("\(name).cond")
            let label = url.lastPathComponent

            let residuals = controlNet(sample, timesteps: t, context: context, image: cond)
            XCTAssertEqual(residuals.down.count, expected.tensorNames.filter { $0.hasPrefix("\(name).down.") }.count, label)
            for (i, r) in residuals.down.enumerated() {
                assertClose(r, try expected.tensor("\(name).down.\(i)"), relative: 1e-4, "\(label) down \(i)")
            }
            assertClose(residuals.mid, try expected.tensor("\(name).mid"), relative: 1e-4, "\(label) mid")

            let guess = controlNet(sample, timesteps: t, context: context, image: cond, scale: 0.8, guessMode: true)
            for (i, r) in guess.down.enumerated() {
                assertClose(r, try expected.tensor("\(name).guess.down.\(i)"), relative: 1e-4, "\(label) guess down \(i)")
            }
            assertClose(guess.mid, try expected.tensor("\(name).guess.mid"), relative: 1e-4, "\(label) guess mid")

            let out = sd.unet(sample, timesteps: t, context: context, residuals: residuals)
            assertClose(out, try expected.tensor("\(name).unet_out"), relative: 1e-4, "\(label) UNet with residuals")
        }
    }

    /// The LDM single file converts to exactly the diffusers folder's names (`LDMKeyMap.controlNet`).
    func testLDMKeysConvertToTheDiffusersNames() throws {
        let folder = try Checkpoint.openControlNet(ControlNetFixtures.root.appendingPathComponent("sd1_a/diffusers"))
        let file = try Checkpoint.openControlNet(ControlNetFixtures.root.appendingPathComponent("sd1_a.safetensors"))
        XCTAssertEqual(file.keys, folder.keys)
        XCTAssert(file.keys.contains("controlnet.controlnet_cond_embedding.conv_out.weight"))
        XCTAssert(file.keys.contains("controlnet.controlnet_down_blocks.8.weight"))
        XCTAssert(file.keys.contains("controlnet.controlnet_mid_block.bias"))
        for key in ["controlnet.controlnet_cond_embedding.blocks.5.weight", "controlnet.down_blocks.2.attentions.0.proj_in.weight"] {
            XCTAssertEqual(file.shape(key), folder.shape(key), key)
        }
    }

    /// A ControlNet for another family (another cross-attention width), or one made from another UNet, fails to load
    /// with an error naming the file, the model and both sides. (The fixture families share a 4-wide context, so the
    /// other family is sd1_a with its cross-attention made 8 wide.)
    func testControlNetThatDoesNotFitIsRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-cn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try SafetensorsFile(url: ControlNetFixtures.root.appendingPathComponent("sd1_a.safetensors"))
        var writer = SafetensorsWriter()
        for info in source.tensorInfos {
            if info.name.hasSuffix("attn2.to_k.weight") || info.name.hasSuffix("attn2.to_v.weight") {
                try writer.add(info.name, shape: [info.shape[0], 8], floats: Array(repeating: 0.01, count: info.shape[0] * 8), as: .f16)
            } else {
                try writer.add(info.name, shape: info.shape, floats: try source.floats(info.name), as: .f16)
            }
        }
        let wide = directory.appendingPathComponent("control_wide.safetensors")
        try writer.write(to: wide)

        let sd1 = try ModelFixtures.load("sd1", .diffusers)
        XCTAssertThrowsError(try sd1.loadControlNet(wide)) { error in
            guard case let WeightsError.controlNetMismatch(path, model, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, wide.path)
            XCTAssertEqual(model, ModelFixtures.diffusers("sd1").path)
            XCTAssert(detail.contains("8-wide") && detail.contains("takes 4") && detail.contains("another model family"), detail)
        }
        let sd2 = ControlNetFixtures.root.appendingPathComponent("sd2v.safetensors")
        XCTAssertThrowsError(try sd1.loadControlNet(sd2)) { error in
            XCTAssert("\(error)".contains("sd2v.safetensors"), "\(error)")
            XCTAssert("\(error)".contains("skip connections"), "\(error)")
        }
        let inpaint = try ModelFixtures.load("sd1_inpaint", .diffusers)
        XCTAssertThrowsError(try inpaint.loadControlNet(ControlNetFixtures.root.appendingPathComponent("sd1_a.safetensors"))) { error in
            XCTAssert("\(error)".contains("sd1_a.safetensors"), "\(error)")
            XCTAssert("\(error)".contains("skip connections"), "\(error)")
        }
    }

    /// A key under `control_model.` that no rule converts is named; pickles and files without ControlNet keys are refused.
    func testStrayKeysPicklesAndOtherFilesAreRefused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-cn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = try SafetensorsFile(url: ControlNetFixtures.root.appendingPathComponent("sd1_a.safetensors"))
        var writer = SafetensorsWriter()
        for info in source.tensorInfos { try writer.add(info.name, shape: info.shape, floats: try source.floats(info.name), as: .f16) }
        try writer.add("control_model.input_hint_block.3.weight", shape: [1], floats: [0], as: .f16)   // a SiLU has no tensor
        let stray = directory.appendingPathComponent("stray.safetensors")
        try writer.write(to: stray)
        XCTAssertThrowsError(try Checkpoint.openControlNet(stray)) {
            XCTAssertEqual($0 as? WeightsError, .unrecognizedKey(key: "control_model.input_hint_block.3.weight", path: stray.path))
        }
        let pickle = directory.appendingPathComponent("control_v11p_sd15_canny.pth")
        try Data([0x80, 0x02]).write(to: pickle)
        XCTAssertThrowsError(try Checkpoint.openControlNet(pickle)) { XCTAssertEqual($0 as? WeightsError, .pickleCheckpoint(path: pickle.path)) }
        XCTAssertThrowsError(try Checkpoint.openControlNet(ModelFixtures.singleFile("sd1"))) { error in
            guard case WeightsError.unknownModelFamily = error else { return XCTFail("\(error)") }
        }
    }
}
