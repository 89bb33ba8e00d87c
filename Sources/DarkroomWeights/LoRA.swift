import DarkroomTensor
import Foundation

/// A network file of the LoRA family, resolved against one model: a weight update ΔW per patched layer,
/// applied as `W' = W + multiplier · scale · ΔW` (A1111 `extensions-builtin/Lora/network.py`,
/// stable-diffusion.cpp `src/lora.hpp`; for diffusers/PEFT files the same sum that PEFT's unfused
/// `W x + scale · B(A x)` computes).
///
/// | format | keys per module | ΔW | scale |
/// |---|---|---|---|
/// | LoRA / LoCon (kohya-ss) | `lora_down.weight` [r, in(, k, k)], `lora_up.weight` [out, r(, 1, 1)], `alpha` | up · down | alpha / r (1 without alpha) |
/// | LoRA (diffusers / PEFT) | `lora_A.weight`, `lora_B.weight` | B · A | `lora_alpha / r` from the file's `lora_adapter_metadata` (`/√r` with `use_rslora`), else 1 |
/// | LoHa (LyCORIS) | `hada_w1_a`, `hada_w1_b`, `hada_w2_a`, `hada_w2_b`, `alpha` | (w1a · w1b) ⊙ (w2a · w2b) | alpha / r (r = rows of w1b) |
/// | LoKr (LyCORIS) | `lokr_w1` or `lokr_w1_a`·`lokr_w1_b`, `lokr_w2` or `lokr_w2_a`·`lokr_w2_b`, `alpha` | w1 ⊗ w2 (Kronecker) | alpha / r when a factor is split (r = its inner size), else 1 |
/// | full (LyCORIS) | `diff` [out, in(, k, k)] | diff | 1 |
///
/// Refused with an error naming the format: Tucker-decomposed convolutions (`lora_mid`, `hada_t1`, `lokr_t2`),
/// DoRA (`dora_scale`, `lora_magnitude_vector`), bias updates (`diff_b`), and any key no rule reads.
public struct LoRA: @unchecked Sendable {
    public let url: URL
    /// One per patched weight, in the file's key order.
    public let layers: [Layer]
    let file: SafetensorsFile

    public struct Layer: Sendable {
        /// The module's name in the file (`lora_unet_…_to_q`, `unet.….to_q`).
        public let module: String
        /// The canonical weight key it patches (`unet.….to_q.weight`).
        public let target: String
        let update: Update
        let scale: Float
    }

    enum Update: Sendable {
        case lowRank(down: String, up: String)
        case hadamard(w1a: String, w1b: String, w2a: String, w2b: String)
        case kronecker(w1: Factor, w2: Factor)
        case full(diff: String)
    }

    enum Factor: Sendable {
        case whole(String)
        case product(String, String)
    }

    /// The file suffixes of one module's tensors, longest first so that `.lora_up.weight` wins over `.weight`.
    static let suffixes = [
        ".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".lora_A.weight", ".lora_B.weight",
        ".lora_magnitude_vector", ".dora_scale", ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b",
        ".hada_t1", ".hada_t2", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2_a", ".lokr_w2_b", ".lokr_w1", ".lokr_w2",
        ".lokr_t2", ".diff_b", ".diff", ".alpha", ".scale",
    ]

