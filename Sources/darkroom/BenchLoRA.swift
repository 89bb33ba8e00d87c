import DarkroomTensor
import DarkroomWeights
import Foundation

/// A random kohya-format LoRA for a checkpoint, for `darkroom bench job --lora random`: rank 64 on every layer
/// an LCM-LoRA for SD 1.5 patches (every attention projection, proj_in/out, the feed-forward layers, the
/// resnets' conv1/conv2/time_emb_proj/conv_shortcut and the down/up samplers), fp16, alpha 64. Cached beside
/// the bench checkpoint; never committed.
enum BenchLoRA {
    static let targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                          "conv1", "conv2", "time_emb_proj", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv"]

    static func cached(for checkpoint: Checkpoint, rank: Int = 64) throws -> URL {
        let url = BenchCheckpoint.cacheFolder.deletingLastPathComponent().appendingPathComponent("lcm-like-lora-r\(rank)-random.safetensors")
        if FileManager.default.fileExists(atPath: url.path) { return url }
        print("creating a random rank-\(rank) LoRA on every LCM-LoRA layer at \(url.path) …")
        var writer = SafetensorsWriter()
        var random = SplitMix64(seed: 20261203)
        for key in checkpoint.keys where key.hasPrefix("unet.") && key.hasSuffix(".weight") {
            let module = String(key.dropFirst("unet.".count).dropLast(".weight".count))
            guard targets.contains(where: { module.hasSuffix("." + $0) }), let shape = checkpoint.shape(key), shape.count >= 2 else { continue }
            let name = "lora_unet_" + module.replacingOccurrences(of: ".", with: "_")
            let rest = shape.dropFirst().reduce(1, *)
            let down = [rank] + shape.dropFirst(), up = [shape[0], rank] + (shape.count == 4 ? [1, 1] : [])
            try writer.add(name + ".lora_down.weight", shape: down,
                           floats: (0..<(rank * rest)).map { _ in random.normal() / Float(rest).squareRoot() }, as: .f16)
            try writer.add(name + ".lora_up.weight", shape: up,
                           floats: (0..<(shape[0] * rank)).map { _ in random.normal() * 0.01 }, as: .f16)
            try writer.add(name + ".alpha", shape: [], floats: [Float(rank)], as: .f16)
        }
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writer.write(to: url)
        return url
    }
}
