import DarkroomTensor

/// Tensors by canonical name (diffusers naming, component-prefixed: `unet.conv_in.weight`,
/// `vae.decoder.conv_out.bias`, `text_encoder.text_model.final_layer_norm.weight`).
public protocol TensorSource: Sendable {
    /// The file or folder, for error messages.
    var sourceName: String { get }
    /// Every canonical key, sorted.
    var keys: [String] { get }
    func shape(_ key: String) -> [Int]?
    /// The tensor as Float32 (converted from F16/BF16 on load).
    func tensor(_ key: String) throws -> Tensor
    /// The tensor as stored, for weight matrices and kernels (default: the Float32 tensor).
    func weight(_ key: String) throws -> Weight
}

extension TensorSource {
    public func weight(_ key: String) throws -> Weight { Weight(try tensor(key)) }
}

/// A view of a `TensorSource` under a key prefix, as model blocks see their weights:
/// `w["resnets.0"]["conv1"].tensor("weight", shape: …)` reads `<prefix>.resnets.0.conv1.weight`.
public struct WeightScope: Sendable {
    public let source: any TensorSource
    public let prefix: String

    public init(_ source: any TensorSource, prefix: String = "") {
        self.source = source
        self.prefix = prefix
    }

    public subscript(_ component: String) -> WeightScope { WeightScope(source, prefix: key(component)) }

    public var sourceName: String { source.sourceName }

    /// The absolute key of `name` under this scope.
    public func key(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }

    public func has(_ name: String) -> Bool { source.shape(key(name)) != nil }

    /// The shape of `name` (relative to the scope, or an absolute key with `relative: false`).
    public func shape(_ name: String, relative: Bool = true) -> [Int]? { source.shape(relative ? key(name) : name) }

    /// The shape of a tensor that must exist and have `rank` dimensions.
    public func requireShape(_ name: String, rank: Int, relative: Bool = true) throws -> [Int] {
        let full = relative ? key(name) : name
        guard let shape = source.shape(full) else { throw WeightsError.missingTensor(key: full, source: sourceName) }
        guard shape.count == rank else {
            throw WeightsError.unexpectedShape(key: full, expected: "\(rank) dimensions", found: shape, source: sourceName)
        }
        return shape
    }

    /// Loads `name`, which must have exactly `shape`.
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        let full = key(name)
        guard let shape = source.shape(full) else { throw WeightsError.missingTensor(key: full, source: sourceName) }
        guard shape == expected else {
            throw WeightsError.unexpectedShape(key: full, expected: "\(expected)", found: shape, source: sourceName)
        }
        return try source.tensor(full)
    }

    /// Loads the weight matrix or kernel `name` as stored (see `Weight`), which must have exactly `shape`.
    public func weight(_ name: String, shape expected: [Int]) throws -> Weight {
        let full = key(name)
        guard let shape = source.shape(full) else { throw WeightsError.missingTensor(key: full, source: sourceName) }
        guard shape == expected else {
            throw WeightsError.unexpectedShape(key: full, expected: "\(expected)", found: shape, source: sourceName)
        }
        return try source.weight(full)
    }

    /// How many consecutive indices 0, 1, 2, … exist under `<prefix>.<name>.<i>.`.
    public func countIndices(_ name: String) -> Int {
        let base = key(name) + "."
        var present = Set<Int>()
        for k in keysWithPrefix(base) {
            let rest = k.dropFirst(base.count)
            if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { present.insert(i) }
        }
        var n = 0
        while present.contains(n) { n += 1 }
        return n
    }

    /// The first absolute key under this scope that ends with `suffix`.
    public func firstKey(matchingSuffix suffix: String) -> String? {
        keysWithPrefix(prefix.isEmpty ? "" : prefix + ".").first { $0.hasSuffix(suffix) }
    }

    func keysWithPrefix(_ p: String) -> ArraySlice<String> {
        let keys = source.keys
        guard !p.isEmpty else { return keys[...] }
        // keys are sorted: binary search for the first key ≥ p, then take while it has the prefix.
        var low = 0, high = keys.count
        while low < high {
            let mid = (low + high) / 2
            if keys[mid] < p { low = mid + 1 } else { high = mid }
        }
        var end = low
        while end < keys.count && keys[end].hasPrefix(p) { end += 1 }
        return keys[low..<end]
    }
}