    /// Opens `url` (a `.safetensors` file) and resolves every module against `model` (the checkpoint the
    /// LoRA will patch). Reads only the header and the small `alpha` tensors; ΔW is computed by `delta`.
    ///
    /// - Throws: `WeightsError.pickleCheckpoint` for `.pt`/`.ckpt`; the file's own safetensors errors
    ///   (truncated, malformed header); `.loraUnsupported` naming a module and its format;
    ///   `.loraUnmatchedKeys` listing the modules this model has no weight for (a LoRA for another family);
    ///   `.loraMalformed` for missing partners, wrong ranks or non-finite values.
    public static func open(_ url: URL, model: any TensorSource) throws -> LoRA {
        let ext = url.pathExtension.lowercased()
        if ["ckpt", "pt", "pth", "bin"].contains(ext) { throw WeightsError.pickleCheckpoint(path: url.path) }
        let file = try SafetensorsFile(url: url)
        let path = url.path

        // Group the tensors by module.
        var modules: [String: [String: String]] = [:]   // module → suffix → tensor name
        var order: [String] = []
        for name in file.tensorNames {
            guard let suffix = suffixes.first(where: { name.hasSuffix($0) }), name.count > suffix.count else {
                throw WeightsError.loraMalformed(path: path, key: name, detail: "no LoRA, LoHa, LoKr or full-weight rule reads this key")
            }
            let module = String(name.dropLast(suffix.count))
            if modules[module] == nil { order.append(module) }
            modules[module, default: [:]][String(suffix.dropFirst())] = name
        }
        guard !order.isEmpty else { throw WeightsError.loraMalformed(path: path, key: "", detail: "the file holds no tensors") }

        let map = LoRAKeyMap(modelKeys: model.keys)
        let peft = PEFTScales(metadata: file.metadata, path: path)
        var layers: [Layer] = []
        // Modules this model has no weight for mean a LoRA for another family: said before any shape is compared
        // (an SDXL LoRA's UNet modules can share their names with an SD 1.x model's, at other widths).
        let unmatched = order.filter { module in map.target(of: module).flatMap { model.shape($0) } == nil }
        guard unmatched.isEmpty else {
            throw WeightsError.loraUnmatchedKeys(path: path, modules: unmatched, model: model.sourceName)
        }
        for module in order {
            let parts = modules[module] ?? [:]
            for (part, format) in [("lora_mid.weight", "LoCon with Tucker decomposition (lora_mid)"),
                                   ("hada_t1", "LoHa with Tucker decomposition (hada_t1)"),
                                   ("hada_t2", "LoHa with Tucker decomposition (hada_t2)"),
                                   ("lokr_t2", "LoKr with Tucker decomposition (lokr_t2)"),
                                   ("dora_scale", "DoRA (dora_scale)"), ("lora_magnitude_vector", "DoRA (lora_magnitude_vector)"),
                                   ("diff_b", "a bias update (diff_b)")] where parts[part] != nil {
                throw WeightsError.loraUnsupported(path: path, module: module, format: format)
            }
            guard let target = map.target(of: module), let targetShape = model.shape(target) else { continue }
            let alpha = try parts["alpha"].map { try scalar(file, $0, path: path) }
            let update: Update
            let rank: Int?
            if let down = parts["lora_down.weight"] ?? parts["lora_A.weight"] {
                guard let up = parts["lora_up.weight"] ?? parts["lora_B.weight"] else {
                    throw WeightsError.loraMalformed(path: path, key: down, detail: "its up/B partner is missing")
                }
                update = .lowRank(down: down, up: up)
                rank = try file.info(down).shape.first
            } else if let w1a = parts["hada_w1_a"], let w1b = parts["hada_w1_b"], let w2a = parts["hada_w2_a"], let w2b = parts["hada_w2_b"] {
                update = .hadamard(w1a: w1a, w1b: w1b, w2a: w2a, w2b: w2b)
                rank = try file.info(w1b).shape.first
            } else if parts["lokr_w1"] != nil || parts["lokr_w1_a"] != nil {
                func factor(_ n: String) throws -> (Factor, Int?) {
                    if let whole = parts["lokr_\(n)"] { return (.whole(whole), nil) }
                    guard let a = parts["lokr_\(n)_a"], let b = parts["lokr_\(n)_b"] else {
                        throw WeightsError.loraMalformed(path: path, key: module, detail: "LoKr factor \(n) needs lokr_\(n) or both lokr_\(n)_a and lokr_\(n)_b")
                    }
                    return (.product(a, b), try file.info(b).shape.first)
                }
                let (w1, r1) = try factor("w1"), (w2, r2) = try factor("w2")
                update = .kronecker(w1: w1, w2: w2)
                rank = r1 ?? r2
            } else if let diff = parts["diff"] {
                update = .full(diff: diff)
                rank = nil
            } else {
                throw WeightsError.loraMalformed(path: path, key: module, detail: "its tensors (\(parts.keys.sorted().joined(separator: ", "))) form no complete LoRA, LoHa, LoKr or full update")
            }
            var scale: Float = 1
            if case .lowRank(let down, _) = update, down.hasSuffix(".lora_A.weight") {
                scale = peft.scale(module: module, rank: rank ?? 1)
            } else if let alpha, let rank, rank > 0 {
                scale = alpha / Float(rank)
            }
            guard scale.isFinite else {
                throw WeightsError.loraMalformed(path: path, key: module, detail: "its scale (alpha / rank) is not finite")
            }
            let layer = Layer(module: module, target: target, update: update, scale: scale)
            try layer.checkShapes(file, targetShape: targetShape, path: path)
            layers.append(layer)
        }
        return LoRA(url: url, layers: layers, file: file)
    }

