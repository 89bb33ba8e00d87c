import DarkroomPipeline
import DarkroomTensor
import DarkroomSchedulers
import Foundation

/// One problem with a recipe: the field (JSON key path) and what is wrong with it.
public struct RecipeProblem: Sendable, Equatable, CustomStringConvertible {
    public let field: String
    public let message: String
    public var description: String { "\(field): \(message)" }
}

/// A recipe that could not be read: every problem at once, each naming its field.
public struct RecipeError: Error, Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let problems: [RecipeProblem]
    public var description: String {
        "Recipe '\(file)' has \(problems.count) problem\(problems.count == 1 ? "" : "s"):\n"
            + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// Recipe format v1 (`Recipes/recipe.schema.json`): a JSON object; unknown keys are errors.
public struct Recipe: Sendable, Equatable {
    public var configuration: PipelineConfiguration
    /// nil when the recipe gave none: the job draws a random 64-bit seed and records it.
    public var seed: UInt64?
    /// A checkpoint name in the models folder (file or folder name, with or without extension).
    public var model: String?
    /// A mask file beside the recipe.
    public var mask: String?
    /// LoRAs to apply: the recipe's `loras`, then the prompt's `<lora:…>` tags (removed from
    /// `configuration.generation.prompt`).
    public var loras: [LoRAUse] = []
    /// A VAE in `Models/VAE/` to decode and encode with; "none": the checkpoint's own, even when A1111's
    /// `<checkpoint>.vae.safetensors` lies beside it (which is used when this is nil).
    public var vae: String?
    /// The prompt as the recipe wrote it, tags included (A1111 keeps them in its `parameters` chunk).
    public var writtenPrompt: String?
    /// The matrix products' precision; nil: the service's (`--precision`, fp32 unless set).
    public var precision: Precision?
    /// ControlNet units; nil when the recipe has no `controlnet` key (restoration then uses its tile preset when a
    /// tile ControlNet is in `Models/ControlNet/`; an empty list turns that off).
    public var controlNets: [ControlNetUse]?
    /// Whether the recipe set `strength` (restoration's tile preset raises the default only).
    public var setsStrength = false

    /// The largest LoRA multiplier accepted (A1111 sets none; beyond ±10 a LoRA only produces noise).
    static let maximumLoRAWeight = 10.0

    /// Every key the format knows, with the kind of value it takes.
    static let fields: [String: String] = [
        "mode": "one of img2img, inpaint, restore, upscale", "prompt": "a string", "negative_prompt": "a string",
        "strength": "a number in (0, 1]", "steps": "a whole number from 1 to 1000", "guidance": "a number from 0 to 50",
        "sampler": "a sampler name", "seed": "a whole number from 0 to 2^64-1", "count": "a whole number from 1 to 100",
        "prediction": "epsilon or v_prediction", "model": "a checkpoint name", "mask": "a file name",
        "mask_blur": "a whole number of pixels from 0 to 64", "invert_mask": "true or false",
        "inpaint_area": "whole or masked", "padding": "a whole number of pixels from 0 to 256",
        "paste_back": "true or false", "masked_content": "original, fill, latent_noise or latent_nothing",
        "size": "pad, crop or resize", "color": "true or false", "resolution": "a whole number of pixels from 64 to 2048",
        "repair_defects": "true or false", "upscale": "1 or 2 (restore), 1 to 8 (upscale)",
        "upscaler": "lanczos, or an upscaler model's name in Models/ESRGAN", "tile_size": "a whole number of pixels from 64 to 2048",
        "tile_overlap": "a whole number of pixels from 0 to 256", "defect_threshold": "a number from 0.01 to 1", "clip_skip": "a whole number from 1 to 12", "eta": "a number from 0 to 1",
        "vae_tiling": "auto, always or never", "timestep_spacing": "leading, linspace or trailing",
        "vae": "a VAE name in Models/VAE, or none", "loras": "a list of {\"name\": a LoRA in Models/Lora, \"weight\": a number from -10 to 10}",
        "precision": "fp32 or bf16", "auto_color": "true or false", "auto_color_balance": "white_patch, gray_world or none",
        "auto_color_clip": "a number of percent from 0 to 10",
        "controlnet": "a list of {\"model\": a ControlNet in Models/ControlNet, \"module\": a preprocessor, \"image\": a file, \"weight\", \"start\", \"end\", \"guess_mode\", …}", "$schema": "a string",
    ]

    /// The keys `mode: upscale` takes.
    static let upscaleModeKeys: Set<String> = ["mode", "upscaler", "upscale", "$schema"]

    /// The keys recipe format v1 accepts.
    public static var knownKeys: Set<String> { Set(fields.keys) }

    public static func parse(_ data: Data, file: String) throws -> Recipe {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw RecipeError(file: file, problems: [RecipeProblem(field: "(file)", message: "not valid JSON (\(Self.jsonMessage(error)))")])
        }
        guard let json = object as? [String: Any] else {
            throw RecipeError(file: file, problems: [RecipeProblem(field: "(file)", message: "must be a JSON object ({ … })")])
        }
        var reader = FieldReader(json: json)
        var recipe = Recipe(configuration: PipelineConfiguration(), seed: nil, model: nil, mask: nil)
        var c = PipelineConfiguration()
        for key in json.keys.sorted() where fields[key] == nil {
            let suggestion = closest(key, among: Array(fields.keys)).map { " (did you mean '\($0)'?)" } ?? ""
            reader.problems.append(RecipeProblem(field: key, message: "unknown key\(suggestion)"))
        }
        if let mode = reader.choice("mode", PipelineConfiguration.Mode.self) { c.mode = mode }
        else if json["mode"] == nil { reader.problems.append(RecipeProblem(field: "mode", message: "missing; one of img2img, inpaint, restore, upscale")) }
        if let v = reader.text("prompt") { c.generation.prompt = v }
        if let v = reader.text("negative_prompt") { c.generation.negativePrompt = v }
        if let v = reader.number("strength", where: { $0 > 0 && $0 <= 1 }) { c.generation.strength = v }
        if let v = reader.integer("steps", 1...1000) { c.generation.steps = v }
        if let v = reader.number("guidance", where: { $0 >= 0 && $0 <= 50 }) { c.generation.guidance = Float(v) }
        if let v = reader.string("sampler") {
            if schedulerNames.contains(v) { c.generation.sampler = v }
            else {
                let hint = closest(v, among: schedulerNames).map { " (did you mean '\($0)'?)" } ?? ""
                reader.problems.append(RecipeProblem(field: "sampler", message: "unknown sampler '\(v)'\(hint); one of \(schedulerNames.joined(separator: ", "))"))
            }
        }
        if let v = reader.string("timestep_spacing") {
            if !TimestepSpacing.allCases.map(\.rawValue).contains(v) {
                reader.problems.append(RecipeProblem(field: "timestep_spacing", message: "'\(v)' is not leading, linspace or trailing"))
            } else if !schedulerReadsTimestepSpacing(c.generation.sampler) {
                reader.problems.append(RecipeProblem(field: "timestep_spacing", message: "sampler '\(c.generation.sampler)' has its own fixed schedule; remove timestep_spacing"))
            } else { c.generation.timestepSpacing = v }
        }
        if let v = reader.string("prediction") {
            if ["epsilon", "v_prediction"].contains(v) { c.generation.prediction = v }
            else { reader.problems.append(RecipeProblem(field: "prediction", message: "'\(v)' is not epsilon or v_prediction")) }
        }
        if let v = reader.number("eta", where: { $0 >= 0 && $0 <= 1 }) { c.generation.eta = Float(v) }
        if let v = reader.integer("clip_skip", 1...12) { c.generation.clipSkip = v - 1 }
        if let v = reader.choice("vae_tiling", VAETilingMode.self) { c.generation.vaeTiling = v }
        recipe.precision = reader.choice("precision", Precision.self)
        recipe.setsStrength = json["strength"] != nil
        if let v = reader.integer("count", 1...100) { c.count = v }
        if let v = reader.integer("mask_blur", 0...64) { c.maskBlur = v }
        if let v = reader.bool("invert_mask") { c.invertMask = v }
        if let v = reader.choice("inpaint_area", PipelineConfiguration.InpaintArea.self) { c.inpaintArea = v }
        if let v = reader.integer("padding", 0...256) { c.padding = v }
        if let v = reader.bool("paste_back") { c.pasteBack = v }
        if let v = reader.choice("masked_content", PipelineConfiguration.MaskedContent.self) { c.maskedContent = v }
        if let v = reader.choice("size", PipelineConfiguration.SizeHandling.self) { c.sizeHandling = v }
        if let v = reader.bool("color") { c.colorize = v }
        if let v = reader.integer("resolution", 64...2048) { c.resolution = v }
        if let v = reader.bool("repair_defects") { c.repairDefects = v }
        if let v = reader.integer("upscale", 1...8) {
            if c.mode == .upscale || v <= 2 { c.upscale = v }
            else { reader.problems.append(RecipeProblem(field: "upscale", message: "must be 1 or 2 for \(c.mode.rawValue) (up to 8 with mode upscale), not \(v)")) }
        } else if c.mode == .upscale, json["upscale"] == nil {
            c.upscale = 0   // the upscaler model's own scale
        }
        if let v = reader.string("upscaler") {
            if v.lowercased() == "lanczos" { c.upscaler = nil }
            else if !isPlainFileName(v) {
                reader.problems.append(RecipeProblem(field: "upscaler", message: "'\(v)' must be lanczos or a model name in Models/ESRGAN (no folders, no '..')"))
            } else { c.upscaler = v }
            if c.mode != .upscale && c.mode != .restore {
                reader.problems.append(RecipeProblem(field: "upscaler", message: "applies to mode restore (with upscale 2) and mode upscale, not \(c.mode.rawValue)"))
            } else if c.mode == .restore, c.upscaler != nil, c.upscale < 2 {
                reader.problems.append(RecipeProblem(field: "upscaler", message: "is used by restore only with upscale 2; add \"upscale\": 2 or remove it"))
            }
        }
        if c.mode == .upscale {
            // The upscaler alone: settings of the diffusion would be silently ignored, so they are refused.
            for key in json.keys.sorted() where fields[key] != nil && !Self.upscaleModeKeys.contains(key) {
                reader.problems.append(RecipeProblem(field: key, message: "does not apply to mode upscale (an upscaler alone, no diffusion); it takes \(Self.upscaleModeKeys.sorted().joined(separator: ", "))"))
            }
        }
        if let v = reader.integer("tile_size", 64...2048) { c.tileSize = v }
        if let v = reader.integer("tile_overlap", 0...256) { c.tileOverlap = v }
        if let v = reader.number("defect_threshold", where: { $0 >= 0.01 && $0 <= 1 }) { c.defectThreshold = Float(v) }
        if let v = reader.bool("auto_color") { c.autoColor = v }
        if let v = reader.choice("auto_color_balance", ImageOps.ColorBalance.self) { c.autoColorBalance = v }
        if let v = reader.number("auto_color_clip", where: { $0 >= 0 && $0 <= 10 }) { c.autoColorClip = v }
        if c.mode == .restore {
            if json["prompt"] == nil { c.generation.prompt = PipelineConfiguration.restorationPrompt }
            if json["negative_prompt"] == nil { c.generation.negativePrompt = PipelineConfiguration.restorationNegativePrompt }
            if json["strength"] == nil { c.generation.strength = PipelineConfiguration.restorationStrength }
        }
        recipe.controlNets = reader.controlNets("controlnet", mode: c.mode)
        // LoRAs: the `loras` key, then A1111's <lora:name:weight> tags, which leave the prompt.
        recipe.loras = reader.loras("loras")
        recipe.writtenPrompt = c.generation.prompt
        let (text, tags) = ExtraNetworks.parse(c.generation.prompt)
        c.generation.prompt = text
        for tag in tags {
            switch tag.type {
            case "lora", "lyco":
                switch ExtraNetworks.loraUse(tag) {
                case .success(let use): recipe.loras.append(use)
                case .failure(let failure): reader.problems.append(failure.problem)
                }
            case "hypernet":
                reader.problems.append(RecipeProblem(field: "prompt", message: "<hypernet:…>: hypernetworks are not supported; use a LoRA"))
            default:
                reader.problems.append(RecipeProblem(field: "prompt", message: "<\(tag.type):…> is no extra network Darkroom knows (<lora:name:weight> is)"))
            }
        }
        if !ExtraNetworks.parse(c.generation.negativePrompt).tags.isEmpty {
            reader.problems.append(RecipeProblem(field: "negative_prompt", message: "extra-network tags such as <lora:…> apply only in the prompt, as in A1111; for a negative LoRA write <lora:name:-1> in the prompt"))
        }
        _ = reader.string("$schema")
        recipe.seed = reader.seed("seed")
        recipe.model = reader.string("model")
        recipe.mask = reader.string("mask")
        recipe.vae = reader.string("vae")
        if let vae = recipe.vae, !isPlainFileName(vae) {
            reader.problems.append(RecipeProblem(field: "vae", message: "'\(vae)' must be a name in Models/VAE (no folders, no '..'), or none"))
        }
        if let mask = recipe.mask, !isPlainFileName(mask) {
            reader.problems.append(RecipeProblem(field: "mask", message: "'\(mask)' must be a file name beside the recipe (no folders, no '..')"))
        }
        if let model = recipe.model, !isPlainFileName(model) {
            reader.problems.append(RecipeProblem(field: "model", message: "'\(model)' must be a name in the models folder (no folders, no '..')"))
        }
        guard reader.problems.isEmpty else { throw RecipeError(file: file, problems: reader.problems) }
        recipe.configuration = c
        return recipe
    }

    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains("/") && !name.contains("\\") && name != "." && name != ".." && !name.hasPrefix("~")
            && !name.contains("\0")
    }

    static func jsonMessage(_ error: Error) -> String {
        let text = "\((error as NSError).userInfo["NSDebugDescription"] ?? error.localizedDescription)"
        return text.isEmpty ? "syntax error" : text
    }

    /// The known name nearest to `name` (edit distance ≤ 3), else the longest known name it starts with
    /// (`euler_ancestral` → `euler_a`), for "did you mean".
    static func closest(_ name: String, among names: [String]) -> String? {
        let lowered = name.lowercased()
        if let near = names.map({ ($0, editDistance(lowered, $0)) }).filter({ $0.1 <= 3 }).min(by: { $0.1 < $1.1 })?.0 {
            return near
        }
        return names.filter { $0.count >= 3 && lowered.hasPrefix($0) }.max { $0.count < $1.count }
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let saved = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = saved
            }
        }
        return row[b.count]
    }
}

