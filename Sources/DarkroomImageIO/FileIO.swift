#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and writes with POSIX calls, so that errno can be mapped
/// precisely to `ImageIOError` cases (missing, directory, permission).
enum FileIO {
    private static func reason(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "errno \(code)" }
        return String(cString: s)
    }

    private static func isDirectoryMode(_ mode: mode_t) -> Bool { (mode & S_IFMT) == S_IFDIR }
    private static func isRegularMode(_ mode: mode_t) -> Bool { (mode & S_IFMT) == S_IFREG }

    static func readAll(path: String, maxBytes: Int) throws -> [UInt8] {
        // O_NONBLOCK so that opening a FIFO cannot hang; it has no effect on regular files.
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) } while fd < 0 && errno == EINTR
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT, ENOTDIR: throw ImageIOError.fileNotFound(path: path)
            case EACCES, EPERM: throw ImageIOError.permissionDenied(path: path)
            case EISDIR: throw ImageIOError.isDirectory(path: path)
            default: throw ImageIOError.readFailed(path: path, reason: reason(e))
            }
        }
        defer { _ = close(fd) }

        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageIOError.readFailed(path: path, reason: reason(errno)) }
        if isDirectoryMode(st.st_mode) { throw ImageIOError.isDirectory(path: path) }
        guard isRegularMode(st.st_mode) else {
            throw ImageIOError.readFailed(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        guard size <= maxBytes else { throw ImageIOError.fileTooLarge(path: path, bytes: size, limit: maxBytes) }

        // Read up to the stat size plus one byte, which detects a file that
        // grew after fstat (then it is re-checked against the limit).
        var readError: Int32 = 0
        var bytes = [UInt8](unsafeUninitializedCapacity: size + 1) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            while initialized < buffer.count {
                let n = read(fd, base + initialized, buffer.count - initialized)
                if n > 0 {
                    initialized += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    readError = errno
                    break
                }
            }
        }
        if readError != 0 { throw ImageIOError.readFailed(path: path, reason: reason(readError)) }
        if bytes.count > size {
            // The file grew while we were reading: read on in chunks, bounded by the limit.
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    bytes.append(contentsOf: chunk[0..<n])
                    if bytes.count > maxBytes {
                        throw ImageIOError.fileTooLarge(path: path, bytes: bytes.count, limit: maxBytes)
                    }
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    throw ImageIOError.readFailed(path: path, reason: reason(errno))
                }
            }
        }
        return bytes
    }

    /// Plain (non-atomic) create/truncate + write.
    static func writeAll(path: String, bytes: [UInt8]) throws {
        var fd: Int32
        repeat { fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } while fd < 0 && errno == EINTR
        if fd < 0 { throw ImageIOError.writeFailed(path: path, reason: reason(errno)) }
        var writeError: Int32 = 0
        bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = write(fd, base + done, raw.count - done)
                if n > 0 {
                    done += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    writeError = n < 0 ? errno : EIO
                    return
                }
            }
        }
        let closeResult = close(fd)
        if writeError != 0 { throw ImageIOError.writeFailed(path: path, reason: reason(writeError)) }
        if closeResult != 0 { throw ImageIOError.writeFailed(path: path, reason: reason(errno)) }
    }
}