    /// `weight += multiplier · scale · ΔW` in place: a low-rank update is one GEMM accumulating into the weight
    /// (no ΔW temporary, one pass); the other formats build ΔW first.
    func add(_ layer: Layer, multiplier: Float, to weight: inout Tensor) throws {
        guard case let .lowRank(downName, upName) = layer.update else {
            weight += try delta(layer, shape: weight.shape) * multiplier
            return
        }
        let down = try finiteTensor(downName), up = try finiteTensor(upName)
        weight.addMatmul(up, down, rows: weight.shape[0], inner: down.shape[0], alpha: multiplier * layer.scale)
    }

    /// A tensor of the file, refused when it holds NaN or ±inf (naming it and the first such element).
    func finiteTensor(_ name: String) throws -> Tensor {
        let info = try file.info(name)
        let values = try file.floats(name)
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw WeightsError.loraMalformed(path: url.path, key: name, detail: "element \(bad) is \(values[bad])")
        }
        return Tensor(shape: info.shape.isEmpty ? [1] : info.shape, scalars: values)
    }

    /// ΔW · scale of `layer`, in the target weight's shape. Throws `loraMalformed` for non-finite values.
    public func delta(_ layer: Layer, shape: [Int]) throws -> Tensor {
        func load(_ name: String) throws -> Tensor { try finiteTensor(name) }
        func matrix(_ t: Tensor, rows: Int) -> Tensor { t.reshaped([rows, t.count / rows]) }
        let out = shape[0]
        var d: Tensor
        switch layer.update {
        case let .lowRank(downName, upName):
            let down = try load(downName), up = try load(upName)
            let r = down.shape[0]
            d = matrix(up, rows: out).matmul(matrix(down, rows: r))
        case let .hadamard(w1a, w1b, w2a, w2b):
            let a1 = try load(w1a), b1 = try load(w1b), a2 = try load(w2a), b2 = try load(w2b)
            d = matrix(a1, rows: out).matmul(matrix(b1, rows: b1.shape[0]))
                * matrix(a2, rows: out).matmul(matrix(b2, rows: b2.shape[0]))
        case let .kronecker(w1, w2):
            func resolve(_ f: Factor) throws -> Tensor {
                switch f {
                case .whole(let name): return try load(name)
                case let .product(a, b):
                    let ta = try load(a), tb = try load(b)
                    return matrix(ta, rows: ta.shape[0]).matmul(matrix(tb, rows: tb.shape[0]))
                }
            }
            d = Self.kronecker(try resolve(w1), try resolve(w2), shape: shape)
        case .full(let diff):
            d = try load(diff)
        }
        if layer.scale != 1 { d = d * layer.scale }
        return d.reshaped(shape)
    }

    /// `torch.kron` of two matrices (or a matrix and a 4-D kernel, as LyCORIS stores convolution factors:
    /// w1 [a, b], w2 [c, d, k, k] → [a·c, b·d, k, k]), written into `shape`.
    static func kronecker(_ w1: Tensor, _ w2: Tensor, shape: [Int]) -> Tensor {
        let a = w1.shape[0], b = w1.count / a
        let c = w2.shape[0], kk = w2.rank == 4 ? w2.shape[2] * w2.shape[3] : 1
        let d = w2.count / (c * kk)
        let x = w1.scalars, y = w2.scalars
        var out = [Float](repeating: 0, count: a * c * b * d * kk)
        for i in 0..<a { for j in 0..<b {
            let s = x[i * b + j]
            for p in 0..<c { for q in 0..<d {
                let o = (((i * c + p) * (b * d)) + (j * d + q)) * kk
                let yi = (p * d + q) * kk
                for e in 0..<kk { out[o + e] = s * y[yi + e] }
            } }
        } }
        return Tensor(shape: shape, scalars: out)
    }

    static func scalar(_ file: SafetensorsFile, _ name: String, path: String) throws -> Float {
        let values = try file.floats(name)
        guard values.count == 1, let value = values.first, value.isFinite else {
            throw WeightsError.loraMalformed(path: path, key: name, detail: "alpha must be one finite number, found \(values.count) value(s)")
        }
        return value
    }
}

