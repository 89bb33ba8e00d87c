import DarkroomTensor
import Foundation

/// The tensors of one safetensors file found free of NaN/inf, remembered across processes so that a warm load
/// skips the scan.
///
/// Loading scans every tensor it reads (`Checkpoint.checkFinite`): with an fp32 SD 1.5 that is 4.2 GB of pages
/// touched and dropped again, most of a warm load's time. The names of the tensors that passed are written, after a
/// model is loaded (`Checkpoint.saveScanRecords`), to `<folder>/<hash of the path>.scanned`, whose first line is
/// the file's identity: path, device, inode, size and modification time (nanoseconds). A file replaced, rewritten
/// or touched gets a new identity, so its old record no longer counts and it is scanned again. A record is a
/// shortcut, never a judgement: a tensor with NaN/inf is never recorded, and a job's results are checked for
/// non-finite values whatever the weights.
///
/// `folder` is nil (no records) unless the program sets it (the `darkroom` command: `~/.cache/darkroom/scanned`).
/// Reading and writing records are advisory: any error leaves the scan to run.
final class ScanRecord: @unchecked Sendable {
    /// Where records live; nil: none are read or written.
    nonisolated(unsafe) static var folder: URL?

    private let file: String
    private let identity: String
    private let lock = NSLock()
    private var clean: Set<String>
    private var added = false

    init(file: String, identity: String) {
        self.file = file
        self.identity = identity
        clean = []
        if let url = recordURL, let text = try? String(contentsOf: url, encoding: .utf8) {
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.first == header { lines.removeFirst(); clean = Set(lines.filter { !$0.isEmpty }) }
        }
    }

    private var header: String { "darkroom scan record 1\t\(file)\t\(identity)" }

    private var recordURL: URL? {
        // FNV-1a of the path: one record per file, replaced when the file changes.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in file.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Self.folder?.appendingPathComponent(String(format: "%016llx.scanned", hash))
    }

    func isClean(_ tensor: String) -> Bool { lock.withLock { clean.contains(tensor) } }

    func markClean(_ tensor: String) {
        lock.withLock { if clean.insert(tensor).inserted { added = true } }
    }

    /// Writes the record if tensors were added since it was read (a new file renamed over the old one).
    func save() {
        guard let url = recordURL else { return }
        let text: String? = lock.withLock {
            guard added else { return nil }
            added = false
            return ([header] + clean.sorted()).joined(separator: "\n") + "\n"
        }
        guard let text else { return }
        let folder = url.deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try Data(text.utf8).write(to: temporary)
            if rename(temporary.path, url.path) != 0 { try? FileManager.default.removeItem(at: temporary) }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
        }
    }
}

extension SafetensorsFile {
    /// Where the names of tensors found free of NaN/inf are kept between processes (`ScanRecord`); nil: nowhere.
    public static var scanRecordFolder: URL? {
        get { ScanRecord.folder }
        set { ScanRecord.folder = newValue }
    }
}