/// Typed access to recipe fields that records a problem instead of failing at the first.
struct FieldReader {
    let json: [String: Any]
    var problems: [RecipeProblem] = []

    mutating func wrongType(_ key: String) {
        problems.append(RecipeProblem(field: key, message: "must be \(Recipe.fields[key] ?? "another type"), not \(describe(json[key]))"))
    }

    func describe(_ value: Any?) -> String {
        switch value {
        case is String: return "a string"
        case let v? where isBool(v): return "true/false"
        case let n as NSNumber: return "the number \(n)"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        case is NSNull: return "null"
        default: return "something else"
        }
    }

    /// JSON true/false (Foundation boxes them as a boolean NSNumber, which also casts to Int).
    func isBool(_ v: Any) -> Bool { "\(type(of: v))".contains("Boolean") || type(of: v) == Bool.self }

    /// `loras`: a list of {"name": …, "weight": …} (weight 1 when absent).
    mutating func loras(_ key: String) -> [LoRAUse] {
        guard let value = json[key] else { return [] }
        guard let list = value as? [Any] else { wrongType(key); return [] }
        var uses: [LoRAUse] = []
        for (index, item) in list.enumerated() {
            let field = "\(key)[\(index)]"
            guard let object = item as? [String: Any] else {
                problems.append(RecipeProblem(field: field, message: "must be an object {\"name\": …, \"weight\": …}, not \(describe(item))"))
                continue
            }
            for extra in object.keys.sorted() where !["name", "weight"].contains(extra) {
                problems.append(RecipeProblem(field: "\(field).\(extra)", message: "unknown key; a LoRA entry has name and weight"))
            }
            guard let name = object["name"] as? String, Recipe.isPlainFileName(name) else {
                problems.append(RecipeProblem(field: "\(field).name", message: "must be a LoRA file name in Models/Lora (no folders, no '..')"))
                continue
            }
            var weight = 1.0
            if let w = object["weight"] {
                guard !isBool(w), let n = w as? NSNumber, n.doubleValue.isFinite, abs(n.doubleValue) <= Recipe.maximumLoRAWeight else {
                    problems.append(RecipeProblem(field: "\(field).weight", message: "must be a number from -10 to 10, not \(describe(w))"))
                    continue
                }
                weight = n.doubleValue
            }
            uses.append(LoRAUse(name: name, weight: weight))
        }
        return uses
    }

