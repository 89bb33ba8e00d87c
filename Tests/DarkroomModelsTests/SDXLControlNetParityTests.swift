import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// `Tests/Fixtures/controlnet_sdxl/`, written by `tools/reference/make_sdxl_controlnet_fixtures.py` (diffusers 0.42.1):
/// SDXL ControlNets for the sdxl model fixture. `sdxl_a` is `ControlNetModel.from_unet(sdxl UNet)` (added conditioning
/// "text_time", transformer layers (·, 2), a first level without attention) in a diffusers folder; `sdxl_b` the same
/// skip widths with one transformer layer and `mid_block_type: "UNetMidBlock2D"` (no mid attention), as an LDM single
/// file (`control_model.*`, `label_emb.0.{0,2}`). `expected.safetensors` holds diffusers' residuals on fixed inputs
/// (with the sdxl fixture's `text_embeds` and `time_ids`), in guess mode at scale 0.8, and the sdxl UNet with them.
enum SDXLControlNetFixtures {
    static let root = ModelFixtures.root.deletingLastPathComponent().appendingPathComponent("controlnet_sdxl")
    static let a = root.appendingPathComponent("sdxl_a/diffusers")
    static let b = root.appendingPathComponent("sdxl_b.safetensors")

    static func expected() throws -> SafetensorsFile { try SafetensorsFile(url: root.appendingPathComponent("expected.safetensors")) }

    /// A copy of `source`'s tensors in `directory`, with `edit` deciding per tensor: nil drops it, else (shape, values).
    static func rewrite(_ source: URL, to name: String, in directory: URL,
                        _ edit: (TensorInfo, [Float]) -> (shape: [Int], floats: [Float])?) throws -> URL {
        let file = try SafetensorsFile(url: source)
        var writer = SafetensorsWriter()
        for info in file.tensorInfos {
            guard let (shape, floats) = edit(info, try file.floats(info.name)) else { continue }
            try writer.add(info.name, shape: shape, floats: floats, as: .f16)
        }
        let url = directory.appendingPathComponent(name)
        try writer.write(to: url)
        return url
    }
}

final class SDXLControlNetParityTests: XCTestCase {
    /// Down and mid residuals within 1e-4 of diffusers (relative to each tensor's largest value), plain and in guess
    /// mode, and the sdxl UNet with them added within 1e-4 (make_sdxl_controlnet_fixtures.py, model_refs, `sdxl_a`
    /// and `sdxl_b`).
    func testResidualsMatchDiffusers() throws {
        let expected = try SDXLControlNetFixtures.expected()
        let sdxl = try ModelFixtures.load("sdxl", .diffusers)
        for (name, url) in [("sdxl_a", SDXLControlNetFixtures.a), ("sdxl_b", SDXLControlNetFixtures.b)] {
            let controlNet = try sdxl.loadControlNet(url)
            XCTAssertNotNil(controlNet.config.unet.addedConditioning, name)
            let sample = try expected.tensor("\(name).sample"), context = try expected.tensor("\(name).context")
            let t = try expected.tensor("\(name).t").scalars, cond = try expected.tensor("\(name).cond")
            let added = UNetAddedConditioning(textEmbeds: try expected.tensor("\(name).text_embeds"),
                                              timeIDs: try expected.tensor("\(name).time_ids"))
            var worst: Float = 0
            func check(_ got: Tensor, _ key: String) throws {
                let want = try expected.tensor(key)
                assertClose(got, want, relative: 1e-4, "\(name) \(key)")
                let scale = want.scalars.reduce(0) { max($0, abs($1)) }
                worst = max(worst, zip(got.scalars, want.scalars).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0)
            }

            let residuals = controlNet(sample, timesteps: t, context: context, added: added, image: cond)
            XCTAssertEqual(residuals.down.count, expected.tensorNames.filter { $0.hasPrefix("\(name).down.") }.count, name)
            for (i, r) in residuals.down.enumerated() { try check(r, "\(name).down.\(i)") }
            try check(residuals.mid, "\(name).mid")

            let guess = controlNet(sample, timesteps: t, context: context, added: added, image: cond, scale: 0.8, guessMode: true)
            for (i, r) in guess.down.enumerated() { try check(r, "\(name).guess.down.\(i)") }
            try check(guess.mid, "\(name).guess.mid")

            try check(sdxl.unet(sample, timesteps: t, context: context, added: added, residuals: residuals), "\(name).unet_out")
            print("\(name): max |Δ| / max |expected| against diffusers \(worst)")
        }
    }

