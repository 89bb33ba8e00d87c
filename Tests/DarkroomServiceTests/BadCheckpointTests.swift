import DarkroomService
import DarkroomWeights
import Foundation
import XCTest

/// Checkpoints that trapped the service (issue 11), each named by one job beside a good job, run by
/// the real `darkroom run --once` with its worker: every bad one fails with a clear `model` (or
/// `non_finite`) error naming the problem, never as a crash, and the good job is served.
final class BadCheckpointTests: XCTestCase {
    var root: URL!
    var inbox: URL { root.appendingPathComponent("Inbox") }
    var models: URL { root.appendingPathComponent("Models") }
    let fixtures = JobParityTests.fixtures

    override func setUpWithError() throws {
        try DaemonProcessTests.requireBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-badmodels-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { if let root, ProcessInfo.processInfo.environment["KEEP"] == nil { try? FileManager.default.removeItem(at: root) } }

    /// A copy of the sd1 diffusers fixture named `name`, its UNet tensors passed through `edit`
    /// (return nil to keep a tensor as it is), and its JSON configs through `configs`.
    func variant(_ name: String, unet edit: (String, [Int], [Float]) -> (shape: [Int], floats: [Float])? = { _, _, _ in nil },
                 extra: [(String, [Int], [Float])] = [], configs: [String: (inout [String: Any]) -> Void] = [:]) throws {
        let folder = models.appendingPathComponent(name)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1/diffusers"), to: folder)
        let unet = folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        let file = try SafetensorsFile(url: unet)
        var writer = SafetensorsWriter()
        for info in file.tensorInfos {
            if let (shape, values) = edit(info.name, info.shape, try file.floats(info.name)) {
                try writer.add(info.name, shape: shape, floats: values, as: info.dtype)
            } else {
                try writer.addRaw(info.name, dtype: info.dtype, shape: info.shape, bytes: try file.withRawBytes(info.name) { Array($0) })
            }
        }
        for (key, shape, floats) in extra { try writer.add(key, shape: shape, floats: floats) }
        try FileManager.default.removeItem(at: unet)
        try writer.write(to: unet)
        for (path, change) in configs {
            let url = folder.appendingPathComponent(path)
            var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
            change(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: url)
        }
    }

    func job(_ stem: String, model: String, steps: Int = 2) throws {
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("pipelines/inputs/photo.png"), to: inbox.appendingPathComponent("\(stem).png"))
        try Data(#"{"mode": "img2img", "steps": \#(steps), "seed": 1, "model": "\#(model)"}"#.utf8).write(to: inbox.appendingPathComponent("\(stem).json"))
    }

    func testBadCheckpointsFailTheirJobsClearly() throws {
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1/diffusers"), to: models.appendingPathComponent("good"))
        try job("good", model: "good")
        // Weights containing NaN.
        try variant("nan", unet: { name, shape, floats in name == "conv_in.weight" ? (shape, floats.map { _ in .nan }) : nil })
        try job("nan", model: "nan")
        // A well-formed key with a wrong shape.
        try variant("shape", unet: { name, shape, floats in
            name == "mid_block.resnets.0.norm1.weight" ? ([shape[0] - 1], Array(floats.dropLast())) : nil
        })
        try job("shape", model: "shape")
        // Cross-attention keys 8 wide for a text encoder 4 wide.
        try variant("context", unet: { name, shape, floats in
            name.hasSuffix("attn2.to_k.weight") || name.hasSuffix("attn2.to_v.weight")
                ? ([shape[0], shape[1] * 2], floats.flatMap { [$0, $0] }) : nil
        })
        try job("context", model: "context")
        // Head counts of zero, negative, and not dividing the width.
        for (name, heads) in [("heads0", 0), ("headsneg", -2), ("heads3", 3)] {
            try variant(name, configs: ["unet/config.json": { $0["attention_head_dim"] = heads }])
            try job(name, model: name)
        }
        // Absurd scheduler configs.
        try variant("trainsteps", configs: ["scheduler/scheduler_config.json": { $0["num_train_timesteps"] = 100_000_000_000 }])
        try job("trainsteps", model: "trainsteps")
        try variant("betas", configs: ["scheduler/scheduler_config.json": { $0["beta_end"] = 2.0 }])
        try job("betas", model: "betas")
        try variant("offset", configs: ["scheduler/scheduler_config.json": { $0["steps_offset"] = 5000 }])
        try job("offset", model: "offset")
        // A malformed LDM key in a single file.
        var writer = SafetensorsWriter()
        let single = try SafetensorsFile(url: fixtures.appendingPathComponent("models/sd1/sd1.safetensors"))
        for info in single.tensorInfos {
            let bytes = try single.withRawBytes(info.name) { Array($0) }
            try writer.addRaw(info.name, dtype: info.dtype, shape: info.shape, bytes: bytes)
        }
        try writer.add("model.diffusion_model.time_embed", shape: [2], floats: [1, 2])
        try writer.write(to: models.appendingPathComponent("ldmkey.safetensors"))
        try job("ldmkey", model: "ldmkey")

        let process = Foundation.Process()
        process.executableURL = DaemonProcessTests.binary
        process.arguments = ["run", "--once", "--inbox", inbox.path, "--outbox", root.appendingPathComponent("Outbox").path,
                             "--models", models.path, "--settle", "0"]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_CACHE_HOME"] = root.appendingPathComponent("cache").path
        process.environment = environment
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("Outbox/good.png").path), "the good job is served")

        var failures: [String: [String: Any]] = [:]
        let failed = inbox.appendingPathComponent("Failed")
        for folder in try FileManager.default.contentsOfDirectory(atPath: failed.path) {
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: failed.appendingPathComponent("\(folder)/error.json"))) as? [String: Any])
            failures[folder.split(separator: "-").dropFirst().dropLast().joined(separator: "-")] = json
        }
        let expected: [String: (codes: Set<String>, says: String)] = [
            "nan": (["model", "non_finite"], "conv_in"), "shape": (["model"], "norm1"), "context": (["model"], "4"),
            "heads0": (["model"], "head"), "headsneg": (["model"], "head"), "heads3": (["model"], "head"),
            "trainsteps": (["model"], "num_train_timesteps"), "betas": (["model"], "beta"), "offset": (["model", "recipe"], "steps_offset"),
            "ldmkey": (["model"], "model.diffusion_model.time_embed"),
        ]
        for (stem, want) in expected.sorted(by: { $0.key < $1.key }) {
            guard let failure = failures[stem] else { XCTFail("\(stem): not failed"); continue }
            let code = failure["code"] as? String ?? "", message = failure["message"] as? String ?? ""
            XCTAssertTrue(want.codes.contains(code), "\(stem): code \(code), not a clear error: \(message)")
            XCTAssertTrue(message.lowercased().contains(want.says.lowercased()), "\(stem): the message names '\(want.says)': \(message)")
        }
    }
}
