import Foundation

/// The checkpoints a daemon may use: single `.safetensors` files and diffusers folders in one folder.
/// A recipe names one by file or folder name, with or without extension, never by a path (no `/`,
/// no `..`). Symbolic links placed in the folder by its administrator are followed: people link the
/// checkpoints or whole checkpoint folders of their A1111 or ComfyUI installs. (Only the administrator
/// writes there; the inbox, where users drop files, never follows links.)
public struct ModelLibrary: Sendable {
    public let folder: URL
    public let defaultName: String?

    /// The add-on folders' names inside `folder` ("Lora", "VAE", "ControlNet" and "ESRGAN", A1111's).
    public let loraFolderName: String, vaeFolderName: String, controlNetFolderName: String, upscalerFolderName: String

    public init(folder: URL, defaultName: String? = nil, loraFolderName: String? = nil, vaeFolderName: String? = nil,
                controlNetFolderName: String? = nil, upscalerFolderName: String? = nil) {
        self.folder = folder
        self.defaultName = defaultName
        self.loraFolderName = loraFolderName ?? "Lora"
        self.vaeFolderName = vaeFolderName ?? "VAE"
        self.controlNetFolderName = controlNetFolderName ?? "ControlNet"
        self.upscalerFolderName = upscalerFolderName ?? "ESRGAN"
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
                : name.hasSuffix(".safetensors") && !name.hasSuffix(".vae.safetensors")   // A1111's VAE beside a checkpoint
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

    /// `Models/VAE/`, A1111's folder name for separate VAEs.
    public var vaeFolder: URL { folder.appendingPathComponent(vaeFolderName) }

    /// The LoRA file a recipe names (file name in `Models/Lora/`, with or without `.safetensors`); a name with
    /// a path in it is refused. Pickled `.pt`/`.ckpt` files are found and then refused by the loader, naming them.
    public func resolveLoRA(_ name: String) throws -> URL {
        try resolveAddOn(name, in: loraFolder, kind: "LoRA", field: "loras", folders: false)
    }

    /// The VAE a recipe's `vae` names: a file or a diffusers `vae/` folder in `Models/VAE/`.
    public func resolveVAE(_ name: String) throws -> URL {
        try resolveAddOn(name, in: vaeFolder, kind: "VAE", field: "vae", folders: true)
    }

    /// `Models/ControlNet/`, A1111's folder name for ControlNet models.
    public var controlNetFolder: URL { folder.appendingPathComponent(controlNetFolderName) }

    /// The ControlNet a recipe's `controlnet[i].model` names: a single file or a diffusers folder in `Models/ControlNet/`.
    public func resolveControlNet(_ name: String) throws -> URL {
        try resolveAddOn(name, in: controlNetFolder, kind: "ControlNet", field: "controlnet", folders: true)
    }

    /// Restoration's tile preset: the first ControlNet in `Models/ControlNet/` (by name) whose name says "tile"
    /// (`control_v11f1e_sd15_tile.safetensors`, a `…tile…` diffusers folder), if any.
    public var tileControlNet: String? {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: controlNetFolder.path)) ?? []).sorted()
        return names.first { !$0.hasPrefix(".") && $0.lowercased().contains("tile")
            && ($0.hasSuffix(".safetensors") || FileManager.default.fileExists(atPath: controlNetFolder.appendingPathComponent($0).appendingPathComponent("config.json").path)) }
    }

    /// `Models/ESRGAN/`, A1111's folder for upscaler models (ESRGAN, Real-ESRGAN, SRVGGNetCompact, …).
    public var upscalerFolder: URL { folder.appendingPathComponent(upscalerFolderName) }

    /// The upscaler file a recipe's `upscaler` names (file name in `Models/ESRGAN/`, with or without
    /// `.safetensors`); pickled `.pth`/`.pt` files are found and then refused by the loader, naming them.
    public func resolveUpscaler(_ name: String) throws -> URL {
        try resolveAddOn(name, in: upscalerFolder, kind: "Upscaler", field: "upscaler", folders: false)
    }

    /// A1111's VAE beside a checkpoint: `<name>.vae.safetensors` next to `<name>.safetensors`, used when the recipe
    /// names no VAE.
    public static func sidecarVAE(for checkpoint: URL) -> URL? {
        guard checkpoint.pathExtension == "safetensors" else { return nil }
        let url = checkpoint.deletingPathExtension().appendingPathExtension("vae.safetensors")
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && !isDirectory.boolValue ? url : nil
    }

    /// A name confined to `folder`: a file (with or without `.safetensors`; `.pt`/`.ckpt` found so the loader can
    /// refuse them by name) or, with `folders`, a folder.
    func resolveAddOn(_ name: String, in folder: URL, kind: String, field: String, folders: Bool) throws -> URL {
        guard Recipe.isPlainFileName(name) else {
            throw JobFailure(code: "recipe", message: "\(kind) '\(name)' must be a name in '\(folder.path)', not a path.", file: nil, field: field)
        }
        for candidate in [name, name + ".safetensors", name + ".pt", name + ".pth", name + ".ckpt"] {
            let url = folder.appendingPathComponent(candidate)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), folders || !isDirectory.boolValue { return url }
        }
        let available = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
            .filter { !$0.hasPrefix(".") }.map { $0.hasSuffix(".safetensors") ? String($0.dropLast(".safetensors".count)) : $0 }.sorted()
        let listing = available.isEmpty ? "the folder is empty or missing"
            : "available: " + available.prefix(20).joined(separator: ", ") + (available.count > 20 ? ", …" : "")
        throw JobFailure(code: "recipe", message: "\(kind) '\(name)' is not in '\(folder.path)' (\(listing)).", file: nil, field: field)
    }
}
