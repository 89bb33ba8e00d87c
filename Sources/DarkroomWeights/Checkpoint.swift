import DarkroomTensor
import Foundation

/// A Stable Diffusion checkpoint opened for loading: one `.safetensors` file with original (LDM) keys,
/// or a diffusers folder. Either way its tensors are offered under canonical diffusers keys
/// (`unet.*`, `vae.*`, `text_encoder.*`), converted once here; models never see the original names.
public struct Checkpoint: TensorSource {
    public enum Layout: String, Sendable { case singleFile = "single file", diffusers = "diffusers folder" }
    /// The model family (`ModelFamily`: SD 1.x, SD 2.x, SDXL, the SDXL refiner), as data.
    public typealias Family = ModelFamily

    public let url: URL
    public let layout: Layout
    public let family: Family
    public let keys: [String]
    /// Stored dtypes and how many tensors have each.
    public let dtypes: [DType: Int]
    /// Single files: the A1111-style `.yaml` beside the checkpoint (`model.yaml` next to `model.safetensors`), if any.
    public let sidecarYAML: URL?

    let entries: [String: StoredTensor]

    struct StoredTensor: Sendable {
        let file: SafetensorsFile
        let key: String
        let shape: [Int]
        let transform: LDMKeyMap.Transform
    }

    public var sourceName: String { url.path }

    /// Takes the mapped pages of the tensors under `prefix` (e.g. "unet") out of this process's resident set, for
    /// a stretch when they are not used: the UNet's 1.7 GB (fp16 SD 1.5) while the VAE decodes. They come back
    /// from the page cache on the next use, by minor page faults. Tensors copied at load are not affected.
    public func dropResidentPages(prefix: String) {
        var spans: [ObjectIdentifier: (file: SafetensorsFile, range: Range<Int>)] = [:]
        for (key, entry) in entries where key.hasPrefix(prefix + ".") {
            guard let range = try? entry.file.info(entry.key).dataRange else { continue }
            let id = ObjectIdentifier(entry.file)
            let known = spans[id]?.range ?? range
            spans[id] = (entry.file, min(known.lowerBound, range.lowerBound)..<max(known.upperBound, range.upperBound))
        }
        for span in spans.values { span.file.dropResidentPages(span.range) }
    }

    /// The same for the tensors of `keys` alone (e.g. the weights a LoRA-patched copy replaced).
    public func dropResidentPages(keys: some Sequence<String>) {
        for key in keys {
            guard let entry = entries[key], let range = try? entry.file.info(entry.key).dataRange else { continue }
            entry.file.dropResidentPages(range)
        }
    }

    public func shape(_ key: String) -> [Int]? { entries[key]?.shape }

    /// How the tensor behind `key` is stored (nil: no such key).
    public func storedType(of key: String) -> DType? {
        guard let entry = entries[key] else { return nil }
        return try? entry.file.info(entry.key).dtype
    }

    /// Throws `nonFiniteWeights` when the stored tensor behind `entry` holds NaN/inf: one vectorised pass over
    /// the mapped bytes (see `NonFiniteScan`), run once per tensor as it is loaded.
    func checkFinite(_ key: String, _ entry: StoredTensor) throws {
        if entry.file.scanRecord.isClean(entry.key) { return }
        let info = try entry.file.info(entry.key)
        if let element = try entry.file.withRawBytes(entry.key, { NonFiniteScan.firstNonFinite($0, dtype: info.dtype) }) {
            throw WeightsError.nonFiniteWeights(key: key, source: sourceName, element: element)
        }
        // The scan made the tensor's pages resident; a model reads them when its phase runs, not now (a load
        // would otherwise hold the whole file resident: 4.2 GB for an fp32 SD 1.5).
        entry.file.dropResidentPages(info.dataRange)
        entry.file.scanRecord.markClean(entry.key)
    }

    /// Writes down, for a later process, which tensors were found free of NaN/inf (`ScanRecord`): called once a
    /// model is loaded.
    public func saveScanRecords() {
        var seen = Set<ObjectIdentifier>()
        for entry in entries.values where seen.insert(ObjectIdentifier(entry.file)).inserted { entry.file.scanRecord.save() }
    }

