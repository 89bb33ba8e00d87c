import Crypto
import Foundation

/// A checkpoint's SHA-256, as AUTOMATIC1111 shows it: "Model hash" is the first 10 hex digits. Hashes
/// are cached in `<models>/.darkroom-hashes.json` by name, size and modification time (a read-only
/// models folder just means no cache).
public enum ModelHash {
    /// The full SHA-256 of a file, read in 16 MiB blocks.
    public static func sha256(of url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 16 << 20), !block.isEmpty { hasher.update(data: block) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// A1111's short hash of a single-file checkpoint (nil for a folder), from the cache when still valid.
    public static func short(for url: URL) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
              let size = attributes[.size] as? Int, let modified = attributes[.modificationDate] as? Date else { return nil }
        let cacheURL = url.deletingLastPathComponent().appendingPathComponent(".darkroom-hashes.json")
        var cache = (try? JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: cacheURL))) ?? [:]
        let key = url.lastPathComponent
        if let entry = cache[key], entry.size == size, entry.modified == modified.timeIntervalSince1970 {
            return String(entry.sha256.prefix(10))
        }
        guard let full = try? sha256(of: url) else { return nil }
        cache[key] = Entry(size: size, modified: modified.timeIntervalSince1970, sha256: full)
        if let data = try? JSONEncoder.sorted.encode(cache) { try? data.write(to: cacheURL, options: .atomic) }
        return String(full.prefix(10))
    }

    struct Entry: Codable { let size: Int; let modified: Double; let sha256: String }
}
