import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes files so that no reader ever sees half of one, and nothing existing is replaced: the bytes go
/// to a hidden temporary file in the same folder, are fsynced, then linked to the final name (which
/// fails if it exists) and the temporary name removed; the folder is fsynced last.
public enum AtomicFile {
    public enum Failure: Error, CustomStringConvertible {
        /// The path, the reason and the `errno` behind it.
        case exists(String), failed(String, String, Int32)
        public var description: String {
            switch self {
            case .exists(let path): return "'\(path)' exists; it is never overwritten."
            case let .failed(path, reason, _): return "Cannot write '\(path)': \(reason)."
            }
        }
    }

    /// Whether `name` is one of this type's temporary files (`.<name>.<UUID>.tmp`).
    public static func isTemporaryName(_ name: String) -> Bool {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return false }
        let parts = name.dropLast(4).split(separator: ".")
        return parts.last.map { UUID(uuidString: String($0)) != nil } ?? false
    }

    public static func write(_ bytes: [UInt8], to url: URL) throws {
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { let code = errno; throw Failure.failed(url.path, String(cString: strerror(code)), code) }
        var written = 0
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        let code = errno
        close(fd)
        guard ok else { unlink(temporary.path); throw Failure.failed(url.path, String(cString: strerror(code)), code) }
        // link() refuses an existing target: an earlier output is never replaced.
        if link(temporary.path, url.path) != 0 {
            let error = errno
            unlink(temporary.path)
            if error == EEXIST { throw Failure.exists(url.path) }
            throw Failure.failed(url.path, String(cString: strerror(error)), error)
        }
        unlink(temporary.path)
        syncFolder(folder)
    }

    /// fsyncs a folder, so that names linked into it survive a power cut.
    public static func syncFolder(_ folder: URL) {
        let dir = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}
