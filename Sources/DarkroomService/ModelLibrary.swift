import Foundation

/// The checkpoints a daemon may use: single `.safetensors` files and diffusers folders in one folder.
/// A recipe names one by file or folder name, with or without extension, never by a path (no `/`,
/// no `..`). Symbolic links placed in the folder by its administrator are followed: people link the
/// checkpoints or whole checkpoint folders of their A1111 or ComfyUI installs. (Only the administrator
/// writes there; the inbox, where users drop files, never follows links.)
public struct ModelLibrary: Sendable {
    public let folder: URL
    public let defaultName: String?

    /// The LoRA folder's name inside `folder` ("Lora", A1111's).
    public let loraFolderName: String

    public init(folder: URL, defaultName: String? = nil, loraFolderName: String? = nil) {
        self.folder = folder
        self.defaultName = defaultName
        self.loraFolderName = loraFolderName ?? "Lora"
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

    /// `Models/Lora/`, A1111's folder name for LoRA-family networks.
    public var loraFolder: URL { folder.appendingPathComponent(loraFolderName) }

    /// The LoRA file a recipe names (file name in `Models/Lora/`, with or without `.safetensors`); a name with
    /// a path in it is refused. Pickled `.pt`/`.ckpt` files are found and then refused by the loader, naming them.
    public func resolveLoRA(_ name: String) throws -> URL {
        guard Recipe.isPlainFileName(name) else {
            throw JobFailure(code: "recipe", message: "LoRA '\(name)' must be a file name in '\(loraFolder.path)', not a path.", file: nil, field: "loras")
        }
        for candidate in [name, name + ".safetensors", name + ".pt", name + ".ckpt"] {
            let url = loraFolder.appendingPathComponent(candidate)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue { return url }
        }
        let available = ((try? FileManager.default.contentsOfDirectory(atPath: loraFolder.path)) ?? [])
            .filter { $0.hasSuffix(".safetensors") }.map { String($0.dropLast(".safetensors".count)) }.sorted()
        let listing = available.isEmpty ? "the folder has no .safetensors files"
            : "available: " + available.prefix(20).joined(separator: ", ") + (available.count > 20 ? ", …" : "")
        throw JobFailure(code: "recipe", message: "LoRA '\(name)' is not in '\(loraFolder.path)' (\(listing)).",
                         file: nil, field: "loras")
    }
}
