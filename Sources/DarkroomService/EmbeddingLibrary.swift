import DarkroomTokenizer
import DarkroomWeights
import Foundation

/// Textual-inversion embeddings in `Models/embeddings/` (A1111's `embeddings/` folder). A file's name
/// without extension is the word that calls it in a prompt. Names are only ever those of the folder's
/// own entries: a name with a path in it (`/`, `..`) is refused, and subfolders are not searched.
/// Symbolic links the administrator puts there are followed when they lead to a regular file, as for
/// checkpoints (`ModelLibrary`); a link to a folder or to nothing is refused when its name is used.
///
/// Only the embeddings a job's prompts use are read (a broken file fails the jobs that name it, not
/// every job); each is hashed as A1111 does for its `TI hashes` (SHA-256 of the file, 12 hex digits).
public struct EmbeddingLibrary: Sendable {
    public static let folderName = "embeddings"
    public static let extensions: Set<String> = ["safetensors", "pt", "bin"]
    public let folder: URL

    public init(folder: URL) { self.folder = folder }

    /// The embeddings folder of a models folder.
    public init(models: URL) { folder = models.appendingPathComponent(Self.folderName) }

    /// One embedding a job uses.
    public struct Used: Sendable {
        public let embedding: TextualInversionEmbedding
        /// `embeddings/<file>`, as messages and the report name it.
        public let file: String
        /// A1111's short hash: the first 12 hex digits of the file's SHA-256.
        public let hash: String
    }

    /// Names (file stems) → files with an embedding extension; empty when the folder does not exist.
    public func names() -> [String: [String]] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var names: [String: [String]] = [:]
        for entry in entries.sorted() where !entry.hasPrefix(".") {
            let url = URL(fileURLWithPath: entry)
            guard Self.extensions.contains(url.pathExtension.lowercased()) else { continue }
            names[url.deletingPathExtension().lastPathComponent, default: []].append(entry)
        }
        return names
    }

    /// The file an embedding name stands for, confined to the folder.
    public func resolve(_ name: String) throws -> URL {
        guard Recipe.isPlainFileName(name), !name.hasPrefix(".") else {
            throw JobFailure(code: "embedding", message: "Embedding name '\(name)' must be a file name in '\(Self.folderName)/', not a path.",
                             file: nil, field: "prompt")
        }
        guard let files = names()[name], !files.isEmpty else {
            throw JobFailure(code: "embedding", message: "No embedding '\(name)' in '\(folder.path)'.", file: nil, field: "prompt")
        }
        guard files.count == 1 else {
            throw JobFailure(code: "embedding", message: "Embedding '\(name)' is ambiguous: \(files.map { "'\(Self.folderName)/\($0)'" }.joined(separator: " and ")) share the name; remove or rename one.",
                             file: "\(Self.folderName)/\(files[0])", field: "prompt")
        }
        let url = folder.appendingPathComponent(files[0])
        var info = stat()
        guard stat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw JobFailure(code: "embedding", message: "'\(Self.folderName)/\(files[0])' is not a regular file (a folder, a broken symbolic link, or a link to something other than a file).",
                             file: "\(Self.folderName)/\(files[0])", field: "prompt")
        }
        return url
    }

    /// The embeddings `prompts` use (positive first, as A1111 lists them), loaded, checked against the
    /// model's text encoders (`StableDiffusionModels.textEncoders`: an SDXL checkpoint takes `clip_l` + `clip_g`
    /// files, SD 1.x/2.x one tensor of their width) and hashed. Each problem is a `JobFailure` (code `embedding`)
    /// naming the file.
    public func used(by prompts: [String], tokenizer: CLIPTokenizer, textEncoders: [(description: ModelFamily.TextEncoder, width: Int)],
                     family: String) throws -> [Used] {
        let available = names()
        guard !available.isEmpty else { return [] }
        var wanted: [String] = []
        for prompt in prompts {
            for name in tokenizer.embeddingNames(in: prompt, among: available.keys) where !wanted.contains(name) { wanted.append(name) }
        }
        return try wanted.map { name in
            let url = try resolve(name)
            let file = "\(Self.folderName)/\(url.lastPathComponent)"
            let embedding: TextualInversionEmbedding
            do { embedding = try TextualInversionEmbedding.load(url, name: name, displayName: file) } catch {
                throw JobFailure(code: "embedding", message: "\(error)", file: file, field: "prompt")
            }
            do { _ = try embedding.perTextEncoder(textEncoders, family: family) } catch {
                throw JobFailure(code: "embedding", message: "\(error)", file: file, field: "prompt")
            }
            let hash: String
            do { hash = String(try ModelHash.sha256(of: url).prefix(12)) } catch {
                throw JobFailure(code: "embedding", message: "Embedding '\(file)' cannot be read: \(error.localizedDescription)", file: file, field: "prompt")
            }
            return Used(embedding: embedding, file: file, hash: hash)
        }
    }

    /// A1111's `TI hashes` value: "name: hash, …" (':' and ',' removed from names).
    public static func tiHashes(_ used: [Used]) -> String? {
        guard !used.isEmpty else { return nil }
        return used.map { "\($0.embedding.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "")): \($0.hash)" }
            .joined(separator: ", ")
    }
}
