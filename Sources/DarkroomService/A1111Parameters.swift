import DarkroomPipeline
import DarkroomTensor

/// The `parameters` PNG text chunk AUTOMATIC1111 writes and its "PNG Info" tab reads:
///
///     <prompt>
///     Negative prompt: <negative prompt>
///     Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model hash: …, Model: name, Denoising strength: 0.75
///
/// (A1111 `modules/processing.py::create_infotext`: "key: value" pairs joined by ", ", the negative
/// line only when there is a negative prompt, values containing commas or quotes JSON-quoted.)
public enum A1111Parameters {
    /// A1111's names for the recipe's samplers.
    public static let samplerNames = [
        "ddim": "DDIM", "pndm": "PLMS", "lms": "LMS", "lms_karras": "LMS Karras", "euler": "Euler",
        "euler_karras": "Euler Karras", "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras",
        "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras", "unipc": "UniPC", "heun": "Heun",
        "dpm2": "DPM2", "dpm2_karras": "DPM2 Karras", "dpm2_a": "DPM2 a", "dpm2_a_karras": "DPM2 a Karras", "lcm": "LCM",
    ]

    public static func text(configuration c: PipelineConfiguration, seed: UInt64, width: Int, height: Int,
                            modelName: String?, modelHash: String?, prompt: String? = nil,
                            vae: (name: String, hash: String?)? = nil, tiHashes: String? = nil,
                            extra: [(String, String)] = []) -> String {
        let g = c.generation
        var pairs: [(String, String)] = [
            ("Steps", "\(g.steps)"), ("Sampler", samplerNames[g.sampler] ?? g.sampler),
            ("CFG scale", format(g.guidance)), ("Seed", "\(seed)"), ("Size", "\(width)x\(height)"),
        ]
        if let modelHash { pairs.append(("Model hash", modelHash)) }
        if let modelName { pairs.append(("Model", modelName)) }
        if let vae {   // A1111: "VAE hash" (10 digits of the file's SHA-256), "VAE" (the file name)
            if let hash = vae.hash { pairs.append(("VAE hash", hash)) }
            pairs.append(("VAE", vae.name))
        }
        pairs.append(("Denoising strength", format(Float(g.strength))))
        if g.clipSkip > 0 { pairs.append(("Clip skip", "\(g.clipSkip + 1)")) }
        if c.mode == .inpaint {
            pairs.append(("Mask blur", "\(c.maskBlur)"))
            if c.inpaintArea == .masked { pairs.append(("Inpaint area", "Only masked")); pairs.append(("Masked area padding", "\(c.padding)")) }
        }
        // Not an A1111 key (A1111 has no such step); kept by A1111 as an extra parameter.
        if c.mode == .restore, c.autoColor == true {
            pairs.append(("Auto color", "\(c.autoColorBalance.rawValue) \(c.autoColorClip)%"))
        }
        if c.mode == .restore, c.upscale > 1 {
            // scripts/sd_upscale.py: p.extra_generation_params["SD upscale overlap"], ["SD upscale upscaler"].
            pairs.append(("SD upscale overlap", "\(c.tileOverlap)"))
            pairs.append(("SD upscale upscaler", c.upscaler ?? "Lanczos"))
        }
        if g.eta > 0 { pairs.append(("Eta DDIM", format(g.eta))) }
        // A1111 has no such key (its "Schedule type" names k-diffusion schedules, none of which is diffusers'
        // spacing); written so the setting is not lost, and kept by A1111 as an extra parameter.
        if let spacing = g.timestepSpacing { pairs.append(("Timestep spacing", spacing)) }
        if let tiHashes { pairs.append(("TI hashes", tiHashes)) }     // sd_hijack_clip.py: "name: hash, …", quoted
        // Not an A1111 key (its precision is a launch flag, not recorded); kept by A1111 as an extra parameter.
        pairs.append(("Precision", g.precision.rawValue))
        pairs += extra
        pairs.append(("Version", "Darkroom"))
        var lines = [prompt ?? g.prompt]
        if !g.negativePrompt.isEmpty { lines.append("Negative prompt: \(g.negativePrompt)") }
        lines.append(pairs.map { "\($0.0): \(quote($0.1))" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// The sd-webui-controlnet extension's entry for unit `index`: `ControlNet 0: "Module: canny, Model: name [hash],
    /// Weight: 1.0, …"` (its `Unit` infotext; Darkroom writes the fields it has).
    public static func controlNet(_ index: Int, _ use: ControlNetUse, hash: String?) -> (String, String) {
        var fields = [("Module", use.module), ("Model", use.model + (hash.map { " [\($0)]" } ?? "")),
                      ("Weight", format(Float(use.weight))), ("Resize Mode", "Crop and Resize"),
                      ("Guidance Start", format(Float(use.start))), ("Guidance End", format(Float(use.end)))]
        // The extension's two slider values, by module: canny's thresholds, tile_resample's down sampling rate.
        switch use.module {
        case "canny":
            fields.append(("Threshold A", format(Float(use.lowThreshold ?? 100))))
            fields.append(("Threshold B", format(Float(use.highThreshold ?? 200))))
        case "tile_resample": fields.append(("Threshold A", format(Float(use.downSamplingRate ?? 1))))
        default: break
        }
        fields.append(("Control Mode", use.guessMode ? "ControlNet is more important" : "Balanced"))
        return ("ControlNet \(index)", fields.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
    }

    /// What A1111's Extras tab records for an upscale (scripts/postprocessing_upscale.py, modules/postprocessing.py):
    /// "Postprocess upscale by: 4, Postprocess upscaler: 4x-UltraSharp", written to the PNG's `postprocessing`
    /// and `extras` text chunks (no `parameters`: there was no generation). The upscaler is named as A1111 lists
    /// it: the model file's name without extension, or "Lanczos".
    public static func postprocessing(upscaleBy factor: Int, upscaler: String?) -> String {
        [("Postprocess upscale by", "\(factor)"), ("Postprocess upscaler", upscaler ?? "Lanczos")]
            .map { "\($0.0): \(quote($0.1))" }.joined(separator: ", ")
    }

    /// A1111's `Lora hashes` value: "alias: hash" per LoRA, joined by ", ", with ':' and ',' removed from the
    /// names (extensions-builtin/Lora/extra_networks_lora.py).
    public static func loraHashes(_ loras: [(name: String, hash: String)]) -> (String, String)? {
        guard !loras.isEmpty else { return nil }
        return ("Lora hashes", loras.map { "\($0.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "")): \($0.hash)" }
            .joined(separator: ", "))
    }

    /// As Python prints a float, which A1111 writes: 7.5 → "7.5", 7 → "7.0", 0.75 → "0.75".
    static func format(_ value: Float) -> String {
        let v = Double(value)
        return v == v.rounded() ? String(format: "%.1f", v) : String(Float(value))
    }

    /// A1111 `quote`: values with ',', ':' or '"' (or a newline) become JSON strings.
    static func quote(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == ":" || $0 == "\"" || $0 == "\n" }) else { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"\(escaped)\""
    }
}
