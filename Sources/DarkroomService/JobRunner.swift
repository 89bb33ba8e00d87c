import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTokenizer
import Foundation
import Logging

/// Takes jobs from the inbox to the outbox: claims, runs, delivers, and on any problem fails the job
/// cleanly (its inputs and an `error.json` in `Failed/`) and goes on. The loaded model stays in memory
/// between jobs; a recipe naming another loads that one.
public final class JobRunner {
    public let store: JobStore
    public let scanner: InboxScanner
    public let library: ModelLibrary
    public let decodeLimits: DecodeLimits
    let logger: Logger
    let loadPipeline: (URL) throws -> StableDiffusionPipeline
    var loaded: (url: URL, pipeline: StableDiffusionPipeline, hash: String?)?
    /// Called after every denoising step with (job id, image index, step, steps): status and watchdog.
    public var onStep: ((String, Int, Int, Int) -> Void)?

    public enum Outcome: Equatable { case done, failed(JobFailure), requeued }

    public init(store: JobStore, scanner: InboxScanner, library: ModelLibrary, logger: Logger,
                decodeLimits: DecodeLimits = .default,
                loadPipeline: @escaping (URL) throws -> StableDiffusionPipeline = JobRunner.defaultLoader) {
        self.store = store
        self.scanner = scanner
        self.library = library
        self.logger = logger
        self.decodeLimits = decodeLimits
        self.loadPipeline = loadPipeline
    }

    public static func defaultLoader(_ url: URL) throws -> StableDiffusionPipeline {
        StableDiffusionPipeline(models: try StableDiffusionModels.load(url), tokenizer: try CLIPTokenizer.bundled())
    }

    /// Loads the default model now (so `READY=1` means ready); returns its name, or nil when recipes
    /// must name one.
    @discardableResult
    public func preload() throws -> String? {
        guard let url = try? library.resolve(nil) else { return nil }
        if loaded?.url != url { loaded = (url, try loadPipeline(url), ModelHash.short(for: url)) }
        return url.lastPathComponent
    }

    /// Finishes jobs interrupted earlier, then everything complete in the inbox; returns the outcomes.
    /// `shouldStop` is polled between jobs and steps (a stop requeues the job in progress).
    public func drain(shouldStop: @escaping () -> Bool = { false }) -> [Outcome] {
        var outcomes: [Outcome] = []
        do {
            for record in try store.recover() {
                if shouldStop() { return outcomes }
                outcomes.append(run(record, shouldStop: shouldStop))
            }
        } catch {
            logger.error("cannot recover claimed jobs", metadata: ["error.message": "\(error)"])
        }
        while !shouldStop(), let spec = scanner.scan().first {
            outcomes.append(claimAndRun(spec, shouldStop: shouldStop))
        }
        // Idle now: the freed activation blocks kept for reuse between ops go back to the system.
        LargeBlockCache.shared.releaseAll()
        return outcomes
    }

    func claimAndRun(_ spec: JobSpec, shouldStop: @escaping () -> Bool) -> Outcome {
        // What the claim needs from the recipe: the image count, the seed, a mask it names. A recipe
        // that cannot be read still gets claimed (with one output planned) so it can fail in order.
        let recipeURL = store.inbox.appendingPathComponent(spec.recipe)
        let recipe = try? Recipe.parse(try Data(contentsOf: recipeURL), file: spec.recipe)
        let folder = URL(fileURLWithPath: spec.recipe).deletingLastPathComponent().relativePath
        let namedMask = spec.mask == nil ? recipe?.mask.map { folder == "." ? $0 : "\(folder)/\($0)" } : nil
        let maskExists = namedMask.map { FileManager.default.fileExists(atPath: store.inbox.appendingPathComponent($0).path) } ?? false
        do {
            let record = try store.claim(spec, count: recipe?.configuration.count ?? 1,
                                         seed: recipe?.seed ?? UInt64.random(in: 0...UInt64.max),
                                         mask: maskExists ? namedMask : nil)
            return run(record, shouldStop: shouldStop)
        } catch {
            logger.error("cannot claim job", metadata: ["job.image": "\(spec.image)", "error.message": "\(error)"])
            return .failed(JobFailure(code: "io", message: "\(error)", file: spec.image, field: nil))
        }
    }