    public func tensor(_ key: String) throws -> Tensor {
        guard let entry = entries[key] else { throw WeightsError.missingTensor(key: key, source: sourceName) }
        try checkFinite(key, entry)
        let info = try entry.file.info(entry.key)
        let stored = try Tensor(shape: info.shape) { try entry.file.floats(entry.key, into: $0) }
        switch entry.transform {
        case .none: return stored
        case .reshape(let shape): return stored.reshaped(shape)
        case .rows(let part, let parts):
            let rows = info.shape[0] / parts
            return stored.slice((part * rows)..<((part + 1) * rows), axis: 0)
        case .transpose:
            return stored.permuted([1, 0])
        }
    }

    /// The tensor as stored (16-bit weights stay 16-bit, borrowed from the mapping), for matrices and kernels.
    public func weight(_ key: String) throws -> Weight {
        guard let entry = entries[key] else { throw WeightsError.missingTensor(key: key, source: sourceName) }
        try checkFinite(key, entry)
        let stored = try entry.file.weight(entry.key)
        switch entry.transform {
        case .none: return stored
        case .reshape(let shape): return stored.reshaped(shape)
        case .transpose: return Weight(try tensor(key))
        case .rows(let part, let parts):
            // `open` checked that the rows split evenly and that there are some.
            let rows = stored.shape[0] / parts, rowElements = stored.count / max(stored.shape[0], 1)
            let info = try entry.file.info(entry.key)
            guard info.dtype == .f16 || info.dtype == .bf16 || info.dtype == .f32 else { return Weight(try tensor(key)) }
            let elementSize = info.dtype == .f32 ? 4 : 2
            return try entry.file.withRawBytes(entry.key) { bytes in
                guard let base = bytes.baseAddress, rows > 0 else { throw WeightsError.unexpectedShape(
                    key: key, expected: "a fused q/k/v projection with a multiple of \(parts) rows", found: stored.shape, source: sourceName) }
                let start = base + part * rows * rowElements * elementSize
                let shape = [rows] + stored.shape.dropFirst()
                guard info.dtype == .f32 else { return Weight(shape: shape, format: stored.format, borrowing: start, owner: entry.file) }
                guard Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 else { return Weight(try tensor(key)) }
                return Weight(Tensor(shape: shape, borrowing: start.assumingMemoryBound(to: Float.self), owner: entry.file))
            }
        }
    }

