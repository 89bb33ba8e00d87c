import DarkroomImageIO
import DarkroomModels
import DarkroomPipeline
import DarkroomTensor
import DarkroomTokenizer
import DarkroomWeights
import Foundation
import Logging

/// The one path from a recipe and its inputs to results (diffusers' `DiffusionPipeline.__call__` as a
/// job): the worker process of `darkroom run`, in-process runs and `darkroom process` all call it, so
/// they share the recipe reading, the checks, the naming of outputs, the PNG parameters, the defect
/// mask and the report. Results are written to a staging folder (each output fsynced there); the
/// caller publishes them together (`JobStore.deliver`), so a reader never sees a PNG without its report.
///
/// A loaded model stays in memory between jobs; a recipe naming another model loads that one.
public final class JobExecutor {
    /// One job's inputs and the names of its results.
    public struct Inputs: Sendable {
        public var recipe: URL
        public var image: URL
        public var mask: URL?
        /// How the inputs are named in messages and the report (inbox-relative names, or the paths given).
        public var recipeName: String, imageName: String, maskName: String?
        /// The first image's seed (the recipe's, or drawn by the caller and recorded).
        public var seed: UInt64
        /// The results' names, in seed order, then the report's; staged by their last path component.
        public var outputs: [String]
        public var report: String
        /// The recipe's own control images (`controlnet[i].image`), by unit index, with their names.
        public var controlImages: [Int: (url: URL, name: String)] = [:]

        public init(recipe: URL, image: URL, mask: URL?, recipeName: String, imageName: String, maskName: String?,
                    seed: UInt64, outputs: [String], report: String, controlImages: [Int: (url: URL, name: String)] = [:]) {
            (self.recipe, self.image, self.mask, self.recipeName, self.imageName, self.maskName) = (recipe, image, mask, recipeName, imageName, maskName)
            (self.seed, self.outputs, self.report, self.controlImages) = (seed, outputs, report, controlImages)
        }

        /// The defect mask's name: beside the first output (`photo.defects.png`).
        public var defects: String? { outputs.first.map { String($0.dropLast(4)) + ".defects.png" } }
    }

    /// Called after every denoising step with (image index, step, steps); returns false to stop.
    public typealias Progress = (Int, Int, Int) -> Bool

    /// Which checkpoint a recipe's `model` (nil: none named) runs on.
    let resolveModel: (String?) throws -> URL
    let loadPipeline: (URL) throws -> StableDiffusionPipeline
    /// Where a recipe's LoRA names point (nil: LoRAs cannot be used).
    let resolveLoRA: ((String) throws -> URL)?
    /// Where a recipe's `vae` name points (nil: only A1111's VAE beside the checkpoint can be used).
    let resolveVAE: ((String) throws -> URL)?
    /// Where a recipe's `upscaler` name points (nil: only Lanczos can be used).
    let resolveUpscaler: ((String) throws -> URL)?
    /// The last upscaler model loaded, kept for the next job that names it.
    var loadedUpscaler: (url: URL, model: UpscalerModel, hash: String?)?
    /// The checkpoint's pipeline with a separate VAE, and that VAE's path.
    var withVAE: (vae: URL, pipeline: StableDiffusionPipeline)?
    /// Where a recipe's ControlNet names point, and restoration's tile preset (nil: ControlNets cannot be used).
    let resolveControlNet: ((String) throws -> URL)?
    let tileControlNet: (() -> String?)?
    /// ControlNets loaded for the current checkpoint, kept while jobs use them.
    var controlNetModels: [String: ControlNetModel] = [:]
    let hashCache: URL?
    /// Where prompt words find textual-inversion embeddings (nil: none).
    let embeddings: EmbeddingLibrary?
    public let decodeLimits: DecodeLimits
    /// The products' precision of jobs whose recipe names none (`--precision`).
    public var defaultPrecision = Precision.fp32
    let logger: Logger
    var loaded: (url: URL, pipeline: StableDiffusionPipeline, hash: String?)?
    /// The last LoRA-patched pipeline and what it was built from, reused while jobs ask for the same set.
    var patched: (key: [String], pipeline: StableDiffusionPipeline, hashes: [(name: String, hash: String)])?