    /// The small ControlNet's shape comes from its tensors: one transformer layer where the UNet has two, and a mid
    /// block of one resnet without attention.
    func testSmallControlNetShapeIsReadFromTheFile() throws {
        let sdxl = try ModelFixtures.load("sdxl", .diffusers)
        let b = try sdxl.loadControlNet(SDXLControlNetFixtures.b).config.unet
        XCTAssertEqual(b.levels.map(\.transformerDepth), [0, 1])
        XCTAssertEqual(sdxl.unet.config.levels.map(\.transformerDepth), [0, 2])
        XCTAssertFalse(b.midBlockHasAttention)
        XCTAssertEqual(b.addedConditioning, sdxl.unet.config.addedConditioning)
        XCTAssertEqual(try Checkpoint.openControlNet(SDXLControlNetFixtures.b).family, .sdxl)
        XCTAssertEqual(try Checkpoint.openControlNet(SDXLControlNetFixtures.a).family, .sdxl)

        // Without its one transformer (`input_blocks.3.1`, level 1) nothing attends: the text width is the model's
        // (diffusers' `cross_attention_dim`), and the ControlNet still loads and runs.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-xlcn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bare = try SDXLControlNetFixtures.rewrite(SDXLControlNetFixtures.b, to: "no_attention.safetensors", in: directory) { info, floats in
            info.name.hasPrefix("control_model.input_blocks.3.1.") ? nil : (info.shape, floats)
        }
        let controlNet = try sdxl.loadControlNet(bare)
        XCTAssertEqual(controlNet.config.unet.levels.map(\.hasAttention), [false, false])
        XCTAssertEqual(controlNet.config.unet.contextDim, 12)
        let expected = try SDXLControlNetFixtures.expected()
        let residuals = controlNet(try expected.tensor("sdxl_b.sample"), timesteps: [981], context: try expected.tensor("sdxl_b.context"),
                                   added: UNetAddedConditioning(textEmbeds: try expected.tensor("sdxl_b.text_embeds"),
                                                                timeIDs: try expected.tensor("sdxl_b.time_ids")),
                                   image: try expected.tensor("sdxl_b.cond"))
        XCTAssert((residuals.down + [residuals.mid]).allSatisfy { $0.scalars.allSatisfy(\.isFinite) })
    }

    /// An SD 1.x ControlNet on SDXL and an SDXL ControlNet on SD 1.x are refused naming the file, the model and the
    /// cross-attention widths; an SDXL-sized ControlNet without added conditioning, or with another add_embedding, is
    /// refused naming `add_embedding`.
    func testControlNetsOfAnotherFamilyAreRefused() throws {
        let sdxl = try ModelFixtures.load("sdxl", .diffusers), sd1 = try ModelFixtures.load("sd1", .diffusers)
        let sd1ControlNet = ControlNetFixtures.root.appendingPathComponent("sd1_a.safetensors")
        for (models, url, theirs, ours) in [(sdxl, sd1ControlNet, 4, 12), (sd1, SDXLControlNetFixtures.a, 12, 4)] {
            XCTAssertThrowsError(try models.loadControlNet(url)) { error in
                guard case let WeightsError.controlNetMismatch(path, model, detail) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(path, url.path)
                XCTAssertEqual(model, models.checkpoint.sourceName)
                XCTAssert(detail.contains("\(theirs)-wide") && detail.contains("takes \(ours)") && detail.contains("another model family"), detail)
            }
        }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-xlcn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let plain = try SDXLControlNetFixtures.rewrite(SDXLControlNetFixtures.b, to: "no_added.safetensors", in: directory) { info, floats in
            info.name.contains("label_emb") ? nil : (info.shape, floats)
        }
        XCTAssertThrowsError(try sdxl.loadControlNet(plain)) { error in
            guard case let WeightsError.controlNetMismatch(path, _, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, plain.path)
            XCTAssert(detail.contains("no added conditioning") && detail.contains("controlnet.add_embedding.linear_1.weight"), detail)
        }
        let wider = try SDXLControlNetFixtures.rewrite(SDXLControlNetFixtures.b, to: "wide_added.safetensors", in: directory) { info, floats in
            info.name.hasSuffix("label_emb.0.0.weight")
                ? ([info.shape[0], info.shape[1] + 8], Array(repeating: 0.01, count: info.shape[0] * (info.shape[1] + 8)))
                : (info.shape, floats)
        }
        XCTAssertThrowsError(try sdxl.loadControlNet(wider)) { error in
            guard case let WeightsError.controlNetMismatch(path, _, detail) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, wider.path)
            XCTAssert(detail.contains("62 inputs") && detail.contains("takes 54"), detail)
        }
    }
}
