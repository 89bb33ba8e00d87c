import Foundation

extension Checkpoint {
    /// A standalone VAE, under the canonical `vae.` prefix, for the VAE override (A1111's `models/VAE`):
    /// - a diffusers `vae/` folder (`config.json` + `diffusion_pytorch_model.safetensors`);
    /// - a single file with the LDM keys of the VAE alone (`encoder.down.0.block.0.conv1.weight`, as
    ///   `vae-ft-mse-840000-ema-pruned.safetensors`), with or without the `first_stage_model.` prefix; keys of
    ///   the training loss (`loss.*`) and EMA copies are ignored, as the checkpoint converter ignores them;
    /// - a single file with diffusers keys (`encoder.down_blocks.0.resnets.0.conv1.weight`).
    ///
    /// The keys go through the same converter as a checkpoint's (`LDMKeyMap`). Throws `WeightsError` naming the
    /// file: `.pickleCheckpoint` for `.pt`/`.ckpt`, `.unknownModelFamily` when no VAE keys are found.
    public static func openVAE(_ url: URL) throws -> Checkpoint {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WeightsError.fileNotFound(path: url.path)
        }
        if isDirectory.boolValue {
            var entries: [String: StoredTensor] = [:]
            var infos: [TensorInfo] = []
            try readComponent(url, as: "vae", entries: &entries, infos: &infos,
                              missing: WeightsError.unknownModelFamily(path: url.path, detail: "no *.safetensors VAE weights in the folder"))
            return Checkpoint(url: url, layout: .diffusers, family: .sd1, keys: entries.keys.sorted(), dtypes: countDTypes(infos),
                              sidecarYAML: nil, entries: entries)
        }
        if ["ckpt", "pt", "pth", "bin"].contains(url.pathExtension.lowercased()) { throw WeightsError.pickleCheckpoint(path: url.path) }
        let file = try SafetensorsFile(url: url)
        let shapes = Dictionary(uniqueKeysWithValues: file.tensorInfos.map { ($0.name, $0.shape) })
        var entries: [String: StoredTensor] = [:]
        if file.tensorNames.contains(where: { $0.hasPrefix("encoder.down_blocks.") || $0.hasPrefix("decoder.up_blocks.") }) {
            for info in file.tensorInfos where info.name.hasPrefix("encoder.") || info.name.hasPrefix("decoder.") || info.name.hasPrefix("quant_conv.") || info.name.hasPrefix("post_quant_conv.") {
                entries["vae.\(info.name)"] = StoredTensor(file: file, key: info.name, shape: info.shape, transform: .none)
            }
        } else {
            // Seen through the checkpoint converter as `first_stage_model.*`.
            let prefix = "first_stage_model."
            var original: [String: String] = [:]
            for name in file.tensorNames {
                original[name.hasPrefix(prefix) ? name : prefix + name] = name
            }
            let keys = original.keys.sorted()
            let shape: (String) -> [Int]? = { key in original[key].flatMap { shapes[$0] } }
            let map = LDMKeyMap.canonical(from: keys, shapes: shape, family: .sd1)
            for (canonical, entry) in map where canonical.hasPrefix("vae.") {
                guard let name = original[entry.original], var shape = shapes[name] else { continue }
                if case .reshape(let s) = entry.transform {
                    guard s.reduce(1, *) == shape.reduce(1, *) else {
                        throw WeightsError.unexpectedShape(key: name, expected: "\(s) as stored", found: shape, source: url.path)
                    }
                    shape = s
                }
                entries[canonical] = StoredTensor(file: file, key: name, shape: shape, transform: entry.transform)
            }
        }
        guard entries.keys.contains("vae.post_quant_conv.weight") || entries.keys.contains("vae.decoder.conv_in.weight") else {
            throw WeightsError.unknownModelFamily(path: url.path, detail: "no VAE keys (encoder.*/decoder.*) found; a VAE file holds the autoencoder alone")
        }
        return Checkpoint(url: url, layout: .singleFile, family: .sd1, keys: entries.keys.sorted(), dtypes: countDTypes(file.tensorInfos),
                          sidecarYAML: nil, entries: entries)
    }
}