    /// Opens `url`: a `.safetensors` file or a diffusers folder (with `model_index.json` or `unet/`).
    /// `components` limits which diffusers subfolders must be present (e.g. `["unet"]` for a lone UNet); by
    /// default, every component of the folder's family (`ModelFamily.components`).
    public static func open(_ url: URL, components: [String]? = nil) throws -> Checkpoint {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw WeightsError.fileNotFound(path: url.path)
        }
        if isDirectory.boolValue { return try openDiffusersFolder(url, components: components) }
        let ext = url.pathExtension.lowercased()
        if ["ckpt", "pt", "pth", "bin"].contains(ext) { throw WeightsError.pickleCheckpoint(path: url.path) }
        return try openSingleFile(url)
    }

    static func openSingleFile(_ url: URL) throws -> Checkpoint {
        let file = try SafetensorsFile(url: url)
        let originalKeys = file.tensorNames
        let shapes = Dictionary(uniqueKeysWithValues: file.tensorInfos.map { ($0.name, $0.shape) })
        let family = try ModelFamily.detect(singleFileKeys: originalKeys, path: url.path)
        guard originalKeys.contains(where: { $0.hasPrefix("model.diffusion_model.") }),
              originalKeys.contains(where: { $0.hasPrefix("first_stage_model.") }) else {
            throw WeightsError.unknownModelFamily(path: url.path, detail: "no UNet (model.diffusion_model.*) or VAE (first_stage_model.*) found")
        }
        let map = LDMKeyMap.canonical(from: originalKeys, shapes: { shapes[$0] }, family: family)
        // Every UNet key must convert: one that matches no rule is malformed (e.g. `model.diffusion_model.time_embed`).
        let converted = Set(map.values.map(\.original))
        if let stray = originalKeys.sorted().first(where: { $0.hasPrefix("model.diffusion_model.") && !converted.contains($0) }) {
            throw WeightsError.unrecognizedKey(key: stray, path: url.path)
        }
        var entries: [String: StoredTensor] = [:]
        for (canonical, entry) in map {
            guard var shape = shapes[entry.original] else { continue }
            switch entry.transform {
            case .none: break
            case .transpose:
                guard shape.count == 2 else {
                    throw WeightsError.unexpectedShape(key: entry.original, expected: "a matrix (2 dimensions)", found: shape, source: url.path)
                }
                shape.reverse()
            case .reshape(let s):
                guard Tensor.elementCount(s) == Tensor.elementCount(shape) else {
                    throw WeightsError.unexpectedShape(key: entry.original, expected: "\(s) as stored", found: shape, source: url.path)
                }
                shape = s
            case .rows(_, let parts):
                guard shape.count >= 1, shape[0] > 0, shape[0] % parts == 0 else {
                    throw WeightsError.unexpectedShape(key: entry.original, expected: "a fused q/k/v projection whose first dimension is a positive multiple of \(parts)",
                                                       found: shape, source: url.path)
                }
                shape[0] /= parts
            }
            entries[canonical] = StoredTensor(file: file, key: entry.original, shape: shape, transform: entry.transform)
        }
        let yaml = url.deletingPathExtension().appendingPathExtension("yaml")
        return Checkpoint(url: url, layout: .singleFile, family: family, keys: entries.keys.sorted(),
                          dtypes: countDTypes(file.tensorInfos),
                          sidecarYAML: FileManager.default.fileExists(atPath: yaml.path) ? yaml : nil, entries: entries)
    }

    static func openDiffusersFolder(_ url: URL, components: [String]?) throws -> Checkpoint {
        let family = try ModelFamily.detect(diffusersFolder: url)
        var entries: [String: StoredTensor] = [:]
        var infos: [TensorInfo] = []
        for component in components ?? family.components {
            try readComponent(url.appendingPathComponent(component), as: component, entries: &entries, infos: &infos,
                              missing: WeightsError.unknownModelFamily(path: url.path, detail: "no \(component)/*.safetensors weights in the diffusers folder"))
        }
        return Checkpoint(url: url, layout: .diffusers, family: family, keys: entries.keys.sorted(),
                          dtypes: countDTypes(infos), sidecarYAML: nil, entries: entries)
    }

    /// Every tensor of a diffusers component folder's weight files, under `component.` (diffusers names are canonical).
    static func readComponent(_ folder: URL, as component: String, entries: inout [String: StoredTensor], infos: inout [TensorInfo],
                              missing: @autoclosure () -> WeightsError) throws {
        let files = try weightFiles(in: folder)
        guard !files.isEmpty else { throw missing() }
        for fileURL in files {
            let file = try SafetensorsFile(url: fileURL)
            for info in file.tensorInfos {
                entries["\(component).\(info.name)"] = StoredTensor(file: file, key: info.name, shape: info.shape, transform: .none)
                infos.append(info)
            }
        }
    }

    /// A component folder's weight files: `*.safetensors` without a variant, else the `fp16` variant
    /// (`diffusion_pytorch_model.fp16.safetensors`); shards (`-00001-of-00002`) all load.
    static func weightFiles(in folder: URL) throws -> [URL] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
        let safetensors = names.filter { $0.hasSuffix(".safetensors") }.sorted()
        let plain = safetensors.filter { $0.split(separator: ".").count == 2 }
        let chosen = plain.isEmpty ? safetensors.filter { $0.hasSuffix(".fp16.safetensors") } : plain
        if chosen.isEmpty, names.contains(where: { $0.hasSuffix(".bin") || $0.hasSuffix(".ckpt") }) {
            throw WeightsError.pickleCheckpoint(path: folder.path)
        }
        return chosen.map { folder.appendingPathComponent($0) }
    }

    /// `<folder>/<component>/config.json` (or any JSON file in the folder) as a dictionary, nil when absent.
    public func config(_ relativePath: String) throws -> [String: Any]? {
        guard layout == .diffusers else { return nil }
        return try Checkpoint.jsonObject(url.appendingPathComponent(relativePath))
    }

    /// A JSON object file as a dictionary; nil when the file does not exist.
    public static func jsonObject(_ url: URL) throws -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            let data = try Data(contentsOf: url)
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw WeightsError.invalidConfig(path: url.path, detail: "not a JSON object")
            }
            return object
        } catch let error as WeightsError {
            throw error
        } catch {
            throw WeightsError.invalidConfig(path: url.path, detail: "\(error.localizedDescription)")
        }
    }

    static func countDTypes(_ infos: [TensorInfo]) -> [DType: Int] {
        infos.reduce(into: [:]) { $0[$1.dtype, default: 0] += 1 }
    }
}
