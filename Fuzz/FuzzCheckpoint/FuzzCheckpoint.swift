// libFuzzer target: safetensors header validation, checkpoint family detection, LDM key conversion at open,
// and model-config detection from tensor shapes (tools/fuzz checkpoint).
//
// The input is one of two things:
// - a whole `.safetensors` file (anything not starting with `{`): written as is, so truncations, bad lengths
//   and mangled headers reach `SafetensorsFile`;
// - a bare JSON header (starts with `{`): the harness prepends its 8-byte length and appends the zero-filled
//   data section the header declares (the largest `data_offsets` end, at most 8 MiB), so mutations of a real
//   checkpoint's header get past the size checks and reach family detection and `*Config.detect`.
// Then `Checkpoint.open`, each `*Config.detect` on its own, and, when all three succeed,
// `StableDiffusionModels.load` (builds the three networks from the zero weights).
import DarkroomModels
import DarkroomWeights
import Foundation

private let fileURL: URL = {
    let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return URL(fileURLWithPath: dir).appendingPathComponent("darkroom-fuzz-\(getpid()).safetensors")
}()

private let maxDataBytes = 8 << 20

/// Header-only input → a complete file: length prefix + header + zero data section.
private func completeFile(header: [UInt8]) -> [UInt8] {
    var dataBytes = 0
    if let object = try? JSONSerialization.jsonObject(with: Data(header)) as? [String: Any] {
        for case let tensor as [String: Any] in object.values {
            if let offsets = tensor["data_offsets"] as? [Any], offsets.count == 2, let end = offsets[1] as? Int,
               end > dataBytes, end <= maxDataBytes {
                dataBytes = end
            }
        }
    }
    var file = [UInt8](repeating: 0, count: 8)
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.replaceSubrange(0..<8, with: $0) }
    file += header
    file += [UInt8](repeating: 0, count: dataBytes)
    return file
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = [UInt8](UnsafeBufferPointer(start: data, count: size))
    let file = input.first == UInt8(ascii: "{") ? completeFile(header: input) : input
    guard FileManager.default.createFile(atPath: fileURL.path, contents: Data(file)) else { return 0 }
    defer { try? FileManager.default.removeItem(at: fileURL) }

    if let safetensors = try? SafetensorsFile(url: fileURL) {
        // Every tensor's bytes must be readable through every accessor without trapping.
        for info in safetensors.tensorInfos.prefix(64) {
            _ = try? safetensors.weight(info.name)
            _ = try? safetensors.withRawBytes(info.name) { $0.count }
            if info.byteCount <= 1 << 16 { _ = try? safetensors.floats(info.name) }
        }
    }
    guard let checkpoint = try? Checkpoint.open(fileURL) else { return 0 }
    for key in checkpoint.keys.prefix(4096) { _ = checkpoint.shape(key) }
    let family = checkpoint.family
    let text = try? CLIPTextConfig.detect(from: WeightScope(checkpoint, prefix: "text_encoder.text_model"),
                                          activation: family == .sd1 ? .quickGELU : .gelu,
                                          padToken: family == .sd1 ? 49407 : 0)
    let unet = try? UNetConfig.detect(from: WeightScope(checkpoint, prefix: "unet"),
                                      heads: family == .sd1 ? .fixedCount(8) : .fixedHeadDim(64))
    let vae = try? VAEConfig.detect(from: WeightScope(checkpoint, prefix: "vae"))
    if text != nil, unet != nil, vae != nil {
        _ = try? StableDiffusionModels.load(fileURL)
    }
    return 0
}