    mutating func string(_ key: String) -> String? {
        guard let v = json[key] else { return nil }
        guard let s = v as? String else { wrongType(key); return nil }
        return s
    }

    /// A prompt: text, where line breaks and tabs are fine but other control characters (a bell,
    /// an escape sequence, NUL) are a sign of a broken file and refused, naming the field.
    mutating func text(_ key: String) -> String? {
        guard let s = string(key) else { return nil }
        if let bad = s.unicodeScalars.first(where: { $0.properties.generalCategory == .control && !["\n", "\r", "\t"].contains($0) }) {
            problems.append(RecipeProblem(field: key, message: "contains the control character U+\(String(format: "%04X", bad.value)); only text, line breaks and tabs are allowed"))
            return nil
        }
        return s
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let v = json[key] else { return nil }
        guard isBool(v), let b = v as? Bool else { wrongType(key); return nil }
        return b
    }

    mutating func number(_ key: String, where valid: (Double) -> Bool) -> Double? {
        guard let v = json[key] else { return nil }
        guard !isBool(v), let n = v as? NSNumber, valid(n.doubleValue) else { wrongType(key); return nil }
        return n.doubleValue
    }

    mutating func integer(_ key: String, _ range: ClosedRange<Int>) -> Int? {
        guard let v = json[key] else { return nil }
        guard !isBool(v), let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(),
              let i = Int(exactly: n.doubleValue), range.contains(i) else { wrongType(key); return nil }
        return i
    }

    mutating func seed(_ key: String) -> UInt64? {
        guard let v = json[key] else { return nil }
        // Seeds are 64-bit: numbers beyond 2^53 lose precision in JSON parsers, so accept a string too.
        if let s = v as? String, let seed = UInt64(s) { return seed }
        guard !isBool(v), let n = v as? NSNumber, let seed = UInt64(n.stringValue) else { wrongType(key); return nil }
        return seed
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) -> T? where T.RawValue == String {
        guard let s = string(key) else { return nil }
        guard let value = T(rawValue: s) else {
            problems.append(RecipeProblem(field: key, message: "'\(s)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))"))
            return nil
        }
        return value
    }
}