    /// Runs a claimed job to the end: delivered, failed, or (on stop) left claimed for the next start.
    public func run(_ record: JobRecord, shouldStop: @escaping () -> Bool) -> Outcome {
        let started = Date()
        var metadata: Logger.Metadata = ["job.id": "\(record.id)", "job.image": "\(record.sources["image"] ?? "")"]
        logger.info("job started", metadata: metadata)
        do {
            let result = try execute(record, shouldStop: shouldStop)
            try store.complete(record)
            metadata["job.mode"] = "\(result.mode)"
            metadata["job.outputs"] = "\(record.outputs.joined(separator: ","))"
            metadata["job.seconds"] = "\(String(format: "%.1f", Date().timeIntervalSince(started)))"
            logger.info("job done", metadata: metadata)
            return .done
        } catch let failure as JobFailure where failure.code == "cancelled" {
            logger.info("job requeued (stopping)", metadata: metadata)
            return .requeued
        } catch {
            let failure = (error as? JobFailure) ?? JobFailure(code: "pipeline", message: "\(error)", file: nil, field: nil)
            metadata["error.code"] = "\(failure.code)"
            metadata["error.file"] = "\(failure.file ?? "")"
            metadata["error.message"] = "\(failure.message)"
            logger.info("job failed", metadata: metadata)
            do { try store.fail(record, error: failure) } catch {
                logger.error("cannot move failed job", metadata: ["job.id": "\(record.id)", "error.message": "\(error)"])
            }
            return .failed(failure)
        }
    }

    struct Executed { let mode: PipelineConfiguration.Mode }

