import Foundation

// The ControlNet preprocessors Darkroom implements, named as sd-webui-controlnet (A1111's extension)
// names its modules, so that recipes and A1111 `parameters` text agree:
//   none          the input image is the control image as it is
//   canny         cv2.Canny(image, low, high) on the RGB image, as a 3-channel 0/255 map (Canny.swift)
//   tile_resample INTER_AREA downsampling by `down_sampling_rate` (TileResample.swift)
//   inpaint       the inpaint condition: RGB / 255 with masked pixels −1 (InpaintCondition.swift)
//   inpaint_only  the same condition; the extension also keeps the unmasked area of the original at each
//                 step (scripts/hook.py, "Post-processing for restore") — the pipeline's part, not this one's.
// Sizes: the extension resizes the image to the processor resolution first (`resize_image_with_pad`:
// short side to `processor_res`, INTER_AREA down / INTER_CUBIC up, edge padding to multiples of 64) and
// resizes the map to the generation size afterwards. Darkroom runs every preprocessor on the image at the
// job's size, so there is no resize before and none after. For canny this equals the extension whenever
// `processor_res` is the image's short side and both sides are multiples of 64; otherwise the extension's
// map differs by those two resizes.

/// A ControlNet preprocessor (an sd-webui-controlnet "module") with its parameters.
public enum ControlPreprocessor: Sendable, Equatable {
    /// `none`: the image is the control image.
    case none
    /// `canny`: OpenCV's Canny edges. The extension's defaults are 100 and 200 (its sliders run 1…255);
    /// any finite thresholds ≥ 0 are accepted, and swapped when low > high, as OpenCV does.
    case canny(lowThreshold: Double, highThreshold: Double)
    /// `tile_resample`: the image made `downSamplingRate` times smaller (1 = unchanged; below 1.1 the
    /// extension returns the image as it is).
    case tileResample(downSamplingRate: Double)
    /// `inpaint` (shown as "inpaint_global_harmonious" in the extension): the inpaint condition.
    case inpaint
    /// `inpaint_only`: the inpaint condition; the pipeline keeps the unmasked area (see the file comment).
    case inpaintOnly

    /// The module names `named(_:…)` accepts, in the extension's spelling.
    public static let knownNames = ["none", "canny", "tile_resample", "inpaint", "inpaint_only"]

    /// sd-webui-controlnet's defaults for `canny`.
    public static let defaultCannyThresholds = (low: 100.0, high: 200.0)

    /// The preprocessor called `module`, with its parameters (nil: the extension's default). Parameters a
    /// module does not use are ignored, as the extension ignores its unused sliders. Throws
    /// `PipelineError.invalidValue` for an unknown name (listing the known ones) or a parameter out of range.
    public static func named(_ module: String, lowThreshold: Double? = nil, highThreshold: Double? = nil,
                             downSamplingRate: Double? = nil) throws -> ControlPreprocessor {
        let p: ControlPreprocessor
        switch module {
        case "none": p = .none
        case "canny":
            p = .canny(lowThreshold: lowThreshold ?? defaultCannyThresholds.low,
                       highThreshold: highThreshold ?? defaultCannyThresholds.high)
        case "tile_resample": p = .tileResample(downSamplingRate: downSamplingRate ?? 1)
        case "inpaint": p = .inpaint
        case "inpaint_only": p = .inpaintOnly
        default:
            throw PipelineError.invalidValue(field: "module", value: "'\(module)'",
                                             expected: "one of " + knownNames.joined(separator: ", "))
        }
        try p.validate()
        return p
    }

    /// The module name, as the extension spells it.
    public var name: String {
        switch self {
        case .none: return "none"
        case .canny: return "canny"
        case .tileResample: return "tile_resample"
        case .inpaint: return "inpaint"
        case .inpaintOnly: return "inpaint_only"
        }
    }

    /// Whether the preprocessor needs the job's mask.
    public var needsMask: Bool {
        switch self {
        case .inpaint, .inpaintOnly: return true
        case .none, .canny, .tileResample: return false
        }
    }

    /// Refuses non-finite or negative Canny thresholds and down sampling rates that are below 1 or not finite.
    public func validate() throws {
        switch self {
        case let .canny(low, high):
            for (field, v) in [("low_threshold", low), ("high_threshold", high)] where !(v.isFinite && v >= 0) {
                throw PipelineError.invalidValue(field: field, value: "\(v)",
                                                 expected: "a finite number ≥ 0 (canny's default thresholds are 100 and 200)")
            }
        case let .tileResample(rate):
            guard rate.isFinite, rate >= 1 else {
                throw PipelineError.invalidValue(field: "down_sampling_rate", value: "\(rate)",
                                                 expected: "a finite number ≥ 1 (1 keeps the image; the extension's slider runs 1 to 8)")
            }
        case .none, .inpaint, .inpaintOnly:
            break
        }
    }

    /// Runs the preprocessor on `image` (1 or 3 channels: a gray image is made RGB first, as the extension's
    /// HWC3 does). `mask` (one plane, the image's size, white = repaint) is required by `inpaint` and
    /// `inpaint_only` and ignored by the others.
    public func apply(to image: PlanarImage8, mask: PlanarImage8? = nil) throws -> ControlImage {
        try validate()
        try ImageOps.checkShape(width: image.width, height: image.height, channels: image.channels, count: image.pixels.count)
        guard image.channels == 1 || image.channels == 3 else { throw ImageOpsError.unsupportedChannels(image.channels) }
        let rgb = image.rgb
        switch self {
        case .none:
            return .levels(rgb)
        case let .canny(low, high):
            let edges = try ImageOps.canny(rgb, lowThreshold: low, highThreshold: high)
            return .levels(edges.rgb)
        case let .tileResample(rate):
            return .levels(try ImageOps.tileResample(rgb, downSamplingRate: rate))
        case .inpaint, .inpaintOnly:
            guard let mask else {
                throw PipelineError.invalidValue(field: "mask", value: "missing",
                                                 expected: "a mask for the '\(name)' preprocessor (white = repaint)")
            }
            return .values(try ImageOps.inpaintCondition(image: rgb, mask: mask))
        }
    }
}

/// A preprocessor's result: the control image before it is fitted to the job's size and made a tensor
/// (`tensor(width:height:)`, diffusers' `prepare_image`).
public enum ControlImage: Sendable, Equatable {
    /// An RGB image of levels 0…255 (canny, tile_resample, none): what diffusers receives as a PIL image.
    case levels(PlanarImage8)
    /// RGB values in [0, 1] with −1 on masked pixels (the inpaint condition): what diffusers receives as a tensor.
    case values(PlanarImage)

    public var width: Int {
        switch self {
        case let .levels(image): return image.width
        case let .values(image): return image.width
        }
    }

    public var height: Int {
        switch self {
        case let .levels(image): return image.height
        case let .values(image): return image.height
        }
    }
}
