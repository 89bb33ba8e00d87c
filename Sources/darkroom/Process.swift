import ArgumentParser
import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomService
import DarkroomTokenizer
import Foundation

struct Process: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one job: an image and a recipe (and a mask for inpainting) → PNG(s) with A1111 parameters.")

    @Argument(help: "The input image (PNG or JPEG).")
    var image: String

    @Option(help: "The recipe (JSON; see Recipes/recipe.schema.json).")
    var recipe: String

    @Option(help: "The mask image (white = repaint); default: the recipe's `mask`, beside the recipe.")
    var mask: String?

    @Option(help: "A .safetensors checkpoint or a diffusers folder.")
    var model: String

    @Option(help: "A diffusers folder whose configs describe a single-file checkpoint.")
    var modelConfig: String?

    @Option(help: "Output PNG; with count > 1 the others are NAME-2.png, NAME-3.png, …. Existing files are never overwritten.")
    var output: String

    func run() throws {
        let recipeURL = URL(fileURLWithPath: recipe)
        let parsed = try Recipe.parse(try Data(contentsOf: recipeURL), file: recipe)
        var configuration = parsed.configuration
        let seed = parsed.seed ?? UInt64.random(in: 0...UInt64.max)
        configuration.generation.seed = seed
        let input = try ImageDecoder.decode(fileAt: URL(fileURLWithPath: image)).image
        let maskPath = mask ?? parsed.mask.map { recipeURL.deletingLastPathComponent().appendingPathComponent($0).path }
        let maskImage = try maskPath.map { try ImageDecoder.decode(fileAt: URL(fileURLWithPath: $0)).image }

        let outputs = (0..<configuration.count).map { i -> URL in
            let base = URL(fileURLWithPath: output)
            guard i > 0 else { return base }
            let stem = base.deletingPathExtension().lastPathComponent
            return base.deletingLastPathComponent().appendingPathComponent("\(stem)-\(i + 1).png")
        }
        for url in outputs where FileManager.default.fileExists(atPath: url.path) {
            throw ValidationError("'\(url.path)' exists; Darkroom never overwrites an output. Choose another --output.")
        }
        let models = try StableDiffusionModels.load(URL(fileURLWithPath: model), config: modelConfig.map { URL(fileURLWithPath: $0) })
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: try CLIPTokenizer.bundled())
        let start = Date()
        let bar = ProgressBar(images: configuration.count)
        let results = try pipeline.run(configuration, image: input, mask: maskImage, progress: { index, step, steps in
            bar.update(image: index, step: step, steps: steps)
            return true
        })
        bar.finish()
        let modelName = URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent
        for (result, url) in zip(results, outputs) {
            let png = try ImageTensor.image(fromUnitRange: result.image)
            let text = A1111Parameters.text(configuration: configuration, seed: result.seed, width: png.width, height: png.height,
                                            modelName: modelName, modelHash: ModelHash.short(for: URL(fileURLWithPath: model)))
            try AtomicFile.write(try PNGEncoder.encode(png, text: [(key: "parameters", value: text)]), to: url)
            print("\(url.path)  seed \(result.seed)")
        }
        print(String(format: "%d image(s) in %.1f s", results.count, Date().timeIntervalSince(start)))
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