extension LoRA.Layer {
    /// Checks, from the header alone, that the update's factors multiply out to the target's shape, so
    /// `delta` never reaches a shape precondition.
    func checkShapes(_ file: SafetensorsFile, targetShape: [Int], path: String) throws {
        func shape(_ n: String) throws -> [Int] { try file.info(n).shape }
        func fail(_ detail: String) -> WeightsError {
            .loraMalformed(path: path, key: module, detail: "\(detail); it patches \(target) of shape \(targetShape)")
        }
        let targetCount = targetShape.reduce(1, *)
        guard let out = targetShape.first, out > 0, targetCount > 0 else { throw fail("the target is empty") }
        let rest = targetCount / out
        func count(_ s: [Int]) -> Int { s.reduce(1, *) }
        switch update {
        case let .lowRank(down, up):
            let ds = try shape(down), us = try shape(up)
            guard let r = ds.first, r > 0, count(ds) == r * rest else { throw fail("the down/A factor has shape \(ds)") }
            guard us.first == out, count(us) == out * r else { throw fail("the up/B factor has shape \(us) for rank \(r)") }
        case let .hadamard(w1a, w1b, w2a, w2b):
            for (a, b) in [(w1a, w1b), (w2a, w2b)] {
                let sa = try shape(a), sb = try shape(b)
                guard let r = sb.first, r > 0, sa.first == out, count(sa) == out * r, count(sb) == r * rest else {
                    throw fail("the LoHa factors have shapes \(sa) and \(sb)")
                }
            }
        case let .kronecker(w1, w2):
            func dims(_ f: LoRA.Factor) throws -> [Int] {
                switch f {
                case .whole(let n): return try shape(n)
                case let .product(a, b):
                    let sa = try shape(a), sb = try shape(b)
                    guard sa.count == 2, sb.count >= 2, sa[1] == sb[0], sa[1] > 0 else { throw fail("the LoKr factors have shapes \(sa) and \(sb)") }
                    return [sa[0]] + sb.dropFirst()
                }
            }
            let s1 = try dims(w1), s2 = try dims(w2)
            guard s1.count == 2, s1.allSatisfy({ $0 > 0 }), s2.count == 2 || s2.count == 4, s2.allSatisfy({ $0 > 0 }) else {
                throw fail("the LoKr factors have shapes \(s1) and \(s2)")
            }
            let kk = s2.count == 4 ? s2[2] * s2[3] : 1
            guard s1[0] * s2[0] == out, s1[1] * s2[1] * kk == rest
            else { throw fail("the Kronecker product of \(s1) and \(s2) does not fit") }
        case .full(let diff):
            let s = try shape(diff)
            guard count(s) == targetCount, s.first == out else { throw fail("diff has shape \(s)") }
        }
    }
}

/// diffusers' `lora_adapter_metadata` (the PEFT `LoraConfig` of each component, keys prefixed with the
/// component: `unet.lora_alpha`, `unet.r`, `unet.alpha_pattern`, `unet.use_rslora`). Without it, PEFT's
/// default `lora_alpha = r` gives scale 1.
struct PEFTScales {
    var configs: [String: [String: Any]] = [:]

