import ArgumentParser
import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomService
import DarkroomTensor
import DarkroomTokenizer
import Foundation
import Logging

struct Process: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one job: an image and a recipe (and a mask for inpainting) → PNG(s) with A1111 parameters.")

    @Argument(help: "The input image (PNG or JPEG).")
    var image: String

    @Option(help: "The recipe (JSON; see Recipes/recipe.schema.json).")
    var recipe: String

    @Option(help: "The mask image (white = repaint); default: the recipe's `mask`, beside the recipe.")
    var mask: String?

    @Option(help: "A .safetensors checkpoint or a diffusers folder (not needed for mode upscale).")
    var model: String?

    @Option(help: "A diffusers folder whose configs describe a single-file checkpoint.")
    var modelConfig: String?

    @Option(help: "The folder of the LoRAs the recipe names (default: Lora/ beside the checkpoint, as in the service's Models/Lora).")
    var loraFolder: String?

    @Option(help: "The folder of the VAEs the recipe's `vae` names (default: VAE/ beside the checkpoint, as in the service's Models/VAE).")
    var vaeFolder: String?

    @Option(help: "The folder of the ControlNets the recipe's `controlnet` names (default: ControlNet/ beside the checkpoint, as in the service's Models/ControlNet).")
    var controlnetFolder: String?
    @Option(help: "The folder of the upscaler models the recipe's `upscaler` names (default: ESRGAN/ beside the checkpoint, as in the service's Models/ESRGAN; without a checkpoint, Models/ESRGAN).")
    var upscalerFolder: String?

    @Option(help: "The matrix products' precision when the recipe names none: fp32 (diffusers parity) or bf16 (oneDNN, about twice as fast; autocast's accuracy).")
    var precision = Precision.fp32

    @Option(help: "Output PNG; with count > 1 the others are NAME-2.png, NAME-3.png, …; the report is NAME.json (and NAME.defects.png for repaired defects). Existing files are never overwritten.")
    var output: String

    func validate() throws {
        guard output.lowercased().hasSuffix(".png") else {
            throw ValidationError("--output must name a .png file ('\(output)'): Darkroom writes PNG, with the A1111 parameters in it.")
        }
    }

    func run() throws {
        let recipeURL = URL(fileURLWithPath: recipe)
        let parsed: Recipe
        do { parsed = try JobExecutor.readRecipe(recipeURL, name: recipe) } catch let failure as JobFailure {
            throw ValidationError(failure.message)
        }
        let maskPath = mask ?? parsed.mask.map { recipeURL.deletingLastPathComponent().appendingPathComponent($0).path }
        // The same naming as the service: NAME.png, NAME-2.png, …, the report NAME.json.
        let base = URL(fileURLWithPath: output).standardizedFileURL
        let folder = base.deletingLastPathComponent()
        let stem = base.deletingPathExtension().lastPathComponent
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw ValidationError("The output folder '\(folder.path)' does not exist; create it first.")
        }
        let count = parsed.configuration.count
        let outputs = (0..<count).map { "\(stem)\($0 == 0 ? "" : "-\($0 + 1)").png" }
        var inputs = JobExecutor.Inputs(recipe: recipeURL, image: URL(fileURLWithPath: image), mask: maskPath.map { URL(fileURLWithPath: $0) },
                                        recipeName: recipe, imageName: image, maskName: maskPath,
                                        seed: parsed.seed ?? UInt64.random(in: 0...UInt64.max), outputs: outputs, report: "\(stem).json")
        for name in outputs + ["\(stem).json", inputs.defects].compactMap({ $0 }) where FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) {
            throw ValidationError("'\(folder.appendingPathComponent(name).path)' exists; Darkroom never overwrites an output. Choose another --output.")
        }
        if let maskPath, !FileManager.default.fileExists(atPath: maskPath) {
            throw ValidationError("The mask '\(maskPath)' does not exist.")
        }
        var logger = Logger(label: "darkroom")
        logger.logLevel = .warning
        let modelURL = URL(fileURLWithPath: model ?? "Models/none")
        let configURL = modelConfig.map { URL(fileURLWithPath: $0) }
        let upscalers = ModelLibrary(folder: upscalerFolder.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
                                     ?? modelURL.deletingLastPathComponent(), upscalerFolderName: upscalerFolder.map { URL(fileURLWithPath: $0).lastPathComponent })
        let loras = ModelLibrary(folder: loraFolder.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
                                 ?? modelURL.deletingLastPathComponent(), loraFolderName: loraFolder.map { URL(fileURLWithPath: $0).lastPathComponent })
        let vaes = ModelLibrary(folder: vaeFolder.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
                                ?? modelURL.deletingLastPathComponent(), vaeFolderName: vaeFolder.map { URL(fileURLWithPath: $0).lastPathComponent })
        let controls = ModelLibrary(folder: controlnetFolder.map { URL(fileURLWithPath: $0).deletingLastPathComponent() }
                                    ?? modelURL.deletingLastPathComponent(),
                                    controlNetFolderName: controlnetFolder.map { URL(fileURLWithPath: $0).lastPathComponent })
        for (i, use) in (parsed.controlNets ?? []).enumerated() {
            guard let name = use.image else { continue }
            inputs.controlImages[i] = (recipeURL.deletingLastPathComponent().appendingPathComponent(name), name)
        }
        let hasModel = model != nil
        let executor = JobExecutor(resolveModel: { _ in
            guard hasModel else {
                throw JobFailure(code: "model", message: "This recipe needs a checkpoint: give --model (only mode upscale runs without one).", file: nil, field: "model")
            }
            return modelURL
        }, logger: logger, resolveLoRA: { try loras.resolveLoRA($0) },
                                   resolveVAE: { try vaes.resolveVAE($0) },
                                   embeddings: EmbeddingLibrary(models: modelURL.deletingLastPathComponent()),
                                   resolveControlNet: { try controls.resolveControlNet($0) }, tileControlNet: { controls.tileControlNet },
                                   resolveUpscaler: { try upscalers.resolveUpscaler($0) }, loadPipeline: { url in
            StableDiffusionPipeline(models: try StableDiffusionModels.load(url, config: configURL), tokenizer: try CLIPTokenizer.bundled())
        })
        executor.defaultPrecision = precision
        // Results are staged beside the output, then published together (report last), as the service does.
        let staging = folder.appendingPathComponent(".darkroom-process-\(UUID().uuidString.prefix(8).lowercased())")
        defer { try? FileManager.default.removeItem(at: staging) }
        let start = Date()
        let bar = ProgressBar(images: count)
        do {
            try executor.execute(inputs, staging: staging) { index, step, steps in
                bar.update(image: index, step: step, steps: steps)
                return true
            }
        } catch let failure as JobFailure {
            bar.finish()
            throw ValidationError(failure.message)
        }
        bar.finish()
        for name in outputs + [inputs.defects, "\(stem).json"].compactMap({ $0 }) {
            let source = staging.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: source.path) else { continue }
            try AtomicFile.write(Array(try Data(contentsOf: source)), to: folder.appendingPathComponent(name))
            print(folder.appendingPathComponent(name).path)
        }
        print(String(format: "%d image(s) in %.1f s", count, Date().timeIntervalSince(start)))
    }
}

/// A one-line progress bar with an ETA on a terminal (stderr); nothing when stderr is not a terminal.
final class ProgressBar {
    let images: Int
    let enabled = isatty(2) != 0
    let start = Date()

    init(images: Int) { self.images = images }

    func update(image: Int, step: Int, steps: Int) {
        guard enabled else { return }
        let done = Double(image * steps + step) / Double(max(images * steps, 1))
        let width = 30, filled = Int(done * Double(width))
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / done - elapsed : 0
        let line = "\r[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
            + "image \(image + 1)/\(images), step \(step)/\(steps), ETA \(Int(eta.rounded())) s   "
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }
}
