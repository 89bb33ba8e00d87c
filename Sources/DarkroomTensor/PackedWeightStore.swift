import CDNNL
import Foundation

/// The packed copies of one checkpoint file's weights (bf16 mode), kept on disk between processes.
///
/// In bf16, each weight is converted and reordered once into the layout its oneDNN primitive chose
/// (`PackedMatrix`), and a 3×3 kernel that runs Winograd is transformed once (`Weight.winogradKernelBFloat16`).
/// For an SD 1.5 UNet that is 1.9 GB of new memory at the first step, and on this project's machines the kernel's
/// zeroing of fresh pages was most of that step's 6–15 s extra (`perf`: `clear_page_erms`, 40 % of the samples).
/// A later process that finds the copies in this store maps them from the file instead: pages that are already in
/// the page cache cost a minor fault each, and nothing is converted.
///
/// One file per checkpoint file, `<folder>/<hash of the path>.packed`. Its header (JSON) names the checkpoint's
/// path and identity (device, inode, size, modification time: a replaced or rewritten checkpoint has another), the
/// oneDNN version and the size of its memory descriptor; each entry names the source weight (byte offset and length
/// in the checkpoint, and what was made of it) and carries the descriptor it was laid out for. A copy is used only
/// when its descriptor equals the one the primitive asks for now (`dnnl_memory_desc_equal`), so another CPU or
/// oneDNN that chooses another layout misses and packs afresh. A file that does not parse, or whose ranges do not
/// fit, is ignored. Weights that are not the file's own bytes (LoRA-patched ones, owned tensors) are never stored.
///
/// `folder` is nil (nothing read or written) unless the program sets it (the `darkroom` command:
/// `~/.cache/darkroom/packed`, bounded by `limitBytes`, oldest files removed first). Reading and writing are
/// advisory: any error leaves the weights to be packed as before.
public final class PackedWeightStore: @unchecked Sendable {
    /// Where stores live; nil: none are read or written.
    nonisolated(unsafe) public static var folder: URL?
    /// The most bytes the folder's files may take together (0: nothing is written).
    nonisolated(unsafe) public static var limitBytes = 16 << 30

    /// One packed copy: which bytes of the checkpoint it was made from, and what was made of them.
    struct Key: Hashable {
        let offset: Int, bytes: Int, content: String
    }

    private struct Header: Codable {
        var file: String, identity: String, onednn: String, descriptorSize: Int
        var entries: [Entry]
    }

    private struct Entry: Codable {
        var offset: Int, bytes: Int, content: String
        /// The dnnl_memory_desc_t's bytes.
        var descriptor: Data
        /// Where the copy starts, from the start of the file, and its length.
        var data: Int, size: Int
    }

    private static let magic: [UInt8] = Array("DRPACK01".utf8)
    private static let alignment = 4096

    private let file: String
    private let identity: String
    private let lock = Mutex()
    private var mapping: (base: UnsafeRawPointer, size: Int)?
    private var stored: [Key: [(descriptor: dnnl_memory_desc_t, data: Int, size: Int)]] = [:]
    private var made: [(key: Key, matrix: PackedMatrix)] = []
    /// Copies found in the file so far (for the tests and the logs).
    public var hits: Int { lock.withLock { hitCount } }
    private var hitCount = 0

    /// Every store alive, for `saveAll`.
    private static let registryLock = Mutex()
    nonisolated(unsafe) private static var registry: [WeakStore] = []
    private struct WeakStore { weak var store: PackedWeightStore? }

    /// Copies found in the stores alive.
    public static var totalHits: Int {
        registryLock.withLock { registry.reduce(0) { $0 + ($1.store?.hits ?? 0) } }
    }

    /// Saves every store that made copies since it was read or saved: after a job, when the copies its first step
    /// made are all there.
    public static func saveAll() {
        let stores = registryLock.withLock {
            registry.removeAll { $0.store == nil }
            return registry.compactMap(\.store)
        }
        for store in stores { store.save() }
    }

