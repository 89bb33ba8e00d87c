import Foundation

/// A textual-inversion embedding: `count` vectors of the text encoder's token-embedding width, which
/// replace the word `name` (the file's name without extension, as A1111 names them) in a prompt. SDXL files hold
/// one tensor per text encoder (`clip_l`, `clip_g`; A1111 / ComfyUI), each with the same number of vectors.
///
/// Read as A1111 `textual_inversion.py::EmbeddingDatabase.load_from_file` and diffusers
/// `TextualInversionLoaderMixin` read them:
/// - `.safetensors`: a flattened A1111 dict (one key `string_to_param.*`), else `emb_params` (the usual
///   safetensors form), else `clip_l` + `clip_g` (SDXL), else the file's single tensor under any key (a diffusers
///   concept);
/// - `.pt` / `.bin` (torch zip files, read by `TorchZipFile`, which never runs the pickle): A1111's
///   `{"string_to_param": {"*": tensor}, …}`, else `{"clip_l": …, "clip_g": …}`, else a dict holding a single tensor.
/// The tensor is [width] or [count, width], F32, F16, BF16 or F64.
public struct TextualInversionEmbedding: Sendable, Equatable {
    /// One text encoder's vectors (count × width, row-major); `key` is the file's name for them (`clip_l`, `clip_g`),
    /// nil for a one-tensor file.
    public struct Part: Sendable, Equatable {
        public let key: String?
        public let width: Int
        public let vectors: [Float]
    }

    public let name: String
    /// The file it came from (for messages).
    public let file: String
    public let count: Int
    /// One part (one-tensor files) or one per text encoder (SDXL files: `clip_g`, `clip_l`, sorted by key).
    public let parts: [Part]
    /// The width of a one-tensor embedding; for several parts their sum (A1111's "shape": 2048 for SDXL).
    public var width: Int { parts.reduce(0) { $0 + $1.width } }
    /// The vectors of a one-tensor embedding (count × width); for several parts, see `parts`.
    public var vectors: [Float] { parts[0].vectors }

    /// A1111's limit follows from its 75-token chunks: an embedding must fit in one.
    public static let maxVectors = 75

    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let file: String
        /// The key or part of the file at fault.
        public let field: String
        public let problem: String
        public var description: String { "Embedding '\(file)' (\(field)): \(problem)" }
    }

    /// A one-tensor embedding.
    public init(name: String, file: String, count: Int, width: Int, vectors: [Float]) throws {
        try self.init(name: name, file: file, parts: [(key: nil, shape: [count, width], values: vectors)])
    }

    /// Parts as read: each [width] or [count, width]; every part must have the same vector count.
    init(name: String, file: String, parts: [(key: String?, shape: [Int], values: [Float])]) throws {
        var checked: [Part] = []
        var count: Int?
        for (key, shape, values) in parts.sorted(by: { ($0.key ?? "") < ($1.key ?? "") }) {
            let field = key ?? "vectors"
            func fail(_ problem: String) -> Error { Error(file: file, field: field, problem: problem) }
            let (rows, width): (Int, Int)
            switch shape.count {
            case 1: (rows, width) = (1, shape[0])
            case 2: (rows, width) = (shape[0], shape[1])
            default: throw fail("has shape \(shape); an embedding is [width] or [vectors, width]")
            }
            guard rows > 0, width > 0, values.count == rows * width else {
                throw fail("the tensor is empty (\(rows) vectors of width \(width)); an embedding needs at least one vector")
            }
            guard rows <= Self.maxVectors else { throw fail("has \(rows) vectors; at most \(Self.maxVectors) fit in a 75-token chunk") }
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw fail("element \(bad) (vector \(bad / width)) is \(values[bad]); an embedding must be finite")
            }
            if let count, count != rows {
                throw fail("has \(rows) vectors but '\(checked[0].key ?? "")' has \(count); each text encoder's part must have the same number")
            }
            count = rows
            checked.append(Part(key: key, width: width, vectors: values))
        }
        guard let count else { throw Error(file: file, field: "tensors", problem: "holds no tensor") }
        (self.name, self.file, self.count, self.parts) = (name, file, count, checked)
    }

    /// The parts' widths, for messages: "clip_g width 1280 + clip_l width 768", or "width 768".
    public var widthsDescription: String {
        parts.map { ($0.key.map { "\($0) " } ?? "") + "width \($0.width)" }.joined(separator: " + ")
    }

    /// Reads `url`; `name` defaults to the file name without its extension.
    public static func load(_ url: URL, name: String? = nil, displayName: String? = nil) throws -> TextualInversionEmbedding {
        let file = displayName ?? url.lastPathComponent
        let name = name ?? url.deletingPathExtension().lastPathComponent
        let parts: [(key: String?, shape: [Int], values: [Float])]
        switch url.pathExtension.lowercased() {
        case "safetensors": parts = try readSafetensors(url, file: file)
        case "pt", "bin": parts = try readTorch(url, file: file)
        default:
            throw Error(file: file, field: "file", problem: "has an extension Darkroom does not read as an embedding; use .safetensors, .pt or .bin")
        }
        return try TextualInversionEmbedding(name: name, file: file, parts: parts)
    }

    /// The keys of an SDXL embedding's parts (A1111 `textual_inversion.py`: a dict with `clip_g` and `clip_l`).
    static let sdxlKeys: Set<String> = ["clip_g", "clip_l"]

    static func readSafetensors(_ url: URL, file: String) throws -> [(key: String?, shape: [Int], values: [Float])] {
        let st: SafetensorsFile
        do { st = try SafetensorsFile(url: url) } catch {
            throw Error(file: file, field: "file", problem: "\(error)".replacingOccurrences(of: url.path, with: file))
        }
        let names = st.tensorNames
        let flattened = names.filter { $0.hasPrefix("string_to_param.") }
        let keys: [String]
        if flattened.count == 1 { keys = flattened }
        else if !flattened.isEmpty { throw Error(file: file, field: "string_to_param", problem: "holds \(flattened.count) terms (\(flattened.joined(separator: ", "))); an embedding file holds one") }
        else if names.contains("emb_params") { keys = ["emb_params"] }
        else if Self.sdxlKeys.isSubset(of: names) { keys = Self.sdxlKeys.sorted() }
        else if names.count == 1 { keys = names }
        else {
            throw Error(file: file, field: "tensors", problem: "holds \(names.count) tensors (\(names.prefix(8).joined(separator: ", "))) and no 'emb_params' or 'string_to_param.*'; which one is the embedding is unknown")
        }
        return try keys.map { key in
            do {
                return (key: Self.sdxlKeys.contains(key) ? key : nil, shape: try st.info(key).shape, values: try st.floats(key))
            } catch {
                throw Error(file: file, field: key, problem: "\(error)".replacingOccurrences(of: url.path, with: file))
            }
        }
    }

    static func readTorch(_ url: URL, file: String) throws -> [(key: String?, shape: [Int], values: [Float])] {
        let archive: TorchZipFile
        do { archive = try TorchZipFile(url: url) } catch let error as TorchZipFile.Error {
            throw Error(file: file, field: error.field, problem: error.problem)
        }
        let root = archive.root
        if let params = root["string_to_param"] {
            guard case .dict(let items) = params, items.count == 1, case .tensor(let t) = items[0].value else {
                throw Error(file: file, field: "string_to_param", problem: "is not a dict of one tensor (an old ParameterDict, or several terms); load and save it again with torch as {'string_to_param': {'*': tensor}}")
            }
            return [(nil, t.shape, t.values)]
        }
        if case .dict(let items) = root {
            let sdxl = items.compactMap { item -> (key: String?, shape: [Int], values: [Float])? in
                guard case .string(let key) = item.key, Self.sdxlKeys.contains(key), case .tensor(let t) = item.value else { return nil }
                return (key, t.shape, t.values)
            }
            if sdxl.count == Self.sdxlKeys.count { return sdxl }
        }
        guard case .dict(let items) = root, items.count == 1, case .tensor(let t) = items[0].value else {
            throw Error(file: file, field: "data.pkl", problem: "is neither A1111's {'string_to_param': …}, an SDXL {'clip_l': …, 'clip_g': …} nor a dict of one tensor")
        }
        return [(nil, t.shape, t.values)]
    }
}

