import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a safetensors file in memory and writes it atomically.
///
/// Memory: each `add` converts its input immediately and keeps only the encoded bytes
/// (e.g. 2 bytes per element for F16), so a writer holding a whole checkpoint uses about
/// the size of the file it will write; the caller's Float arrays can be released after
/// each `add`. `write` streams those bytes to disk without building the file in memory.
///
/// Layout: header JSON (keys in sorted order, `__metadata__` first when non-empty, padded
/// with spaces to a multiple of 8 bytes so the data section is 8-byte aligned), then the
/// tensors contiguously in sorted-name order. The file is written to a temporary file in
/// the destination's directory, fsynced, renamed over the destination, and the directory
/// is fsynced, so readers see either the old file or the complete new one.
public struct SafetensorsWriter: Sendable {
    struct Entry: Sendable {
        let dtype: DType
        let shape: [Int]
        let bytes: [UInt8]
    }

    private var entries: [String: Entry] = [:]

    public init() {}

    /// Names added so far, sorted.
    public var tensorNames: [String] { entries.keys.sorted() }

    /// Total bytes of tensor data held (≈ the file size minus the header).
    public var dataByteCount: Int { entries.values.reduce(0) { $0 + $1.bytes.count } }

    /// Adds a floating-point tensor, encoded as `dtype` (F32, F16, BF16 or F64). F16 and BF16
    /// round to nearest even; values too large become ±inf; NaN stays NaN.
    public mutating func add(_ name: String, shape: [Int], floats: [Float], as dtype: DType = .f32) throws {
        try floats.withUnsafeBufferPointer { buffer in
            try add(name, shape: shape, floats: buffer, as: dtype)
        }
    }

    /// Same as `add(_:shape:floats:as:)` from any contiguous Float storage.
    public mutating func add(_ name: String, shape: [Int], floats: UnsafeBufferPointer<Float>, as dtype: DType = .f32) throws {
        switch dtype {
        case .f32, .f16, .bf16, .f64: break
        case .f8e4m3, .f8e5m2, .i64, .i32, .i16, .i8, .u8, .bool, .u64, .u32, .u16:
            throw WeightsError.unsupportedWriterDType(tensor: name, dtype: dtype)
        }
        let count = try checkNew(name, shape: shape, dtype: dtype)
        guard floats.count == count else {
            throw WeightsError.writerCountMismatch(tensor: name, shape: shape, expected: count, actual: floats.count)
        }
        let byteCount = count * dtype.byteSize // cannot overflow: checked in checkNew
        let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { out, initialized in
            if let dst = out.baseAddress, let src = floats.baseAddress, count > 0 {
                FloatConversion.encode(dtype, from: src, into: UnsafeMutableRawPointer(dst), count: count)
            }
            initialized = byteCount
        }
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Adds a tensor of any dtype from its little-endian bytes; `bytes.count` must equal
    /// product(shape) × dtype size.
    public mutating func addRaw(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) throws {
        let count = try checkNew(name, shape: shape, dtype: dtype)
        let byteCount = count * dtype.byteSize
        guard bytes.count == byteCount else {
            throw WeightsError.writerCountMismatch(tensor: name, shape: shape, expected: byteCount, actual: bytes.count)
        }
        entries[name] = Entry(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Validates a new tensor's name and shape; returns its element count.
    private func checkNew(_ name: String, shape: [Int], dtype: DType) throws -> Int {
        guard !name.isEmpty, name != "__metadata__" else {
            throw WeightsError.invalidTensorName(tensor: name)
        }
        guard entries[name] == nil else {
            throw WeightsError.duplicateTensorName(tensor: name)
        }
        var count = 1
        for dim in shape {
            guard dim >= 0 else { throw WeightsError.invalidWriterShape(tensor: name, shape: shape) }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw WeightsError.invalidWriterShape(tensor: name, shape: shape) }
            count = product
        }
        guard !count.multipliedReportingOverflow(by: dtype.byteSize).overflow else {
            throw WeightsError.invalidWriterShape(tensor: name, shape: shape)
        }
        return count
    }

    /// The header JSON (padded), for the current tensors.
    func headerBytes(metadata: [String: String]) -> [UInt8] {
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            var firstMeta = true
            for key in metadata.keys.sorted() {
                if !firstMeta { json += "," }
                firstMeta = false
                json += jsonQuoted(key) + ":" + jsonQuoted(metadata[key] ?? "")
            }
            json += "}"
            first = false
        }
        var offset = 0
        for name in entries.keys.sorted() {
            guard let e = entries[name] else { continue }
            if !first { json += "," }
            first = false
            let end = offset + e.bytes.count
            json += jsonQuoted(name)
            json += ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":["
            json += e.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var bytes = Array(json.utf8)
        let padding = (8 - bytes.count % 8) % 8
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        return bytes
    }

    /// Writes the file atomically (temporary file beside `url`, fsync, rename, fsync dir).
    public func write(to url: URL, metadata: [String: String] = [:]) throws {
        let path = url.path
        let directory = url.deletingLastPathComponent().path
        let tempPath = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"

        let fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw WeightsError.writeFailed(path: path, step: "creating temporary file '\(tempPath)'", errno: errno)
        }
        var fdOpen = true
        var renamed = false
        defer {
            if fdOpen { close(fd) }
            if !renamed { unlink(tempPath) }
        }

        let header = headerBytes(metadata: metadata)
        let prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        try writeAll(fd, prefix, path: path)
        try writeAll(fd, header, path: path)
        for name in entries.keys.sorted() {
            if let e = entries[name] { try writeAll(fd, e.bytes, path: path) }
        }
        guard fsync(fd) == 0 else {
            throw WeightsError.writeFailed(path: path, step: "fsync", errno: errno)
        }
        fdOpen = false
        guard close(fd) == 0 else {
            throw WeightsError.writeFailed(path: path, step: "close", errno: errno)
        }
        guard rename(tempPath, path) == 0 else {
            throw WeightsError.writeFailed(path: path, step: "rename", errno: errno)
        }
        renamed = true
        // Make the rename itself durable. Best effort: some filesystems refuse to fsync a
        // directory, and the data is already safely in place.
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            close(dirFD)
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buffer in
            guard var p = buffer.baseAddress else { return }
            var remaining = buffer.count
            while remaining > 0 {
                // Chunk to stay well under the kernel's 2 GiB single-write cap.
                let n = systemWrite(fd, p, min(remaining, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw WeightsError.writeFailed(path: path, step: "write", errno: errno)
                }
                if n == 0 {
                    throw WeightsError.writeFailed(path: path, step: "write", errno: EIO)
                }
                p += n
                remaining -= n
            }
        }
    }
}

private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// JSON string literal with the escapes RFC 8259 requires (other characters stay UTF-8).
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    out.reserveCapacity(s.utf8.count + 2)
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default:
            out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
    return out
}