    public init(resolveModel: @escaping (String?) throws -> URL, logger: Logger, decodeLimits: DecodeLimits = .default,
                hashCache: URL? = ModelHash.defaultCacheFolder(), resolveLoRA: ((String) throws -> URL)? = nil,
                resolveVAE: ((String) throws -> URL)? = nil, embeddings: EmbeddingLibrary? = nil,
                resolveControlNet: ((String) throws -> URL)? = nil, tileControlNet: (() -> String?)? = nil,
                resolveUpscaler: ((String) throws -> URL)? = nil,
                loadPipeline: @escaping (URL) throws -> StableDiffusionPipeline = JobExecutor.defaultLoader) {
        self.resolveModel = resolveModel
        self.resolveControlNet = resolveControlNet
        self.tileControlNet = tileControlNet
        self.resolveUpscaler = resolveUpscaler
        self.resolveLoRA = resolveLoRA
        self.resolveVAE = resolveVAE
        self.embeddings = embeddings
        self.loadPipeline = loadPipeline
        self.hashCache = hashCache
        self.decodeLimits = decodeLimits
        self.logger = logger
    }

    /// For the inbox: models are names in `library`.
    public convenience init(library: ModelLibrary, logger: Logger, decodeLimits: DecodeLimits = .default,
                            loadPipeline: @escaping (URL) throws -> StableDiffusionPipeline = JobExecutor.defaultLoader) {
        self.init(resolveModel: { try library.resolve($0) }, logger: logger, decodeLimits: decodeLimits,
                  resolveLoRA: { try library.resolveLoRA($0) }, resolveVAE: { try library.resolveVAE($0) },
                  embeddings: EmbeddingLibrary(models: library.folder),
                  resolveControlNet: { try library.resolveControlNet($0) }, tileControlNet: { library.tileControlNet },
                  resolveUpscaler: { try library.resolveUpscaler($0) },
                  loadPipeline: loadPipeline)
    }

    public static func defaultLoader(_ url: URL) throws -> StableDiffusionPipeline {
        StableDiffusionPipeline(models: try StableDiffusionModels.load(url), tokenizer: try CLIPTokenizer.bundled())
    }

    /// Loads the default model now (so `READY=1` means ready); returns its name, or nil when recipes
    /// must name one.
    @discardableResult
    public func preload() throws -> String? {
        guard let url = try? resolveModel(nil) else { return nil }
        _ = try pipeline(for: url)
        return url.lastPathComponent
    }

    func pipeline(for url: URL) throws -> (StableDiffusionPipeline, String?) {
        if let loaded, loaded.url == url { return (loaded.pipeline, loaded.hash) }
        loaded = nil
        patched = nil
        withVAE = nil
        controlNetModels = [:]
        let pipeline: StableDiffusionPipeline
        do { pipeline = try loadPipeline(url) } catch {
            throw JobFailure(code: "model", message: "Cannot load model '\(url.lastPathComponent)': \(error)", file: url.lastPathComponent, field: "model")
        }
        let hash = ModelHash.short(for: url, cacheFolder: hashCache)
        loaded = (url, pipeline, hash)
        return (pipeline, hash)
    }

    /// `base` with the recipe's LoRAs applied (the same pipeline when there are none), and each LoRA's A1111
    /// short hash. The patched pipeline is kept for the next job with the same set; `base` is never changed,
    /// so a job without LoRAs runs on exactly the checkpoint's weights.
    /// The separate VAE a job uses: the recipe's `vae` (in the VAE folder), "none" for the checkpoint's own, else
    /// A1111's `<checkpoint>.vae.safetensors` beside it; nil: the checkpoint's own.
    func vae(for recipe: Recipe, model: URL, inputs: Inputs) throws -> URL? {
        guard let name = recipe.vae else { return ModelLibrary.sidecarVAE(for: model) }
        if name.lowercased() == "none" { return nil }
        guard let resolveVAE else {
            throw JobFailure(code: "recipe", message: "Recipe '\(inputs.recipeName)' names a VAE, but no VAE folder is configured.", file: inputs.recipeName, field: "vae")
        }
        return try resolveVAE(name)
    }