    /// The store of the checkpoint at `file` whose identity is `identity`, read from `folder` if it has one.
    public init(file: String, identity: String) {
        self.file = file
        self.identity = identity
        PackedWeightStore.registryLock.withLock { PackedWeightStore.registry.append(WeakStore(store: self)) }
        if let url, let (base, size) = PackedWeightStore.map(url) {
            if let entries = PackedWeightStore.entries(base: base, size: size, file: file, identity: identity) {
                mapping = (base, size)
                for entry in entries {
                    stored[entry.key, default: []].append((entry.descriptor, entry.data, entry.size))
                }
                // Used: the least recently used files are the ones removed when the folder is full.
                _ = utimes(url.path, nil)
            } else {
                munmap(UnsafeMutableRawPointer(mutating: base), size)
            }
        }
    }

    deinit {
        if let mapping { munmap(UnsafeMutableRawPointer(mutating: mapping.base), mapping.size) }
    }

    private var url: URL? {
        // FNV-1a of the path, as ScanRecord: one file per checkpoint file, replaced when it changes.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in file.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Self.folder?.appendingPathComponent(String(format: "%016llx.packed", hash))
    }

    /// The stored copy for `key` laid out as `descriptor`, borrowed from the file, or nil.
    func lookup(_ key: Key, descriptor: dnnl_memory_desc_t) -> PackedMatrix? {
        lock.withLock {
            guard let mapping, let candidates = stored[key] else { return nil }
            var wanted = descriptor
            for candidate in candidates {
                var found = candidate.descriptor
                guard dnnl_memory_desc_equal(&found, &wanted) != 0, dnnl_memory_desc_get_size(&found) == candidate.size
                else { continue }
                hitCount += 1
                return PackedMatrix(descriptor: found, borrowing: mapping.base + candidate.data, owner: self)
            }
            return nil
        }
    }

    /// Remembers a copy made in this process, for `save`.
    func record(_ key: Key, _ matrix: PackedMatrix) {
        lock.withLock { made.append((key, matrix)) }
    }

