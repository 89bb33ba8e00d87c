import DarkroomPipeline
import Foundation

/// One entry of a recipe's `controlnet` list: a ControlNet in `Models/ControlNet/` and how it steers, in the
/// words of A1111's sd-webui-controlnet extension (module, model, weight, guidance start and end) and diffusers
/// (`guess_mode`).
public struct ControlNetUse: Sendable, Equatable {
    /// The ControlNet's name in `Models/ControlNet/`.
    public var model: String
    /// The preprocessor (`ControlPreprocessor` names); "none" with `image`, or when the job's image itself is the
    /// control image.
    public var module: String
    /// A control image of the user's, a file beside the recipe (instead of a preprocessor's output).
    public var image: String?
    public var weight: Double = 1
    public var start: Double = 0, end: Double = 1
    public var guessMode = false
    /// canny's thresholds; tile_resample's down sampling rate (the extension's "Threshold A/B").
    public var lowThreshold: Double?, highThreshold: Double?, downSamplingRate: Double?

    public init(model: String, module: String, image: String? = nil) {
        (self.model, self.module, self.image) = (model, module, image)
    }

    static let keys = ["model", "module", "image", "weight", "start", "end", "guess_mode", "low_threshold", "high_threshold",
                       "down_sampling_rate"]

    /// The preprocessor this entry names, its parameters checked.
    public func preprocessor() throws -> ControlPreprocessor {
        try ControlPreprocessor.named(module, lowThreshold: lowThreshold, highThreshold: highThreshold, downSamplingRate: downSamplingRate)
    }
}

extension FieldReader {
    /// `controlnet`: a list of units; nil when the key is absent (an empty list turns restoration's tile preset off).
    mutating func controlNets(_ key: String, mode: PipelineConfiguration.Mode) -> [ControlNetUse]? {
        guard let value = json[key] else { return nil }
        guard let list = value as? [Any] else { wrongType(key); return [] }
        var uses: [ControlNetUse] = []
        for (index, item) in list.enumerated() {
            let field = "\(key)[\(index)]"
            guard let object = item as? [String: Any] else {
                problems.append(RecipeProblem(field: field, message: "must be an object {\"model\": …, \"module\": …}, not \(describe(item))"))
                continue
            }
            for extra in object.keys.sorted() where !ControlNetUse.keys.contains(extra) {
                problems.append(RecipeProblem(field: "\(field).\(extra)", message: "unknown key; a ControlNet entry has \(ControlNetUse.keys.joined(separator: ", "))"))
            }
            guard let model = object["model"] as? String, Recipe.isPlainFileName(model) else {
                problems.append(RecipeProblem(field: "\(field).model", message: "must be a ControlNet name in Models/ControlNet (no folders, no '..')"))
                continue
            }
            var image: String?
            if let v = object["image"] {
                guard let name = v as? String, Recipe.isPlainFileName(name) else {
                    problems.append(RecipeProblem(field: "\(field).image", message: "must be a file name beside the recipe (no folders, no '..')"))
                    continue
                }
                image = name
            }
            var module = image == nil ? nil : "none"
            if let v = object["module"] {
                guard let name = v as? String else { problems.append(RecipeProblem(field: "\(field).module", message: "must be a string")); continue }
                module = name
            }
            guard let module else {
                problems.append(RecipeProblem(field: "\(field).module", message: "missing: a preprocessor (\(ControlPreprocessor.knownNames.joined(separator: ", "))), or an `image` of your own"))
                continue
            }
            var use = ControlNetUse(model: model, module: module, image: image)
            func number(_ name: String, _ range: ClosedRange<Double>) -> Double? {
                guard let v = object[name] else { return nil }
                guard !isBool(v), let n = v as? NSNumber, n.doubleValue.isFinite, range.contains(n.doubleValue) else {
                    problems.append(RecipeProblem(field: "\(field).\(name)", message: "must be a number from \(range.lowerBound) to \(range.upperBound), not \(describe(v))"))
                    return nil
                }
                return n.doubleValue
            }
            if let w = number("weight", 0...2) { use.weight = w }
            if let v = number("start", 0...1) { use.start = v }
            if let v = number("end", 0...1) { use.end = v }
            use.lowThreshold = number("low_threshold", 0...1000)
            use.highThreshold = number("high_threshold", 0...1000)
            use.downSamplingRate = number("down_sampling_rate", 1...8)
            if let v = object["guess_mode"] {
                guard isBool(v), let b = v as? Bool else { problems.append(RecipeProblem(field: "\(field).guess_mode", message: "must be true or false")); continue }
                use.guessMode = b
            }
            if use.start >= use.end {
                problems.append(RecipeProblem(field: "\(field).start", message: "start (\(use.start)) must be before end (\(use.end))"))
            }
            do {
                let preprocessor = try use.preprocessor()
                if preprocessor.needsMask && use.image == nil && mode != .inpaint {
                    problems.append(RecipeProblem(field: "\(field).module", message: "'\(module)' is made from the job's mask: use it in inpaint mode"))
                }
            } catch {
                problems.append(RecipeProblem(field: "\(field).module", message: "\(error)"))
            }
            uses.append(use)
        }
        return uses
    }
}
