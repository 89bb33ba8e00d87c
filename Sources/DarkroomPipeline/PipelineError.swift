/// Why a pipeline run cannot start or did not finish. Each case names the recipe field or file at fault.
public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case invalidValue(field: String, value: String, expected: String)
    case maskSizeMismatch(mask: String, maskSize: String, imageSize: String)
    case emptyMask(mask: String)
    case imageTooSmall(width: Int, height: Int, minimum: Int)
    case cancelled(step: Int)

    public var description: String {
        switch self {
        case let .invalidValue(field, value, expected):
            return "'\(field)' is \(value); expected \(expected)."
        case let .maskSizeMismatch(mask, maskSize, imageSize):
            return "Mask '\(mask)' is \(maskSize) but the image is \(imageSize); the mask must have the image's size."
        case let .emptyMask(mask):
            return "Mask '\(mask)' is entirely black, so there is nothing to repaint (white marks the area to repaint)."
        case let .imageTooSmall(width, height, minimum):
            return "The image is \(width)×\(height); both sides must be at least \(minimum) pixels."
        case let .cancelled(step):
            return "Cancelled at step \(step)."
        }
    }
}