    /// `base` with the VAE of `url` (kept for the next job with the same VAE); `base` itself when nil.
    func applying(vae url: URL?, to base: StableDiffusionPipeline) throws -> StableDiffusionPipeline {
        guard let url else { withVAE = nil; return base }
        if let withVAE, withVAE.vae == url { return withVAE.pipeline }
        withVAE = nil
        let models: StableDiffusionModels
        do { models = try base.models.replacingVAE(with: url) } catch {
            throw JobFailure(code: "model", message: "Cannot use VAE '\(url.lastPathComponent)': \(error)", file: url.lastPathComponent, field: "vae")
        }
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: base.tokenizer)
        withVAE = (url, pipeline)
        return pipeline
    }

    func applying(_ uses: [LoRAUse], to base: StableDiffusionPipeline, vae: URL?, inputs: Inputs) throws
        -> (StableDiffusionPipeline, [(name: String, hash: String)]) {
        guard !uses.isEmpty else {
            patched = nil   // its patched layers' memory goes back
            return (base, [])
        }
        guard let resolveLoRA else {
            throw JobFailure(code: "recipe", message: "Recipe '\(inputs.recipeName)' names LoRAs, but no LoRA folder is configured.", file: inputs.recipeName, field: "loras")
        }
        // Several mentions of one file add up (A1111 applies each).
        var order: [URL] = []
        var weights: [URL: LoRA.Weighting] = [:]
        var names: [URL: String] = [:]
        for use in uses {
            let url = try resolveLoRA(use.name)
            if weights[url] == nil { order.append(url); names[url] = use.name }
            var w = weights[url] ?? LoRA.Weighting(textEncoder: 0, unet: 0)
            w.textEncoder += Float(use.textEncoderWeight)
            w.unet += Float(use.unetWeight)
            weights[url] = w
        }
        let key = [base.models.checkpoint.url.path, vae?.path ?? ""] + order.map { url -> String in
            let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
            let stamp = "\((attributes?[.size] as? Int) ?? -1)/\((attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1)"
            let w = weights[url, default: LoRA.Weighting(0)]
            return "\(url.path)|\(stamp)|\(w.textEncoder)|\(w.unet)"
        }
        if let patched, patched.key == key { return (patched.pipeline, patched.hashes) }
        patched = nil
        let start = Date()
        var loras: [(lora: LoRA, weighting: LoRA.Weighting)] = []
        for url in order {
            let name = names[url] ?? url.lastPathComponent
            do { loras.append((try LoRA.open(url, model: base.models.checkpoint), weights[url, default: LoRA.Weighting(0)])) } catch {
                throw JobFailure(code: "model", message: "Cannot use LoRA '\(name)': \(error)", file: name, field: "loras")
            }
        }
        let models: StableDiffusionModels
        do { models = try base.models.applying(loras) } catch {
            throw JobFailure(code: "model", message: "Cannot apply the LoRAs \(order.map { names[$0] ?? "" }.joined(separator: ", ")): \(error)", file: nil, field: "loras")
        }
        let pipeline = StableDiffusionPipeline(models: models, tokenizer: base.tokenizer)
        let hashes = order.map { (name: names[$0] ?? $0.lastPathComponent, hash: ModelHash.loraShort(for: $0, cacheFolder: hashCache) ?? "") }
        logger.info("applied LoRAs", metadata: ["lora.names": "\(hashes.map(\.name).joined(separator: ","))",
                                                "lora.layers": "\(loras.reduce(0) { $0 + $1.lora.layers.count })",
                                                "lora.seconds": "\(String(format: "%.3f", Date().timeIntervalSince(start)))"])
        patched = (key, pipeline, hashes)
        return (pipeline, hashes)
    }

    /// Runs one job into `staging`; returns its mode. Results already staged by an earlier attempt are
    /// kept (a resumed job computes only what is missing). Throws `JobFailure` (code `cancelled` when
    /// `progress` returned false).
    @discardableResult
    public func execute(_ inputs: Inputs, staging: URL, progress: Progress? = nil) throws -> PipelineConfiguration.Mode {
        let jobStart = Date()
        // The bf16 weights packed during the job are kept for the next process (nothing to do when none were made).
        defer { PackedWeightStore.saveAll() }
        let recipe = try Self.readRecipe(inputs.recipe, name: inputs.recipeName)
        var configuration = recipe.configuration
        configuration.generation.seed = inputs.seed
        configuration.generation.precision = recipe.precision ?? defaultPrecision
        guard inputs.outputs.count == configuration.count else {
            throw JobFailure(code: "recipe", message: "The job planned \(inputs.outputs.count) image(s) but recipe '\(inputs.recipeName)' asks for \(configuration.count); its recipe changed after it was claimed.",
                             file: inputs.recipeName, field: "count")
        }
        // Images.
        let image = try decode(inputs.image, name: inputs.imageName)
        var mask: Image?
        if configuration.mode == .inpaint {
            guard let maskURL = inputs.mask else {
                let imageFile = URL(fileURLWithPath: inputs.imageName).lastPathComponent
                if let named = recipe.mask, named == imageFile || named == URL(fileURLWithPath: inputs.recipeName).lastPathComponent {
                    throw JobFailure(code: "mask", message: "The recipe's mask '\(named)' names the job's own \(named == imageFile ? "image" : "recipe"); the mask must be a file of its own.",
                                     file: inputs.recipeName, field: "mask")
                }
                let expected = recipe.mask ?? "\(URL(fileURLWithPath: imageFile).deletingPathExtension().lastPathComponent).mask.png"
                throw JobFailure(code: "mask", message: "Inpainting needs a mask: '\(expected)' was not found beside the recipe.",
                                 file: expected, field: "mask")
            }
            mask = try decode(maskURL, name: inputs.maskName ?? maskURL.lastPathComponent)
        }
        // An upscaler alone needs no checkpoint: no text encoder, UNet or VAE is loaded for it.
        if configuration.mode == .upscale {
            return try executeUpscale(inputs, configuration: configuration, image: image, staging: staging, progress: progress, start: jobStart)
        }
        let upscaler = try upscaler(configuration.upscaler, inputs: inputs)
        if let upscaler { configuration.upscaler = upscaler.name }
        if configuration.mode == .restore { configuration.autoColor = configuration.appliesAutoColor(to: image) }
        // Model, and the recipe checked against it before any compute (steps after the scheduler's
        // offset, sizes, channels).
        let modelURL = try resolveModel(recipe.model)
        let (checkpointPipeline, modelHash) = try pipeline(for: modelURL)
        let vaeURL = try vae(for: recipe, model: modelURL, inputs: inputs)
        let basePipeline = try applying(vae: vaeURL, to: checkpointPipeline)
        let (pipeline, loraHashes) = try applying(recipe.loras, to: basePipeline, vae: vaeURL, inputs: inputs)
        let vaeInfo = vaeURL.map { (name: $0.lastPathComponent, hash: ModelHash.short(for: $0, cacheFolder: hashCache)) }
        let controlNets = try controlNetRequests(recipe, configuration: &configuration, pipeline: pipeline, inputs: inputs)
        do { try pipeline.validate(configuration, imageWidth: image.width, imageHeight: image.height) } catch {
            throw Self.failure(error, inputs: inputs)
        }
        let g = configuration.generation
        let embeddingsUsed = try embeddings?.used(by: [g.prompt, g.negativePrompt], tokenizer: pipeline.tokenizer,
                                                  textEncoders: pipeline.models.textEncoders,
                                                  family: pipeline.models.checkpoint.family.name) ?? []
        configuration.generation.embeddings = embeddingsUsed.map(\.embedding)
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        // One image per seed; an output already staged was produced by an earlier attempt of this job.
        var seeds: [UInt64] = []
        for (index, output) in inputs.outputs.enumerated() {
            let seed = inputs.seed &+ UInt64(index)
            seeds.append(seed)
            let url = staging.appendingPathComponent(URL(fileURLWithPath: output).lastPathComponent)
            if FileManager.default.fileExists(atPath: url.path) { continue }
            var single = configuration
            single.count = 1
            single.generation.seed = seed
            let results: [GenerationResult]
            do {
                results = try pipeline.run(single, image: image, mask: mask, upscaler: upscaler?.model,
                                           controlNets: controlNets.map(\.request), progress: { _, step, steps in
                    progress?(index, step, steps) ?? true
                })
            } catch {
                throw Self.failure(error, inputs: inputs)
            }
            guard let result = results.first else {
                throw JobFailure(code: "pipeline", message: "The pipeline returned no image for '\(inputs.imageName)'.", file: inputs.imageName, field: nil)
            }
            let png: Image
            do { png = try ImageTensor.image(fromUnitRange: result.image) } catch {
                throw JobFailure(code: "non_finite", message: "The result of '\(inputs.imageName)' could not be converted to an image: \(error)",
                                 file: inputs.imageName, field: nil)
            }
            let text = A1111Parameters.text(configuration: single, seed: seed, width: png.width, height: png.height,
                                            modelName: modelURL.deletingPathExtension().lastPathComponent, modelHash: modelHash,
                                            prompt: recipe.writtenPrompt, vae: vaeInfo, tiHashes: EmbeddingLibrary.tiHashes(embeddingsUsed),
                                            extra: (A1111Parameters.loraHashes(loraHashes).map { [$0] } ?? [])
                                                + controlNets.enumerated().map { A1111Parameters.controlNet($0, $1.use, hash: $1.hash) })
            if index == 0, let defects = result.defectMask, defects.shape.count == 4, let name = inputs.defects {
                let samples = defects.scalars.map { UInt16($0 > 0.5 ? 255 : 0) }
                let maskImage = try Image(width: defects.shape[3], height: defects.shape[2], layout: .gray, bitDepth: 8, samples: samples)
                try writeStaged(try PNGEncoder.encode(maskImage), to: staging.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent))
            }
            try writeStaged(try PNGEncoder.encode(png, text: [(key: "parameters", value: text)]), to: url)
        }
        // The report, last: a staged report means every result of the job is staged.
        var report: [String: Any] = [
            "input": inputs.imageName, "recipe": inputs.recipeName,
            "mode": configuration.mode.rawValue, "prompt": configuration.generation.prompt,
            "negative_prompt": configuration.generation.negativePrompt, "steps": configuration.generation.steps,
            "strength": configuration.generation.strength, "guidance": Double(configuration.generation.guidance),
            "sampler": configuration.generation.sampler, "seeds": seeds.map { "\($0)" }, "outputs": inputs.outputs,
            "model": modelURL.lastPathComponent, "model_hash": modelHash ?? "", "software": "Darkroom",
            "seconds": (Date().timeIntervalSince(jobStart) * 10).rounded() / 10,
            "precision": configuration.generation.precision.rawValue,
        ]
        if let mask = inputs.maskName { report["mask"] = mask }
        if configuration.mode == .restore {
            report["auto_color"] = configuration.autoColor == true ? configuration.autoColorBalance.rawValue : "off"
        }
        if configuration.mode == .restore, configuration.upscale > 1 {
            report["upscale"] = configuration.upscale
            report["upscaler"] = upscaler?.name ?? "lanczos"
            if let hash = upscaler?.hash { report["upscaler_hash"] = hash }
        }
        if let spacing = configuration.generation.timestepSpacing { report["timestep_spacing"] = spacing }
        if let written = recipe.writtenPrompt { report["prompt"] = written }
        if let vaeInfo {
            report["vae"] = vaeInfo.name
            if let hash = vaeInfo.hash { report["vae_hash"] = hash }
        }
        if !recipe.loras.isEmpty {
            let hashes = Dictionary(loraHashes.map { ($0.name, $0.hash) }, uniquingKeysWith: { a, _ in a })
            report["loras"] = recipe.loras.map { use -> [String: Any] in
                var entry: [String: Any] = ["name": use.name, "weight": use.textEncoderWeight, "hash": hashes[use.name] ?? ""]
                if use.unetWeight != use.textEncoderWeight { entry["unet_weight"] = use.unetWeight }
                return entry
            }
        }
        if !controlNets.isEmpty {
            report["controlnet"] = controlNets.map { unit -> [String: Any] in
                var entry: [String: Any] = ["model": unit.use.model, "module": unit.use.module, "weight": unit.use.weight,
                                            "start": unit.use.start, "end": unit.use.end, "guess_mode": unit.use.guessMode]
                if let image = unit.use.image { entry["image"] = image }
                if unit.isPreset { entry["preset"] = "restore tile" }
                return entry
            }
        }
        if !embeddingsUsed.isEmpty {
            report["embeddings"] = embeddingsUsed.map { ["name": $0.embedding.name, "file": $0.file, "hash": $0.hash, "vectors": $0.embedding.count] as [String: Any] }
        }
        if let defects = inputs.defects, FileManager.default.fileExists(atPath: staging.appendingPathComponent(URL(fileURLWithPath: defects).lastPathComponent).path) {
            report["defects"] = defects
        }
        let reportURL = staging.appendingPathComponent(URL(fileURLWithPath: inputs.report).lastPathComponent)
        if !FileManager.default.fileExists(atPath: reportURL.path) {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeStaged(Array(data), to: reportURL)
        }
        return configuration.mode
    }

    /// The job's ControlNet units: the recipe's `controlnet` list, or for a restoration without one, the tile preset
    /// when `Models/ControlNet/` has a tile model (strength `PipelineConfiguration.tileRestorationStrength` unless the
    /// recipe set one). Each ControlNet is loaded for the checkpoint (kept for the next job) and its control image read.
    func controlNetRequests(_ recipe: Recipe, configuration: inout PipelineConfiguration, pipeline: StableDiffusionPipeline,
                            inputs: Inputs) throws -> [(request: ControlNetRequest, use: ControlNetUse, hash: String?, isPreset: Bool)] {
        var uses = recipe.controlNets ?? []
        var isPreset = false
        if recipe.controlNets == nil, configuration.mode == .restore, let tile = tileControlNet?() {
            uses = [ControlNetUse(model: tile.hasSuffix(".safetensors") ? String(tile.dropLast(".safetensors".count)) : tile, module: "tile_resample")]
            isPreset = true
        }
        guard !uses.isEmpty else { return [] }
        guard let resolveControlNet else {
            throw JobFailure(code: "recipe", message: "Recipe '\(inputs.recipeName)' names a ControlNet, but no ControlNet folder is configured.",
                             file: inputs.recipeName, field: "controlnet")
        }
        var requests: [(request: ControlNetRequest, use: ControlNetUse, hash: String?, isPreset: Bool)] = []
        for (i, use) in uses.enumerated() {
            let field = "controlnet[\(i)]"
            let url = try resolveControlNet(use.model)
            let model: ControlNetModel
            if let known = controlNetModels[url.path] { model = known } else {
                do { model = try pipeline.models.loadControlNet(url) } catch {
                    if isPreset {   // a tile model for another family: restoration goes on without it, as before
                        logger.warning("restore tile preset skipped", metadata: ["controlnet": "\(url.lastPathComponent)", "error.message": "\(error)"])
                        return []
                    }
                    throw JobFailure(code: "model", message: "Cannot use ControlNet '\(url.lastPathComponent)': \(error)",
                                     file: url.lastPathComponent, field: "\(field).model")
                }
                controlNetModels[url.path] = model
            }
            let preprocessor: ControlPreprocessor
            do { preprocessor = try use.preprocessor() } catch {
                throw JobFailure(code: "recipe", message: "\(error)", file: inputs.recipeName, field: "\(field).module")
            }
            var own: Image?
            if let name = use.image {
                guard let file = inputs.controlImages[i] else {
                    throw JobFailure(code: "recipe", message: "The control image '\(name)' of \(field) was not found beside the recipe.",
                                     file: name, field: "\(field).image")
                }
                own = try decode(file.url, name: file.name)
            }
            let request = ControlNetRequest(model: model, preprocessor: preprocessor, image: own, weight: Float(use.weight),
                                            start: use.start, end: use.end, guessMode: use.guessMode)
            requests.append((request, use, url.pathExtension == "safetensors" ? ModelHash.short(for: url, cacheFolder: hashCache).map { String($0.prefix(8)) } : nil, isPreset))
        }
        if isPreset, !recipe.setsStrength { configuration.generation.strength = PipelineConfiguration.tileRestorationStrength }
        return requests
    }

    /// The upscaler model a recipe's `upscaler` names, loaded (kept for the next job naming the same file), with its
    /// name as A1111 lists it (the file name without extension) and its A1111 short hash; nil for Lanczos.
    func upscaler(_ name: String?, inputs: Inputs) throws -> (model: UpscalerModel, name: String, hash: String?)? {
        guard let name else { return nil }
        guard let resolveUpscaler else {
            throw JobFailure(code: "recipe", message: "Recipe '\(inputs.recipeName)' names an upscaler, but no upscaler folder is configured.",
                             file: inputs.recipeName, field: "upscaler")
        }
        let url = try resolveUpscaler(name)
        let stem = url.deletingPathExtension().lastPathComponent
        if let loadedUpscaler, loadedUpscaler.url == url { return (loadedUpscaler.model, stem, loadedUpscaler.hash) }
        loadedUpscaler = nil
        let model: UpscalerModel
        do { model = try UpscalerModel.load(url) } catch {
            throw JobFailure(code: "model", message: "Cannot load upscaler '\(url.lastPathComponent)': \(error)", file: url.lastPathComponent, field: "upscaler")
        }
        logger.info("loaded upscaler", metadata: ["upscaler.name": "\(stem)", "upscaler.network": "\(model.summary)"])
        let hash = ModelHash.short(for: url, cacheFolder: hashCache)
        loadedUpscaler = (url, model, hash)
        return (model, stem, hash)
    }

    /// A `mode: upscale` job (A1111's Extras tab): the upscaler alone, one image, no checkpoint. Its PNG carries
    /// A1111's `postprocessing` and `extras` text, and the report names the upscaler and the factor.
    func executeUpscale(_ inputs: Inputs, configuration: PipelineConfiguration, image: Image, staging: URL,
                        progress: Progress?, start: Date) throws -> PipelineConfiguration.Mode {
        var configuration = configuration
        let upscaler = try upscaler(configuration.upscaler, inputs: inputs)
        configuration.upscaler = upscaler?.name
        let factor = ImageUpscaling.factor(configuration, model: upscaler?.model)
        do { try ImageUpscaling.validate(configuration, model: upscaler?.model, imageWidth: image.width, imageHeight: image.height) } catch {
            throw Self.failure(error, inputs: inputs)
        }
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        guard let output = inputs.outputs.first else {
            throw JobFailure(code: "recipe", message: "The job planned no image.", file: inputs.recipeName, field: "count")
        }
        let url = staging.appendingPathComponent(URL(fileURLWithPath: output).lastPathComponent)
        if !FileManager.default.fileExists(atPath: url.path) {
            let results: [GenerationResult]
            do {
                results = try ImageUpscaling.run(configuration, image: image, model: upscaler?.model) { index, done, total in
                    progress?(index, done, total) ?? true
                }
            } catch {
                throw Self.failure(error, inputs: inputs)
            }
            guard let result = results.first else {
                throw JobFailure(code: "pipeline", message: "The upscaler returned no image for '\(inputs.imageName)'.", file: inputs.imageName, field: nil)
            }
            let png = try ImageTensor.image(fromUnitRange: result.image)
            let text = A1111Parameters.postprocessing(upscaleBy: factor, upscaler: upscaler?.name)
            try writeStaged(try PNGEncoder.encode(png, text: [(key: "postprocessing", value: text), (key: "extras", value: text)]), to: url)
        }
        var report: [String: Any] = [
            "input": inputs.imageName, "recipe": inputs.recipeName, "mode": configuration.mode.rawValue,
            "outputs": inputs.outputs, "upscale": factor, "upscaler": upscaler?.name ?? "lanczos", "software": "Darkroom",
            "seconds": (Date().timeIntervalSince(start) * 10).rounded() / 10,
        ]
        if let upscaler {
            report["upscaler_network"] = upscaler.model.summary
            if let hash = upscaler.hash { report["upscaler_hash"] = hash }
        }
        let reportURL = staging.appendingPathComponent(URL(fileURLWithPath: inputs.report).lastPathComponent)
        if !FileManager.default.fileExists(atPath: reportURL.path) {
            let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try writeStaged(Array(data), to: reportURL)
        }
        return configuration.mode
    }

    /// A staged write; a file left by an attempt that died after writing it is kept.
    func writeStaged(_ bytes: [UInt8], to url: URL) throws {
        do { try AtomicFile.write(bytes, to: url) } catch AtomicFile.Failure.exists {
            return
        } catch AtomicFile.Failure.failed(let path, let reason, _) {
            throw DeliveryError.transient(path: path, reason: reason)
        }
    }

    /// A recipe file read and parsed, every problem a `JobFailure` naming the file and field.
    public static func readRecipe(_ url: URL, name: String) throws -> Recipe {
        let data: Data
        do { data = try readRegularFile(url, name: name) } catch let failure as JobFailure {
            throw JobFailure(code: "recipe", message: failure.message, file: name, field: nil)
        }
        do { return try Recipe.parse(data, file: name) } catch let error as RecipeError {
            throw JobFailure(code: "recipe", message: error.description, file: name, field: error.problems.first?.field)
        }
    }

    /// A file's bytes, or a clear error: a folder where a file should be, a missing or unreadable file.
    public static func readRegularFile(_ url: URL, name: String) throws -> Data {
        var info = stat()
        guard stat(url.path, &info) == 0 else {
            throw JobFailure(code: "io", message: "'\(name)' cannot be read: \(String(cString: strerror(errno))).", file: name, field: nil)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw JobFailure(code: "io", message: "'\(name)' is \(info.st_mode & S_IFMT == S_IFDIR ? "a folder" : "not a regular file"), not a file.", file: name, field: nil)
        }
        do { return try Data(contentsOf: url) } catch {
            throw JobFailure(code: "io", message: "'\(name)' cannot be read: \(error.localizedDescription)", file: name, field: nil)
        }
    }

    func decode(_ url: URL, name: String) throws -> Image {
        do { return try ImageDecoder.decode(fileAt: url, limits: decodeLimits).image } catch {
            throw JobFailure(code: "image", message: "\(error)".replacingOccurrences(of: url.path, with: name), file: name, field: nil)
        }
    }

    /// A pipeline error as a job failure, naming the input or field at fault.
    static func failure(_ error: Error, inputs: Inputs) -> Error {
        let mask = inputs.maskName ?? "mask"
        switch error {
        case PipelineError.cancelled:
            return JobFailure(code: "cancelled", message: "Stopped; the job stays claimed and resumes at the next start.", file: nil, field: nil)
        case PipelineError.maskSizeMismatch(_, let maskSize, let imageSize):
            return JobFailure(code: "mask", message: "Mask '\(mask)' is \(maskSize) but image '\(inputs.imageName)' is \(imageSize); the mask must have the image's size.",
                              file: mask, field: "mask")
        case PipelineError.emptyMask:
            return JobFailure(code: "mask", message: "Mask '\(mask)' is entirely black: nothing to repaint (white marks the area to repaint).",
                              file: mask, field: "mask")
        case PipelineError.invalidSchedulerConfig(let file, _):
            return JobFailure(code: "model", message: "\(error)", file: file, field: "model")
        case PipelineError.embedding(let embedding):
            return JobFailure(code: "embedding", message: "\(embedding)", file: embedding.file, field: "prompt")
        case let error as PipelineError:
            return JobFailure(code: Self.code(error), message: error.description, file: inputs.imageName, field: Self.field(error))
        case let failure as JobFailure:
            return failure
        default:
            return JobFailure(code: "pipeline", message: "\(error)", file: inputs.imageName, field: nil)
        }
    }

    static func code(_ error: PipelineError) -> String {
        switch error {
        case .invalidValue: return "recipe"
        case .nonFinite: return "non_finite"
        case .invalidSchedulerConfig: return "model"
        default: return "pipeline"
        }
    }

    static func field(_ error: PipelineError) -> String? {
        if case .invalidValue(let field, _, _) = error { return field }
        return nil
    }
}

