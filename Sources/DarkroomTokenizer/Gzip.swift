import CZlib
import Foundation

enum Gzip {
    /// Upper bound for a decompressed tokenizer file (the CLIP merges are ~1.6 MB).
    static let maxDecompressedBytes = 256 << 20

    /// Decompresses a gzip (or zlib) stream with the system zlib. `path` only names the file in errors.
    static func decompress(_ data: Data, path: String) throws -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var outLen = 0
        let rc: Int32 = data.withUnsafeBytes { raw -> Int32 in
            let base = raw.bindMemory(to: UInt8.self).baseAddress
            // zlib never reads through a null pointer when the length is 0; give it a valid one anyway.
            var empty: UInt8 = 0
            if let base {
                return dr_gunzip(base, raw.count, maxDecompressedBytes, &out, &outLen)
            }
            return dr_gunzip(&empty, 0, maxDecompressedBytes, &out, &outLen)
        }
        defer { free(out) }
        guard rc == Int32(DR_GZ_OK) else {
            let reason: String
            switch rc {
            case Int32(DR_GZ_ERR_TRUNCATED): reason = "the compressed stream is truncated"
            case Int32(DR_GZ_ERR_NOMEM): reason = "out of memory"
            case Int32(DR_GZ_ERR_TOO_LARGE): reason = "decompressed size exceeds \(maxDecompressedBytes) bytes"
            default: reason = "not a valid gzip stream"
            }
            throw TokenizerError.corruptGzip(path: path, reason: reason)
        }
        guard let out else { return [] }
        return Array(UnsafeBufferPointer(start: out, count: outLen))
    }
}
