import DarkroomModels
import DarkroomTensor
import DarkroomTestSupport
import DarkroomWeights
import Foundation
import XCTest

/// Upscaler networks against spandrel 0.4.2 / PyTorch (tools/reference/make_upscaler_fixtures.py →
/// Tests/Fixtures/upscalers): each tiny random model loaded from its file, its architecture and sizes detected
/// from the keys and shapes, and its forward within 1e-4 of spandrel's (relative to the output's largest value).
/// The detected architecture, scale and the nf/nb tags are compared with what spandrel detected (expected.json).
final class UpscalerParityTests: XCTestCase {
    static let folder = ModelFixtures.root.deletingLastPathComponent().appendingPathComponent("upscalers")

    func reference() throws -> (expected: SafetensorsFile, models: [String: [String: Any]]) {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.folder.appendingPathComponent("expected.json"))) as? [String: Any]
        let models = try XCTUnwrap(json?["models"] as? [String: [String: Any]])
        return (try SafetensorsFile(url: Self.folder.appendingPathComponent("expected.safetensors")), models)
    }

    func testEveryFixtureModelMatchesSpandrel() throws {
        let (expected, models) = try reference()
        XCTAssertEqual(models.count, 5)
        for (name, described) in models.sorted(by: { $0.key < $1.key }) {
            let model = try UpscalerModel.load(Self.folder.appendingPathComponent("\(name).safetensors"))
            XCTAssertEqual(model.scale, described["scale"] as? Int, name)
            let tags = described["tags"] as? [String] ?? []
            switch model.network {
            case .rrdbNet(let net):
                XCTAssertEqual(described["architecture"] as? String, "ESRGAN", name)
                XCTAssert(tags.contains("\(net.config.features)nf") && tags.contains("\(net.config.blocks)nb"), "\(name): \(tags) vs \(net.config)")
                XCTAssertEqual(tags.contains("unshuffle"), net.config.unshuffle > 1, name)
                XCTAssertEqual(net.config.growth, 32, name)
            case .compact(let net):
                XCTAssertEqual(described["architecture"] as? String, "Compact", name)
                XCTAssertEqual(tags, ["\(net.config.features)nf", "\(net.config.convolutions)nc"], name)
            }
            let input = try expected.tensor(try XCTUnwrap(described["input"] as? String))
            let want = try expected.tensor("\(name).output")
            let got = model(input)
            assertClose(got, want, relative: 1e-4, name)
            let scale = want.scalars.reduce(0) { max($0, abs($1)) }
            let worst = zip(got.scalars, want.scalars).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            print("\(name): max |Δ| / max |reference| = \(worst / scale)")   // the report's parity figures
        }
    }

    func testLayoutsAreDetectedFromKeys() throws {
        let layouts = try ["rrdb_x4_new", "rrdb_x4_old", "rrdb_x2_unshuffle", "compact_x4"].map {
            try UpscalerModel.load(Self.folder.appendingPathComponent("\($0).safetensors")).layout
        }
        XCTAssertEqual(layouts, [.realESRGAN, .esrgan, .realESRGAN, .compact])
        // The old layout's keys, converted one at a time (model.<3n+2>/<3n+4> depend on the upsampling count).
        XCTAssertEqual(UpscalerKeyMap.canonical("model.1.sub.0.RDB2.conv5.0.weight", layout: .esrgan, upsamplings: 2), "body.0.rdb2.conv5.weight")
        XCTAssertEqual(UpscalerKeyMap.canonical("model.1.sub.23.bias", layout: .esrgan, upsamplings: 2), "conv_body.bias")
        XCTAssertEqual(UpscalerKeyMap.canonical("model.6.weight", layout: .esrgan, upsamplings: 2), "conv_up2.weight")
        XCTAssertEqual(UpscalerKeyMap.canonical("model.8.weight", layout: .esrgan, upsamplings: 2), "conv_hr.weight")
        XCTAssertEqual(UpscalerKeyMap.canonical("model.10.bias", layout: .esrgan, upsamplings: 2), "conv_last.bias")
        XCTAssertEqual(UpscalerKeyMap.canonical("model.7.weight", layout: .esrgan, upsamplings: 1), "conv_last.weight")
        XCTAssertNil(UpscalerKeyMap.canonical("model.9.weight", layout: .esrgan, upsamplings: 2))
        XCTAssertEqual(UpscalerKeyMap.canonical("RRDB_trunk.3.RDB1.conv2.weight", layout: .bsrgan), "body.3.rdb1.conv2.weight")
        XCTAssertEqual(UpscalerKeyMap.canonical("HRconv.bias", layout: .bsrgan), "conv_hr.bias")
        XCTAssertEqual(UpscalerKeyMap.canonical("upconv2.weight", layout: .bsrgan), "conv_up2.weight")
        XCTAssertNil(UpscalerKeyMap.canonical("body.0.rdb4.conv1.weight", layout: .realESRGAN))
        XCTAssertNil(UpscalerKeyMap.canonical("body.x.weight", layout: .compact))
    }

    // MARK: Errors, never traps

    var scratch: URL!
    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("upscalers-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A copy of a fixture model with its tensors changed by `edit` (name → new name or nil to drop, values).
    func rewritten(_ name: String, as fileName: String, edit: (String, inout [Float]) -> String?) throws -> URL {
        let source = try SafetensorsFile(url: Self.folder.appendingPathComponent("\(name).safetensors"))
        var writer = SafetensorsWriter()
        for info in source.tensorInfos {
            var values = try source.floats(info.name)
            guard let newName = edit(info.name, &values) else { continue }
            try writer.add(newName, shape: info.shape, floats: values)
        }
        let url = scratch.appendingPathComponent(fileName)
        try writer.write(to: url)
        return url
    }

    func assertThrows(_ url: URL, file: StaticString = #filePath, line: UInt = #line, _ check: (WeightsError) -> Bool) {
        do { _ = try UpscalerModel.load(url); XCTFail("loaded \(url.lastPathComponent)", file: file, line: line) } catch let error as WeightsError {
            XCTAssert(check(error), "\(error)", file: file, line: line)
        } catch { XCTFail("\(error)", file: file, line: line) }
    }

    func testPickleIsRefusedWithTheConversionAdvice() throws {
        let url = scratch.appendingPathComponent("RealESRGAN_x4plus.pth")
        try Data("PK\u{3}\u{4} a zip of pickles".utf8).write(to: url)
        assertThrows(url) { error in
            guard case .pickleUpscaler = error else { return false }
            return error.description.contains("params_ema") && error.description.contains("save_file")
        }
    }

    func testFilesThatAreNoUpscalerAreNamed() throws {
        let checkpoint = ModelFixtures.singleFile("sd1")
        assertThrows(checkpoint) { if case .notAnUpscaler = $0 { return $0.description.contains("Stable Diffusion") }; return false }
        let lora = Self.folder.deletingLastPathComponent().appendingPathComponent("lora/kohya_b.safetensors")
        assertThrows(lora) { if case .notAnUpscaler = $0 { return $0.description.contains("marker keys") }; return false }
        // ESRGAN+ (1×1 residual convolutions in each dense block) is named as unsupported.
        let plus = try rewritten("rrdb_x4_old", as: "plus.safetensors") { name, _ in
            name == "model.1.sub.0.RDB1.conv1.0.bias" ? "model.1.sub.0.RDB1.conv1x1.weight" : name
        }
        assertThrows(plus) { if case .unsupportedUpscaler = $0 { return $0.description.contains("ESRGAN+") }; return false }
        // A key that belongs to no rule of the layout.
        let stray = try rewritten("rrdb_x4_new", as: "stray.safetensors") { name, _ in
            name == "conv_hr.bias" ? "conv_hr.scale" : name
        }
        assertThrows(stray) { if case .unrecognizedUpscalerKey(let key, _, _) = $0 { return key == "conv_hr.scale" }; return false }
        // A missing tensor is named by its canonical key.
        let missing = try rewritten("compact_x4", as: "missing.safetensors") { name, _ in name == "body.2.bias" ? nil : name }
        assertThrows(missing) { if case .missingTensor(let key, _) = $0 { return key == "body.2.bias" }; return false }
    }

    func testNaNWeightsAreFoundAtLoad() throws {
        let url = try rewritten("compact_x4", as: "nan.safetensors") { name, values in
            if name == "body.4.weight" { values[7] = .nan }
            return name
        }
        assertThrows(url) { if case .nonFiniteWeights(let key, _, let element) = $0 { return key == "body.4.weight" && element == 7 }; return false }
    }
}
