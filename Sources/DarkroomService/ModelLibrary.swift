import Foundation

/// The checkpoints a daemon may use: single `.safetensors` files and diffusers folders in one folder.
/// A recipe names one by file or folder name, with or without extension, never by a path (no `/`,
/// no `..`). Symbolic links placed in the folder by its administrator are followed: people link the
/// checkpoints or whole checkpoint folders of their A1111 or ComfyUI installs. (Only the administrator
/// writes there; the inbox, where users drop files, never follows links.)
public struct ModelLibrary: Sendable {
    public let folder: URL
    public let defaultName: String?

    public init(folder: URL, defaultName: String? = nil) {
        self.folder = folder
        self.defaultName = defaultName
    }

    /// Checkpoint names in the folder.
    public var available: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { name in
            let url = folder.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard !name.hasPrefix("."), FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else { return false }
            return isDirectory.boolValue
                ? FileManager.default.fileExists(atPath: url.appendingPathComponent("unet").path)
                : name.hasSuffix(".safetensors")
        }.sorted()
    }

    /// The checkpoint for a recipe's `model` (nil: the default, or the only checkpoint there is).
    public func resolve(_ name: String?) throws -> URL {
        guard let name = name ?? defaultName ?? (available.count == 1 ? available[0] : nil) else {
            throw JobFailure(code: "model", message: available.isEmpty
                ? "No checkpoint in the models folder '\(folder.path)'; put a .safetensors file or a diffusers folder there."
                : "The recipe names no model and there is no default; name one of: \(available.joined(separator: ", ")).",
                file: nil, field: "model")
        }
        guard Recipe.isPlainFileName(name) else {
            throw JobFailure(code: "model", message: "Model '\(name)' must be a name in the models folder, not a path.", file: nil, field: "model")
        }
        for candidate in [name, name + ".safetensors"] {
            let url = folder.appendingPathComponent(candidate)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            return url
        }
        throw JobFailure(code: "model", message: "Model '\(name)' is not in '\(folder.path)' (available: \(available.joined(separator: ", "))).",
                         file: nil, field: "model")
    }
}
