/// Errors from decoding, encoding and file access. Every case names the file
/// (the path for `decode(fileAt:)`/`write(to:)`, the caller's `name` for
/// in-memory decoding, or a fixed label such as "in-memory image" when there
/// is no file), and `description` is one sentence naming file and problem.
public enum ImageIOError: Error, CustomStringConvertible, Equatable {
    // File access
    case fileNotFound(path: String)
    case isDirectory(path: String)
    case permissionDenied(path: String)
    case readFailed(path: String, reason: String)
    case writeFailed(path: String, reason: String)
    case fileTooLarge(path: String, bytes: Int, limit: Int)
    // Content
    case emptyFile(name: String)
    case unrecognizedFormat(name: String)
    case truncated(name: String, format: ImageFormat, detail: String)
    case corrupt(name: String, format: ImageFormat, detail: String)
    case unsupported(name: String, format: ImageFormat, detail: String)
    case invalidDimensions(name: String, width: Int, height: Int)
    case tooManyPixels(name: String, width: Int, height: Int, limit: Int)
    case outOfMemory(name: String, format: ImageFormat)
    // Encoding / construction
    case invalidImage(name: String, detail: String)
    case invalidTextChunk(name: String, key: String, reason: String)
    case encodeFailed(name: String, format: ImageFormat, detail: String)

    /// The file path or name the error is about.
    public var name: String {
        switch self {
        case .fileNotFound(let p), .isDirectory(let p), .permissionDenied(let p),
             .readFailed(let p, _), .writeFailed(let p, _), .fileTooLarge(let p, _, _):
            return p
        case .emptyFile(let n), .unrecognizedFormat(let n), .truncated(let n, _, _), .corrupt(let n, _, _),
             .unsupported(let n, _, _), .invalidDimensions(let n, _, _), .tooManyPixels(let n, _, _, _),
             .outOfMemory(let n, _), .invalidImage(let n, _), .invalidTextChunk(let n, _, _),
             .encodeFailed(let n, _, _):
            return n
        }
    }

    public var description: String {
        switch self {
        case .fileNotFound(let p):
            return "Cannot read image '\(p)': the file does not exist."
        case .isDirectory(let p):
            return "Cannot read image '\(p)': it is a directory, not a file."
        case .permissionDenied(let p):
            return "Cannot read image '\(p)': permission denied."
        case .readFailed(let p, let reason):
            return "Cannot read image '\(p)': \(reason)."
        case .writeFailed(let p, let reason):
            return "Cannot write image '\(p)': \(reason)."
        case .fileTooLarge(let p, let bytes, let limit):
            return "Refusing to read image '\(p)': the file is \(bytes) bytes, above the limit of \(limit) bytes."
        case .emptyFile(let n):
            return "Cannot decode image '\(n)': the file is empty (0 bytes)."
        case .unrecognizedFormat(let n):
            return "Cannot decode image '\(n)': it is neither a PNG nor a JPEG file (unrecognised leading bytes)."
        case .truncated(let n, let f, let detail):
            return "Cannot decode image '\(n)': the \(f) file is truncated (\(detail))."
        case .corrupt(let n, let f, let detail):
            return "Cannot decode image '\(n)': the \(f) data is corrupt (\(detail))."
        case .unsupported(let n, let f, let detail):
            return "Cannot decode image '\(n)': unsupported \(f) variant (\(detail))."
        case .invalidDimensions(let n, let w, let h):
            return "Cannot decode image '\(n)': invalid dimensions \(w)x\(h) (width and height must be at least 1)."
        case .tooManyPixels(let n, let w, let h, let limit):
            return "Refusing to decode image '\(n)': \(w)x\(h) is \(w.multipliedReportingOverflow(by: h).overflow ? "too many" : String(w * h)) pixels, above the limit of \(limit) pixels."
        case .outOfMemory(let n, let f):
            return "Cannot decode image '\(n)': out of memory while decoding the \(f) data."
        case .invalidImage(let n, let detail):
            return "Invalid image '\(n)': \(detail)."
        case .invalidTextChunk(let n, let key, let reason):
            return "Cannot encode '\(n)': PNG text key '\(key)' is invalid (\(reason))."
        case .encodeFailed(let n, let f, let detail):
            return "Cannot encode '\(n)' as \(f): \(detail)."
        }
    }
}
