import Foundation

/// A textual-inversion embedding: `count` vectors of the text encoder's token-embedding width, which
/// replace the word `name` (the file's name without extension, as A1111 names them) in a prompt.
///
/// Read as A1111 `textual_inversion.py::EmbeddingDatabase.load_from_file` and diffusers
/// `TextualInversionLoaderMixin` read them:
/// - `.safetensors`: a flattened A1111 dict (one key `string_to_param.*`), else `emb_params` (the usual
///   safetensors form), else the file's single tensor under any key (a diffusers concept);
/// - `.pt` / `.bin` (torch zip files, read by `TorchZipFile`, which never runs the pickle): A1111's
///   `{"string_to_param": {"*": tensor}, …}`, else a dict holding a single tensor.
/// The tensor is [width] or [count, width], F32, F16, BF16 or F64.
public struct TextualInversionEmbedding: Sendable, Equatable {
    public let name: String
    /// The file it came from (for messages).
    public let file: String
    public let count: Int
    public let width: Int
    /// count × width, row-major.
    public let vectors: [Float]

    /// A1111's limit follows from its 75-token chunks: an embedding must fit in one.
    public static let maxVectors = 75

    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let file: String
        /// The key or part of the file at fault.
        public let field: String
        public let problem: String
        public var description: String { "Embedding '\(file)' (\(field)): \(problem)" }
    }

    public init(name: String, file: String, count: Int, width: Int, vectors: [Float]) throws {
        func fail(_ problem: String) -> Error { Error(file: file, field: "vectors", problem: problem) }
        guard count > 0, width > 0, vectors.count == count * width else {
            throw fail("the tensor is empty (\(count) vectors of width \(width)); an embedding needs at least one vector")
        }
        guard count <= Self.maxVectors else { throw fail("has \(count) vectors; at most \(Self.maxVectors) fit in a 75-token chunk") }
        if let bad = vectors.firstIndex(where: { !$0.isFinite }) {
            throw fail("element \(bad) (vector \(bad / width)) is \(vectors[bad]); an embedding must be finite")
        }
        (self.name, self.file, self.count, self.width, self.vectors) = (name, file, count, width, vectors)
    }

    /// Reads `url`; `name` defaults to the file name without its extension.
    public static func load(_ url: URL, name: String? = nil, displayName: String? = nil) throws -> TextualInversionEmbedding {
        let file = displayName ?? url.lastPathComponent
        let name = name ?? url.deletingPathExtension().lastPathComponent
        let (key, shape, values): (String, [Int], [Float])
        switch url.pathExtension.lowercased() {
        case "safetensors": (key, shape, values) = try readSafetensors(url, file: file)
        case "pt", "bin": (key, shape, values) = try readTorch(url, file: file)
        default:
            throw Error(file: file, field: "file", problem: "has an extension Darkroom does not read as an embedding; use .safetensors, .pt or .bin")
        }
        switch shape.count {
        case 1: return try TextualInversionEmbedding(name: name, file: file, count: 1, width: shape[0], vectors: values)
        case 2: return try TextualInversionEmbedding(name: name, file: file, count: shape[0], width: shape[1], vectors: values)
        default: throw Error(file: file, field: key, problem: "has shape \(shape); an embedding is [width] or [vectors, width]")
        }
    }

    static func readSafetensors(_ url: URL, file: String) throws -> (String, [Int], [Float]) {
        let st: SafetensorsFile
        do { st = try SafetensorsFile(url: url) } catch {
            throw Error(file: file, field: "file", problem: "\(error)".replacingOccurrences(of: url.path, with: file))
        }
        let names = st.tensorNames
        let flattened = names.filter { $0.hasPrefix("string_to_param.") }
        let key: String
        if flattened.count == 1 { key = flattened[0] }
        else if !flattened.isEmpty { throw Error(file: file, field: "string_to_param", problem: "holds \(flattened.count) terms (\(flattened.joined(separator: ", "))); an embedding file holds one") }
        else if names.contains("emb_params") { key = "emb_params" }
        else if names.count == 1 { key = names[0] }
        else if names.contains("clip_l") && names.contains("clip_g") {
            throw Error(file: file, field: "clip_l", problem: "is an SDXL embedding (clip_l + clip_g); Darkroom runs SD 1.x and 2.x")
        } else {
            throw Error(file: file, field: "tensors", problem: "holds \(names.count) tensors (\(names.prefix(8).joined(separator: ", "))) and no 'emb_params' or 'string_to_param.*'; which one is the embedding is unknown")
        }
        do {
            let info = try st.info(key)
            return (key, info.shape, try st.floats(key))
        } catch {
            throw Error(file: file, field: key, problem: "\(error)".replacingOccurrences(of: url.path, with: file))
        }
    }

    static func readTorch(_ url: URL, file: String) throws -> (String, [Int], [Float]) {
        let archive: TorchZipFile
        do { archive = try TorchZipFile(url: url) } catch let error as TorchZipFile.Error {
            throw Error(file: file, field: error.field, problem: error.problem)
        }
        let root = archive.root
        if let params = root["string_to_param"] {
            guard case .dict(let items) = params, items.count == 1, case .tensor(let t) = items[0].value else {
                throw Error(file: file, field: "string_to_param", problem: "is not a dict of one tensor (an old ParameterDict, or several terms); load and save it again with torch as {'string_to_param': {'*': tensor}}")
            }
            return ("string_to_param", t.shape, t.values)
        }
        guard case .dict(let items) = root, items.count == 1, case .tensor(let t) = items[0].value else {
            throw Error(file: file, field: "data.pkl", problem: "is neither A1111's {'string_to_param': …} nor a dict of one tensor")
        }
        if case .string(let key) = items[0].key { return (key, t.shape, t.values) }
        return ("data.pkl", t.shape, t.values)
    }
}