extension TextualInversionEmbedding {
    /// The embedding as each of a model's text encoders takes it, in their order (`encoders`: each one's description in
    /// the family and its loaded width): a one-tensor embedding for a model with one text encoder (SD 1.x, 2.x); for
    /// SDXL, the part under each encoder's `embeddingKey` (`clip_l`, `clip_g`), as A1111's `EmbeddingsWithFixes` takes
    /// `vec[textual_inversion_key]`. An embedding made for another family (an SD 1.x one on SDXL, an SDXL one on
    /// SD 1.x, a width that differs) is refused, naming the file and the widths.
    public func perTextEncoder(_ encoders: [(description: ModelFamily.TextEncoder, width: Int)],
                               family: String) throws -> [TextualInversionEmbedding] {
        let wanted = encoders.map { encoder in encoder.description.embeddingKey.map { "\($0) (width \(encoder.width))" } ?? "width \(encoder.width)" }
            .joined(separator: " and ")
        let keyed = encoders.allSatisfy { $0.description.embeddingKey != nil }
        guard keyed || encoders.count == 1 else {
            throw Error(file: file, field: "model", problem: "the \(family) checkpoint's text encoders take no embedding")
        }
        return try encoders.map { encoder in
            let part: Part
            if keyed {
                guard parts[0].key != nil else {
                    throw Error(file: file, field: "vectors", problem: "is a one-tensor embedding of width \(width) (made for SD 1.x or 2.x); this \(family) checkpoint takes embeddings with \(wanted)")
                }
                guard let match = parts.first(where: { $0.key == encoder.description.embeddingKey }) else {
                    throw Error(file: file, field: "tensors", problem: "has no '\(encoder.description.embeddingKey ?? "")' vectors for the \(encoder.description.name) text encoder; this \(family) checkpoint takes \(wanted)")
                }
                part = match
            } else {
                guard parts.count == 1, parts[0].key == nil else {
                    throw Error(file: file, field: parts[0].key ?? "vectors", problem: "is an SDXL embedding (\(widthsDescription)); this \(family) checkpoint's text encoder takes one tensor of \(wanted)")
                }
                part = parts[0]
            }
            guard part.width == encoder.width else {
                throw Error(file: file, field: part.key ?? "vectors", problem: "has width \(part.width), but this \(family) checkpoint's \(encoder.description.name) text encoder has width \(encoder.width); it was made for another model family (SD 1.x: 768, SD 2.x: 1024, SDXL: clip_l 768 + clip_g 1280)")
            }
            return try TextualInversionEmbedding(name: name, file: file, parts: [(part.key, [count, part.width], part.vectors)])
        }
    }
}
