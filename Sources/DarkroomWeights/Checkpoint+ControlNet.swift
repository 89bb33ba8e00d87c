import Foundation

extension Checkpoint {
    /// A ControlNet, under the canonical `controlnet.` prefix (diffusers `ControlNetModel` names):
    /// - a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`, or its `fp16` variant);
    /// - a single file with LDM keys: `control_model.*` as lllyasviel's `control_v11*.safetensors` (keys outside
    ///   `control_model.`, such as a whole SD model saved beside it, are ignored), or the same names without the
    ///   prefix (`input_hint_block.0.weight`, as thibaud's SD 2.x files);
    /// - a single file with diffusers keys (`controlnet_cond_embedding.conv_in.weight`), as SDXL ControlNets are shared.
    /// SDXL ControlNets with LDM keys carry `add_embedding` as the SDXL UNet's `label_emb.0.{0,2}` (same rule).
    ///
    /// LDM keys go through the one key converter (`LDMKeyMap.controlNet`); every key under the ControlNet's prefix
    /// must convert. fp16, bf16 and fp32 files load alike. `family` is a hint from the keys (`add_embedding`: SDXL)
    /// and the cross-attention width (1024: SD 2.x, else SD 1.x); whether the ControlNet fits a model is checked against that model's UNet.
    /// Throws `WeightsError` naming the file: `.pickleCheckpoint` for `.pth`/`.ckpt`, `.unknownModelFamily` when no
    /// ControlNet keys are found, `.unrecognizedKey` for a key that matches no rule.
    public static func openControlNet(_ url: URL) throws -> Checkpoint {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WeightsError.fileNotFound(path: url.path)
        }
        var entries: [String: StoredTensor] = [:]
        var infos: [TensorInfo] = []
        if isDirectory.boolValue {
            try readComponent(url, as: "controlnet", entries: &entries, infos: &infos,
                              missing: WeightsError.unknownModelFamily(path: url.path, detail: "no *.safetensors ControlNet weights in the folder"))
        } else {
            if ["ckpt", "pt", "pth", "bin"].contains(url.pathExtension.lowercased()) { throw WeightsError.pickleCheckpoint(path: url.path) }
            let file = try SafetensorsFile(url: url)
            infos = file.tensorInfos
            let names = file.tensorNames
            if names.contains("controlnet_cond_embedding.conv_in.weight") {
                for info in file.tensorInfos {
                    entries["controlnet.\(info.name)"] = StoredTensor(file: file, key: info.name, shape: info.shape, transform: .none)
                }
            } else {
                let prefix = names.contains { $0.hasPrefix("control_model.") } ? "control_model." : ""
                guard names.contains(prefix + "input_hint_block.0.weight") else {
                    throw WeightsError.unknownModelFamily(
                        path: url.path, detail: "no ControlNet keys (control_model.input_hint_block.0.weight or controlnet_cond_embedding.conv_in.weight) found")
                }
                let map = LDMKeyMap.controlNet(from: names, prefix: prefix)
                let converted = Set(map.values.map(\.original))
                let ownKeys = prefix.isEmpty ? names : names.filter { $0.hasPrefix(prefix) }
                if let stray = ownKeys.sorted().first(where: { !converted.contains($0) }) {
                    throw WeightsError.unrecognizedKey(key: stray, path: url.path)
                }
                let shapes = Dictionary(uniqueKeysWithValues: file.tensorInfos.map { ($0.name, $0.shape) })
                for (canonical, entry) in map {
                    guard let shape = shapes[entry.original] else { continue }
                    entries[canonical] = StoredTensor(file: file, key: entry.original, shape: shape, transform: .none)
                }
            }
        }
        guard entries["controlnet.controlnet_cond_embedding.conv_in.weight"] != nil else {
            throw WeightsError.unknownModelFamily(path: url.path, detail: "no ControlNet conditioning embedding (controlnet_cond_embedding.conv_in.weight) found")
        }
        let crossWidth = entries.first { $0.key.hasSuffix("attn2.to_k.weight") }?.value.shape.last
        // lllyasviel's files come with a `.yaml` of the same name (`global_average_pooling` for shuffle).
        let yaml = url.deletingPathExtension().appendingPathExtension("yaml")
        let hasYAML = !isDirectory.boolValue && FileManager.default.fileExists(atPath: yaml.path)
        return Checkpoint(url: url, layout: isDirectory.boolValue ? .diffusers : .singleFile, family: entries["controlnet.add_embedding.linear_1.weight"] != nil ? .sdxl : crossWidth == 1024 ? .sd2 : .sd1,
                          keys: entries.keys.sorted(), dtypes: countDTypes(infos), sidecarYAML: hasYAML ? yaml : nil, entries: entries)
    }
}
