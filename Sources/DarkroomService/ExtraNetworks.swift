import Foundation

/// A LoRA a job applies: a file name in `Models/Lora/` and its multipliers (A1111: `te` for the text
/// encoder, `unet` for the UNet; one `weight` sets both).
public struct LoRAUse: Sendable, Equatable {
    public var name: String
    public var textEncoderWeight: Double
    public var unetWeight: Double

    public init(name: String, textEncoderWeight: Double, unetWeight: Double) {
        (self.name, self.textEncoderWeight, self.unetWeight) = (name, textEncoderWeight, unetWeight)
    }

    public init(name: String, weight: Double) { self.init(name: name, textEncoderWeight: weight, unetWeight: weight) }
}

/// A1111's extra-network tags in a prompt, `<type:arg:arg…>` (`modules/extra_networks.py`: the pattern
/// `<(\w+):([^>]+)>`, arguments split at ':' and named ones written `key=value`), removed from the text
/// before it is tokenised. `lora` (and its alias `lyco`) is what Darkroom applies:
/// `<lora:name>`, `<lora:name:weight>`, `<lora:name:te:unet>`, `<lora:name:te=0.5:unet=1>`, as A1111's
/// `extensions-builtin/Lora/extra_networks_lora.py` reads them (unet defaults to te, te to 1).
public enum ExtraNetworks {
    public struct Tag: Sendable, Equatable {
        public var type: String
        public var arguments: [String]
    }

    /// `prompt` without its tags, and the tags in order.
    public static func parse(_ prompt: String) -> (text: String, tags: [Tag]) {
        var text = ""
        var tags: [Tag] = []
        var rest = Substring(prompt)
        while let open = rest.firstIndex(of: "<") {
            text += rest[..<open]
            let afterOpen = rest.index(after: open)
            let typeEnd = rest[afterOpen...].firstIndex { !isWordCharacter($0) } ?? rest.endIndex
            if typeEnd > afterOpen, typeEnd < rest.endIndex, rest[typeEnd] == ":",
               let close = rest[typeEnd...].firstIndex(of: ">"), rest.index(after: typeEnd) < close {
                let body = rest[rest.index(after: typeEnd)..<close]
                tags.append(Tag(type: String(rest[afterOpen..<typeEnd]), arguments: body.split(separator: ":", omittingEmptySubsequences: false).map(String.init)))
                rest = rest[rest.index(after: close)...]
            } else {
                text += "<"
                rest = rest[afterOpen...]
            }
        }
        text += rest
        return (text, tags)
    }

    struct TagProblem: Error { let problem: RecipeProblem }

    /// Python's `\w`: letters, digits (any script) and '_'.
    static func isWordCharacter(_ c: Character) -> Bool { c == "_" || c.isLetter || c.isNumber }

    /// The LoRA of a `lora`/`lyco` tag; a message naming the problem otherwise.
    static func loraUse(_ tag: Tag) -> Result<LoRAUse, TagProblem> {
        let written = "<\(tag.type):\(tag.arguments.joined(separator: ":"))>"
        func problem(_ message: String) -> Result<LoRAUse, TagProblem> {
            .failure(TagProblem(problem: RecipeProblem(field: "prompt", message: "\(written): \(message)")))
        }
        var positional: [String] = []
        var named: [String: String] = [:]
        for argument in tag.arguments {
            if let eq = argument.firstIndex(of: "="), positional.count > 0 {
                named[argument[..<eq].trimmingCharacters(in: .whitespaces)] = String(argument[argument.index(after: eq)...])
            } else { positional.append(argument) }
        }
        guard let name = positional.first?.trimmingCharacters(in: .whitespaces), Recipe.isPlainFileName(name) else {
            return problem("the LoRA name must be a file name in Models/Lora (no folders, no '..')")
        }
        func number(_ text: String?) -> Double?? {
            guard let text else { return .some(nil) }
            guard let v = Double(text.trimmingCharacters(in: .whitespaces)), v.isFinite, abs(v) <= Recipe.maximumLoRAWeight else { return nil }
            return .some(v)
        }
        guard let te = number(named["te"] ?? (positional.count > 1 ? positional[1] : nil)),
              let unet = number(named["unet"] ?? (positional.count > 2 ? positional[2] : nil)) else {
            return problem("weights must be numbers from -\(Int(Recipe.maximumLoRAWeight)) to \(Int(Recipe.maximumLoRAWeight))")
        }
        let textWeight = te ?? 1
        return .success(LoRAUse(name: name, textEncoderWeight: textWeight, unetWeight: unet ?? textWeight))
    }
}