    func execute(_ record: JobRecord, shouldStop: @escaping () -> Bool) throws -> Executed {
        let jobStart = Date()
        let source = { (role: String) in record.sources[role] ?? role }
        guard let recipeURL = store.claimed(record, role: "recipe"), let imageURL = store.claimed(record, role: "image") else {
            throw JobFailure(code: "io", message: "The job record lacks its image or recipe.", file: nil, field: nil)
        }
        // Inputs must be files of the inbox itself: a symbolic link could point anywhere.
        for role in ["recipe", "image", "mask"] {
            guard let url = store.claimed(record, role: role) else { continue }
            var info = stat()
            if lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
                throw JobFailure(code: role, message: "'\(source(role))' is a symbolic link; Darkroom only reads files placed in the inbox itself.",
                                 file: source(role), field: role == "mask" ? "mask" : nil)
            }
        }
        // Recipe.
        let recipe: Recipe
        do {
            recipe = try Recipe.parse(try Data(contentsOf: recipeURL), file: source("recipe"))
        } catch let error as RecipeError {
            throw JobFailure(code: "recipe", message: error.description, file: source("recipe"), field: error.problems.first?.field)
        } catch {
            throw JobFailure(code: "recipe", message: "Cannot read recipe '\(source("recipe"))': \(error.localizedDescription)",
                             file: source("recipe"), field: nil)
        }
        var configuration = recipe.configuration
        configuration.generation.seed = record.seed
        // Images.
        let image = try decode(imageURL, name: source("image"))
        var mask: Image?
        if configuration.mode == .inpaint {
            guard let maskURL = store.claimed(record, role: "mask") else {
                let expected = recipe.mask ?? "\(URL(fileURLWithPath: source("image")).deletingPathExtension().lastPathComponent).mask.png"
                throw JobFailure(code: "mask", message: "Inpainting needs a mask: '\(expected)' was not found beside the recipe.",
                                 file: expected, field: "mask")
            }
            mask = try decode(maskURL, name: source("mask"))
        }
        // Model.
        let modelURL = try library.resolve(recipe.model)
        let pipeline: StableDiffusionPipeline, modelHash: String?
        if let loaded, loaded.url == modelURL { (pipeline, modelHash) = (loaded.pipeline, loaded.hash) } else {
            loaded = nil
            do { pipeline = try loadPipeline(modelURL) } catch {
                throw JobFailure(code: "model", message: "Cannot load model '\(modelURL.lastPathComponent)': \(error)", file: modelURL.path, field: "model")
            }
            modelHash = ModelHash.short(for: modelURL)
            loaded = (modelURL, pipeline, modelHash)
        }
        // One image per seed; an output that exists was delivered by an earlier attempt of this job.
        var seeds: [UInt64] = []
        for (index, output) in record.outputs.enumerated() {
            let seed = record.seed &+ UInt64(index)
            seeds.append(seed)
            let url = store.outbox.appendingPathComponent(output)
            if FileManager.default.fileExists(atPath: url.path) { continue }
            var single = configuration
            single.count = 1
            single.generation.seed = seed
            let results: [GenerationResult]
            do {
                let onStep = self.onStep
                let logger = self.logger, imageStart = Date()
                results = try pipeline.run(single, image: image, mask: mask, progress: { _, step, steps in
                    onStep?(record.id, index, step, steps)
                    let elapsed = Date().timeIntervalSince(imageStart)
                    logger.debug("step", metadata: ["job.id": "\(record.id)", "job.image_index": "\(index + 1)",
                                                    "job.step": "\(step)/\(steps)",
                                                    "job.eta_seconds": "\(Int((elapsed / Double(step) * Double(steps - step)).rounded()))"])
                    return !shouldStop()
                })
            } catch PipelineError.cancelled {
                throw JobFailure(code: "cancelled", message: "Stopped; the job stays claimed and resumes at the next start.", file: nil, field: nil)
            } catch PipelineError.maskSizeMismatch(_, let maskSize, let imageSize) {
                throw JobFailure(code: "mask", message: "Mask '\(source("mask"))' is \(maskSize) but image '\(source("image"))' is \(imageSize); the mask must have the image's size.",
                                 file: source("mask"), field: "mask")
            } catch PipelineError.emptyMask {
                throw JobFailure(code: "mask", message: "Mask '\(source("mask"))' is entirely black: nothing to repaint (white marks the area to repaint).",
                                 file: source("mask"), field: "mask")
            } catch let error as PipelineError {
                throw JobFailure(code: "pipeline", message: error.description, file: source("image"), field: nil)
            }
            let png = try ImageTensor.image(fromUnitRange: results[0].image)
            let text = A1111Parameters.text(configuration: single, seed: seed, width: png.width, height: png.height,
                                            modelName: modelURL.deletingPathExtension().lastPathComponent, modelHash: modelHash)
            try AtomicFile.write(try PNGEncoder.encode(png, text: [(key: "parameters", value: text)]), to: url)
            if index == 0, let defects = results[0].defectMask {
                let maskURL = url.deletingPathExtension().appendingPathExtension("defects.png")
                let samples = defects.scalars.map { UInt16($0 > 0.5 ? 255 : 0) }
                let maskImage = try Image(width: defects.shape[3], height: defects.shape[2], layout: .gray, bitDepth: 8, samples: samples)
                if !FileManager.default.fileExists(atPath: maskURL.path) { try AtomicFile.write(try PNGEncoder.encode(maskImage), to: maskURL) }
            }
        }
        // The report.
        var report: [String: Any] = [
            "job": record.id, "input": source("image"), "recipe": source("recipe"),
            "mode": configuration.mode.rawValue, "prompt": configuration.generation.prompt,
            "negative_prompt": configuration.generation.negativePrompt, "steps": configuration.generation.steps,
            "strength": configuration.generation.strength, "guidance": Double(configuration.generation.guidance),
            "sampler": configuration.generation.sampler, "seeds": seeds.map { "\($0)" }, "outputs": record.outputs,
            "model": modelURL.lastPathComponent, "model_hash": modelHash ?? "", "software": "Darkroom",
            "seconds": (Date().timeIntervalSince(jobStart) * 10).rounded() / 10,
        ]
        if let mask = record.sources["mask"] { report["mask"] = mask }
        let reportURL = store.outbox.appendingPathComponent(record.report)
        if !FileManager.default.fileExists(atPath: reportURL.path) {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
            try AtomicFile.write(Array(data), to: reportURL)
        }
        return Executed(mode: configuration.mode)
    }

    func decode(_ url: URL, name: String) throws -> Image {
        do { return try ImageDecoder.decode(fileAt: url, limits: decodeLimits).image } catch {
            throw JobFailure(code: "image", message: "\(error)".replacingOccurrences(of: url.path, with: name), file: name, field: nil)
        }
    }
}