extension JobExecutor.Inputs {
    /// A claimed job's inputs, as they lie in its work folder.
    public init(record: JobRecord, store: JobStore) throws {
        let source = { (role: String) in record.sources[role] ?? role }
        guard let recipeURL = store.claimed(record, role: "recipe"), let imageURL = store.claimed(record, role: "image") else {
            throw JobFailure(code: "io", message: "The job record lacks its image or recipe.", file: nil, field: nil)
        }
        // Inputs must be files of the inbox itself: a symbolic link could point anywhere.
        let controlRoles = record.sources.keys.filter { $0.hasPrefix("control") }.sorted()
        for role in ["recipe", "image", "mask"] + controlRoles {
            guard let url = store.claimed(record, role: role) else { continue }
            var info = stat()
            if lstat(url.path, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
                throw JobFailure(code: role, message: "'\(source(role))' is a symbolic link; Darkroom only reads files placed in the inbox itself.",
                                 file: source(role), field: role == "mask" ? "mask" : nil)
            }
        }
        // Two images share one recipe (`x.png` + `x.jpg` + `x.json`): which one was meant is unknown.
        let others = record.sources.filter { $0.key.hasPrefix("conflict") }.map(\.value).sorted()
        if !others.isEmpty {
            let names = ([source("image")] + others).map { "'\($0)'" }.joined(separator: " and ")
            throw JobFailure(code: "ambiguous", message: "\(names) share the recipe '\(source("recipe"))'; rename one (each image needs its own recipe, or use a batch folder).",
                             file: source("image"), field: nil)
        }
        self.init(recipe: recipeURL, image: imageURL, mask: store.claimed(record, role: "mask"),
                  recipeName: source("recipe"), imageName: source("image"), maskName: record.sources["mask"],
                  seed: record.seed, outputs: record.outputs, report: record.report)
        // `control<i>`: unit i's own control image (claimed as masks are).
        for role in controlRoles {
            guard let index = Int(role.dropFirst("control".count)), let url = store.claimed(record, role: role) else { continue }
            controlImages[index] = (url, source(role))
        }
    }
}