    /// Writes the file again, with the copies made since it was read (a new file renamed over the old one), if
    /// there are any. Copies already in the file are carried over.
    public func save() {
        guard let url, PackedWeightStore.limitBytes > 0 else { return }
        let snapshot: (header: Header, sources: [UnsafeRawPointer], keepAlive: [PackedMatrix])? = lock.withLock {
            guard !made.isEmpty else { return nil }
            var entries: [Entry] = [], sources: [UnsafeRawPointer] = []
            func add(_ key: Key, _ descriptor: dnnl_memory_desc_t, _ pointer: UnsafeRawPointer, _ size: Int) {
                let bytes = withUnsafeBytes(of: descriptor) { Data($0) }
                entries.append(Entry(offset: key.offset, bytes: key.bytes, content: key.content, descriptor: bytes, data: 0, size: size))
                sources.append(pointer)
            }
            if let mapping {
                for (key, copies) in stored {
                    for copy in copies { add(key, copy.descriptor, mapping.base + copy.data, copy.size) }
                }
            }
            for (key, matrix) in made { add(key, matrix.descriptor, UnsafeRawPointer(matrix.data), matrix.bytes) }
            let keepAlive = made.map(\.matrix)
            made = []
            return (Header(file: file, identity: identity, onednn: OneDNN.version,
                           descriptorSize: MemoryLayout<dnnl_memory_desc_t>.size, entries: entries), sources, keepAlive)
        }
        guard let snapshot else { return }
        var header = snapshot.header
        let sources = snapshot.sources
        defer { withExtendedLifetime(snapshot.keepAlive) {} }
        // The data after the header, each copy aligned; the offsets depend on the header's length, which depends
        // on the offsets' digits: lay out with room for them, then pad the header to that room.
        let provisional = (try? JSONEncoder().encode(header).count) ?? 0
        let headerRoom = PackedWeightStore.roundUp(16 + provisional + 32 * header.entries.count + 64)
        var position = headerRoom
        for i in header.entries.indices {
            header.entries[i].data = position
            position = PackedWeightStore.roundUp(position + header.entries[i].size)
        }
        guard let json = try? JSONEncoder().encode(header), 16 + json.count <= headerRoom,
              position <= PackedWeightStore.limitBytes else { return }
        let folder = url.deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        PackedWeightStore.makeRoom(in: folder, for: position, replacing: url)
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        var ok = true
        var prefix = PackedWeightStore.magic
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix += $0 }
        prefix += json
        prefix += [UInt8](repeating: 0, count: headerRoom - prefix.count)
        ok = ok && PackedWeightStore.write(fd, prefix.withUnsafeBytes { $0 }, at: 0)
        for (entry, source) in zip(header.entries, sources) where ok {
            ok = PackedWeightStore.write(fd, UnsafeRawBufferPointer(start: source, count: entry.size), at: entry.data)
        }
        ok = ok && ftruncate(fd, off_t(position)) == 0
        close(fd)
        if !ok || rename(temporary.path, url.path) != 0 { unlink(temporary.path) }
    }

    // MARK: - Reading

    private static func map(_ url: URL) -> (UnsafeRawPointer, Int)? {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_size >= 16 else { return nil }
        let size = Int(status.st_size)
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else { return nil }
        return (UnsafeRawPointer(base), size)
    }

    private struct Found {
        let key: Key, descriptor: dnnl_memory_desc_t, data: Int, size: Int
    }

    /// The entries of a mapped store file, or nil if it is not one for this checkpoint, oneDNN and descriptor layout.
    private static func entries(base: UnsafeRawPointer, size: Int, file: String, identity: String) -> [Found]? {
        guard size >= 16, (0..<8).allSatisfy({ base.load(fromByteOffset: $0, as: UInt8.self) == magic[$0] }) else { return nil }
        let stated = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard stated <= UInt64(size - 16) else { return nil }
        let length = Int(stated)
        guard
              let header = try? JSONDecoder().decode(Header.self, from: Data(bytes: base + 16, count: length)),
              header.file == file, header.identity == identity, header.onednn == OneDNN.version,
              header.descriptorSize == MemoryLayout<dnnl_memory_desc_t>.size
        else { return nil }
        var found: [Found] = []
        for entry in header.entries {
            guard entry.descriptor.count == header.descriptorSize, entry.data >= 16 + length, entry.size > 0,
                  entry.data <= size - entry.size, entry.data % alignment == 0
            else { return nil }
            var descriptor = dnnl_memory_desc_t()
            withUnsafeMutableBytes(of: &descriptor) { target in entry.descriptor.withUnsafeBytes { target.copyMemory(from: $0) } }
            found.append(Found(key: Key(offset: entry.offset, bytes: entry.bytes, content: entry.content),
                               descriptor: descriptor, data: entry.data, size: entry.size))
        }
        return found
    }

    // MARK: - Writing

    private static func roundUp(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    private static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    /// Removes the least recently used store files until `bytes` more fit under `limitBytes` (the file about to be
    /// replaced does not count).
    private static func makeRoom(in folder: URL, for bytes: Int, replacing: URL) {
        let keys: [URLResourceKey] = [.fileSizeKey, .contentModificationDateKey]
        guard let files = try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: keys) else { return }
        var others = files.filter { $0.pathExtension == "packed" && $0.lastPathComponent != replacing.lastPathComponent }
            .compactMap { url -> (URL, Int, Date)? in
                guard let values = try? url.resourceValues(forKeys: Set(keys)) else { return nil }
                return (url, values.fileSize ?? 0, values.contentModificationDate ?? .distantPast)
            }
            .sorted { $0.2 < $1.2 }
        var total = others.reduce(0) { $0 + $1.1 } + bytes
        while total > limitBytes, !others.isEmpty {
            let oldest = others.removeFirst()
            try? FileManager.default.removeItem(at: oldest.0)
            total -= oldest.1
        }
    }
}

/// Memory that holds checkpoint bytes (a file mapping): where a pointer into it lies in the file, and the store of
/// packed copies made from the file.
public protocol PackedWeightSource: AnyObject {
    /// The store and the byte offset of `pointer` in the file, or nil (no store, or not the file's bytes).
    func packedWeightStore(for pointer: UnsafeRawPointer) -> (store: PackedWeightStore, offset: Int)?
}
