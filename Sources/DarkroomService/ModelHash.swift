import Crypto
import Foundation

/// A checkpoint's SHA-256, as AUTOMATIC1111 shows it: "Model hash" is the first 10 hex digits. Hashes
/// are cached in a writable state folder (`$STATE_DIRECTORY` under systemd, else
/// `$XDG_CACHE_HOME/darkroom` or `~/.cache/darkroom`), keyed by the file's real path, size and
/// modification time, so a read-only models folder (the unit's sandbox) does not mean a full SHA-256
/// of every checkpoint at every start. Without a writable cache the hash is simply computed.
public enum ModelHash {
    /// The full SHA-256 of a file, read in 16 MiB blocks.
    public static func sha256(of url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 16 << 20), !block.isEmpty { hasher.update(data: block) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Where hashes are cached: systemd's `StateDirectory=` (the first of `$STATE_DIRECTORY`), else the
    /// user's cache folder.
    public static func defaultCacheFolder(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL? {
        if let state = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !state.isEmpty {
            return URL(fileURLWithPath: String(state))
        }
        if let cache = environment["XDG_CACHE_HOME"], cache.hasPrefix("/") {
            return URL(fileURLWithPath: cache).appendingPathComponent("darkroom")
        }
        if let home = environment["HOME"], home.hasPrefix("/") {
            return URL(fileURLWithPath: home).appendingPathComponent(".cache/darkroom")
        }
        return nil
    }

    /// The "addnet" hash A1111 gives LoRA files (`modules/hashes.py::addnet_hash_safetensors`): the SHA-256
    /// of everything after the safetensors header, so editing the metadata keeps the hash.
    public static func addnetSHA256(of url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        let prefix = try handle.read(upToCount: 8) ?? Data()
        guard prefix.count == 8 else { throw CocoaError(.fileReadCorruptFile) }
        let headerLength = prefix.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength < (1 << 40) else { throw CocoaError(.fileReadCorruptFile) }
        try handle.seek(toOffset: 8 + headerLength)
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 16 << 20), !block.isEmpty { hasher.update(data: block) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// A1111's short hash of a LoRA (`Lora hashes:`): the first 12 hex digits of its addnet hash.
    public static func loraShort(for url: URL, cacheFolder: URL? = defaultCacheFolder()) -> String? {
        cached(url, cacheFolder: cacheFolder, kind: "addnet", compute: addnetSHA256(of:)).map { String($0.prefix(12)) }
    }

    /// A1111's short hash of a single-file checkpoint (nil for a folder), from the cache when still valid.
    public static func short(for url: URL, cacheFolder: URL? = defaultCacheFolder()) -> String? {
        cached(url, cacheFolder: cacheFolder, kind: nil, compute: sha256(of:)).map { String($0.prefix(10)) }
    }

    /// A file's hash of `kind` (nil: the plain SHA-256), from the cache when its size and date still match.
    static func cached(_ url: URL, cacheFolder: URL?, kind: String?, compute: (URL) throws -> String) -> String? {
        let real = url.resolvingSymlinksInPath()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: real.path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let attributes = try? FileManager.default.attributesOfItem(atPath: real.path),
              let size = attributes[.size] as? Int, let modified = attributes[.modificationDate] as? Date else { return nil }
        let cacheURL = cacheFolder?.appendingPathComponent("model-hashes.json")
        var cache = cacheURL.flatMap { try? JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: $0)) } ?? [:]
        let key = kind.map { "\($0):\(real.path)" } ?? real.path
        if let entry = cache[key], entry.size == size, entry.modified == modified.timeIntervalSince1970 {
            return entry.sha256
        }
        guard let full = try? compute(real) else { return nil }
        if let cacheURL, let folder = cacheFolder {
            cache[key] = Entry(size: size, modified: modified.timeIntervalSince1970, sha256: full)
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            if let data = try? JSONEncoder.sorted.encode(cache) { try? data.write(to: cacheURL, options: .atomic) }
        }
        return full
    }

    struct Entry: Codable { let size: Int; let modified: Double; let sha256: String }
}