    init(metadata: [String: String], path: String) {
        guard let raw = metadata["lora_adapter_metadata"], let data = raw.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        for (key, value) in object {
            guard let dot = key.firstIndex(of: ".") else { continue }
            configs[String(key[..<dot]), default: [:]][String(key[key.index(after: dot)...])] = value
        }
    }

    func scale(module: String, rank: Int) -> Float {
        let component = module.split(separator: ".").first.map(String.init) ?? ""
        guard let config = configs[component], rank > 0 else { return 1 }
        func number(_ value: Any?) -> Double? {
            switch value {
            case let v as Double: return v
            case let v as Int: return Double(v)
            case let v as NSNumber: return v.doubleValue
            default: return nil
            }
        }
        var alpha = number(config["lora_alpha"]) ?? Double(rank)
        if let patterns = config["alpha_pattern"] as? [String: Any] {
            let path = String(module.dropFirst(component.count + 1))
            for (pattern, value) in patterns where path == pattern || path.hasSuffix("." + pattern) {
                if let v = number(value) { alpha = v }
            }
        }
        guard alpha.isFinite else { return .nan }   // refused by the caller, naming the module
        let rslora = (config["use_rslora"] as? Bool) ?? false
        return Float(rslora ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }
}

extension LoRA {
    /// The patched weights for `loras` applied together on `base`: `W + Σ multiplier · ΔW` for every weight some
    /// LoRA patches, as Float32 tensors (only these layers get new memory; every other weight stays `base`'s).
    /// A multiplier of 0 patches nothing.
    public static func patchedWeights(_ loras: [(lora: LoRA, multiplier: Float)], base: any TensorSource) throws -> [String: Tensor] {
        try patchedWeights(loras.map { ($0.lora, Weighting($0.multiplier)) }, base: base)
    }

    /// Multipliers per component, as A1111's `<lora:name:te:unet>`: `unet` for UNet weights, `textEncoder` for
    /// the text encoders'.
    public struct Weighting: Sendable, Equatable {
        public var textEncoder: Float, unet: Float
        public init(textEncoder: Float, unet: Float) { (self.textEncoder, self.unet) = (textEncoder, unet) }
        public init(_ both: Float) { self.init(textEncoder: both, unet: both) }
        func multiplier(for target: String) -> Float { target.hasPrefix("unet.") ? unet : textEncoder }
    }

    /// `patchedWeights` with separate text-encoder and UNet multipliers.
    public static func patchedWeights(_ loras: [(lora: LoRA, weighting: Weighting)], base: any TensorSource) throws -> [String: Tensor] {
        var patched: [String: Tensor] = [:]
        for (lora, weighting) in loras {
            guard weighting.unet.isFinite, weighting.textEncoder.isFinite else {
                throw WeightsError.loraMalformed(path: lora.url.path, key: "", detail: "its weight is not finite")
            }
            for layer in lora.layers {
                let multiplier = weighting.multiplier(for: layer.target)
                guard multiplier != 0 else { continue }
                var current = try patched.removeValue(forKey: layer.target) ?? base.weight(layer.target).float32
                try lora.add(layer, multiplier: multiplier, to: &current)
                patched[layer.target] = current
            }
        }
        return patched
    }
}

/// A model's tensors with some weights replaced (LoRA-patched): every other key reads `base`, so a model built
/// from it shares all unpatched weights with the model built from `base`.
public struct PatchedTensorSource: TensorSource {
    public let base: any TensorSource
    public let patches: [String: Tensor]

    public init(base: any TensorSource, patches: [String: Tensor]) {
        self.base = base
        self.patches = patches
    }

    public var sourceName: String { base.sourceName }
    public var keys: [String] { base.keys }
    public func shape(_ key: String) -> [Int]? { base.shape(key) }
    public func tensor(_ key: String) throws -> Tensor { try patches[key] ?? base.tensor(key) }
    public func weight(_ key: String) throws -> Weight { try patches[key].map(Weight.init) ?? base.weight(key) }
}
