import Foundation

extension Checkpoint {
    /// An upscaler model (A1111's `models/ESRGAN`): one `.safetensors` file of an RRDBNet (ESRGAN, Real-ESRGAN,
    /// BSRGAN layouts) or an SRVGGNetCompact, its tensors offered under the canonical keys of `UpscalerKeyMap`
    /// (no component prefix), converted here one key at a time; returns it with the layout it was stored in.
    ///
    /// Tensors are read as checkpoints' are: borrowed from the mapping, scanned for NaN/inf on first use.
    /// Throws `WeightsError` naming the file: `.pickleUpscaler` for `.pth`/`.pt`/`.ckpt`/`.bin`, `.notAnUpscaler`
    /// when no layout's marker keys are there, `.unsupportedUpscaler` for a known architecture Darkroom does not
    /// run or an old ESRGAN whose module sequence fits no upsampling count, `.unrecognizedKey` for a key no rule
    /// of its layout matches.
    public static func openUpscaler(_ url: URL) throws -> (checkpoint: Checkpoint, layout: UpscalerKeyMap.Layout) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WeightsError.fileNotFound(path: url.path)
        }
        if ["ckpt", "pt", "pth", "bin"].contains(url.pathExtension.lowercased()) { throw WeightsError.pickleUpscaler(path: url.path) }
        guard !isDirectory.boolValue else {
            throw WeightsError.notAnUpscaler(path: url.path, detail: "it is a folder; an upscaler is one .safetensors file")
        }
        let file = try SafetensorsFile(url: url)
        let keys = Set(file.tensorNames)
        if let name = UpscalerKeyMap.unsupportedArchitecture(of: keys) {
            if name.hasPrefix("a Stable Diffusion") {
                throw WeightsError.notAnUpscaler(path: url.path, detail: "it is \(name); checkpoints go in the models folder itself, upscalers in ESRGAN/")
            }
            throw WeightsError.unsupportedUpscaler(path: url.path, detail: "it is \(name); Darkroom runs RRDBNet (ESRGAN, Real-ESRGAN, BSRGAN) and SRVGGNetCompact models")
        }
        guard let layout = UpscalerKeyMap.layout(of: keys) else {
            throw WeightsError.notAnUpscaler(path: url.path, detail: "none of the marker keys of an RRDBNet (model.0.weight + model.1.sub.0.RDB1.conv1.0.weight, conv_first.weight + body.0.rdb1.conv1.weight, or conv_first.weight + RRDB_trunk.0.RDB1.conv1.weight) or an SRVGGNetCompact (body.0.weight + body.1.weight) is in its \(keys.count) tensors")
        }
        var upsamplings = 0
        if layout == .esrgan {
            guard let n = UpscalerKeyMap.esrganUpsamplings(keys: keys) else {
                throw WeightsError.unsupportedUpscaler(path: url.path, detail: "its `model` sequence has a length that fits no number of 2× upsamplings (3n + 5 modules); it is some other ESRGAN variant")
            }
            upsamplings = n
        }
        var entries: [String: StoredTensor] = [:]
        for info in file.tensorInfos.sorted(by: { $0.name < $1.name }) {
            guard let canonical = UpscalerKeyMap.canonical(info.name, layout: layout, upsamplings: upsamplings) else {
                throw WeightsError.unrecognizedUpscalerKey(key: info.name, path: url.path, layout: layout.rawValue)
            }
            if let other = entries[canonical] {
                throw WeightsError.unsupportedUpscaler(path: url.path, detail: "tensors '\(other.key)' and '\(info.name)' both read as '\(canonical)'")
            }
            entries[canonical] = StoredTensor(file: file, key: info.name, shape: info.shape, transform: .none)
        }
        let checkpoint = Checkpoint(url: url, layout: .singleFile, family: .sd1, keys: entries.keys.sorted(),
                                    dtypes: countDTypes(file.tensorInfos), sidecarYAML: nil, entries: entries)
        return (checkpoint, layout)
    }
}
