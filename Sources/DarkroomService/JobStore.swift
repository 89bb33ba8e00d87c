import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `Inbox/.darkroom/work/<id>/job.json` records about a claimed job, written before any input
/// moves: enough to finish the claim and the job after a crash, and to deliver each output once.
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: String
    /// Inbox-relative paths the inputs came from, by role ("image", "recipe", "mask").
    public var sources: [String: String]
    /// Whether the recipe is shared (batch folders: copied, not moved).
    public var recipeIsShared: Bool
    /// Outbox-relative result names, chosen free at claim time, in seed order.
    public var outputs: [String]
    /// Outbox-relative name of the JSON report.
    public var report: String
    public var batch: String?
    /// The first image's seed: the recipe's, or drawn at claim time, so a recovered job repeats it.
    public var seed: UInt64
}

/// The inbox's bookkeeping (Maildir-style): claims are atomic renames into `work/`, results are
/// published atomically into the outbox, finished inputs move to `Processed/`, failed ones with their
/// `error.json` to `Failed/`. Nothing is deleted, nothing is overwritten.
public struct JobStore: Sendable {
    public let inbox: URL, outbox: URL
    public var work: URL { inbox.appendingPathComponent(".darkroom/work") }
    public var processed: URL { inbox.appendingPathComponent("Processed") }
    public var failed: URL { inbox.appendingPathComponent("Failed") }

    public init(inbox: URL, outbox: URL) throws {
        self.inbox = inbox
        self.outbox = outbox
        for folder in [work, processed, failed, outbox] {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        }
        removeStaleTemporaryFiles()
    }

    /// Temporary files `AtomicFile` left behind when the process was killed mid-write: hidden,
    /// `.<name>.<UUID>.tmp`, never a user's file or a delivered result.
    func removeStaleTemporaryFiles() {
        for root in [outbox, work] {
            guard let paths = FileManager.default.enumerator(atPath: root.path) else { continue }
            for case let path as String in paths {
                let name = URL(fileURLWithPath: path).lastPathComponent
                guard AtomicFile.isTemporaryName(name) else { continue }
                unlink(root.appendingPathComponent(path).path)
            }
        }
    }

    /// Claims `spec`: plans its outputs (`count` images), publishes the record, then moves the inputs in.
    /// `mask` is an inbox-relative mask the recipe names (beside the recipe), if any.
    public func claim(_ spec: JobSpec, count: Int, seed: UInt64, mask: String? = nil) throws -> JobRecord {
        let id = Self.jobID(stem: spec.stem)
        let outputFolder = spec.batch.map { outbox.appendingPathComponent($0) } ?? outbox
        try FileManager.default.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        let base = freeStem(spec.stem, in: outputFolder, count: count, planned: inFlightOutputs())
        let prefix = spec.batch.map { "\($0)/" } ?? ""
        var sources = ["image": spec.image, "recipe": spec.recipe]
        if let mask = spec.mask ?? mask { sources["mask"] = mask }
        let record = JobRecord(id: id, sources: sources, recipeIsShared: spec.recipeIsShared,
                               outputs: (0..<count).map { "\(prefix)\(base)\($0 == 0 ? "" : "-\($0 + 1)").png" },
                               report: "\(prefix)\(base).json", batch: spec.batch, seed: seed)
        // Publish the record atomically (a folder renamed into place), then move the inputs.
        let staging = work.appendingPathComponent(".claim-\(id)")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try AtomicFile.write(Array(try JSONEncoder.sorted.encode(record)), to: staging.appendingPathComponent("job.json"))
        try rename(staging, work.appendingPathComponent(id))
        try finishClaim(record)
        return record
    }

    /// Moves every input still in the inbox into the job's work folder (shared recipes are copied).
    public func finishClaim(_ record: JobRecord) throws {
        let folder = work.appendingPathComponent(record.id)
        for (role, source) in record.sources.sorted(by: { $0.key < $1.key }) {
            let from = inbox.appendingPathComponent(source)
            let to = folder.appendingPathComponent(Self.claimedName(role: role, source: source))
            guard !FileManager.default.fileExists(atPath: to.path) else { continue }
            var info = stat()
            let isLink = lstat(from.path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
            if role == "recipe" && record.recipeIsShared && !isLink {
                try AtomicFile.write(Array(try Data(contentsOf: from)), to: to)
            } else {
                try rename(from, to)
            }
        }
    }

    /// The path of a claimed input inside the work folder.
    public func claimed(_ record: JobRecord, role: String) -> URL? {
        record.sources[role].map { work.appendingPathComponent(record.id).appendingPathComponent(Self.claimedName(role: role, source: $0)) }
    }

    /// Jobs claimed before a crash or a stop: their records, with the claim completed.
    public func recover() throws -> [JobRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []
        var records: [JobRecord] = []
        for name in names.sorted() {
            let folder = work.appendingPathComponent(name)
            if name.hasPrefix(".claim-") {
                // Never published: nothing had moved yet. Keep it out of the way rather than delete it.
                try? rename(folder, work.appendingPathComponent(".abandoned-\(name.dropFirst(7))"))
                continue
            }
            guard !name.hasPrefix("."), let data = try? Data(contentsOf: folder.appendingPathComponent("job.json")),
                  let record = try? JSONDecoder().decode(JobRecord.self, from: data) else { continue }
            try finishClaim(record)
            records.append(record)
        }
        return records
    }

    /// Moves a finished job's inputs to `Processed/<id>/`.
    public func complete(_ record: JobRecord) throws {
        try rename(work.appendingPathComponent(record.id), processed.appendingPathComponent(record.id))
        try retireEmptyBatch(record)
    }

    /// Writes `error.json` and a readable `error.txt` beside the inputs and moves them to `Failed/<id>/`.
    public func fail(_ record: JobRecord, error: JobFailure) throws {
        let folder = work.appendingPathComponent(record.id)
        try? AtomicFile.write(Array(try JSONEncoder.sorted.encode(error)), to: folder.appendingPathComponent("error.json"))
        try? AtomicFile.write(Array((error.message + "\n").utf8), to: folder.appendingPathComponent("error.txt"))
        try rename(folder, failed.appendingPathComponent(record.id))
        try retireEmptyBatch(record)
    }

    /// A batch folder whose images are all claimed moves (with its recipe) to `Processed/`.
    func retireEmptyBatch(_ record: JobRecord) throws {
        guard let batch = record.batch else { return }
        let folder = inbox.appendingPathComponent(batch)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let scanner = InboxScanner(inbox: inbox)
        guard !names.contains(where: { scanner.isImage($0) && !$0.hasPrefix(".") }) else { return }
        try? rename(folder, processed.appendingPathComponent("\(record.id)-\(batch)"))
    }

    /// Outputs planned by jobs in flight (so two claims never plan the same name).
    func inFlightOutputs() -> Set<String> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []
        var planned = Set<String>()
        for name in names where !name.hasPrefix(".") {
            if let data = try? Data(contentsOf: work.appendingPathComponent(name).appendingPathComponent("job.json")),
               let record = try? JSONDecoder().decode(JobRecord.self, from: data) {
                planned.formUnion(record.outputs.map { URL(fileURLWithPath: $0).lastPathComponent })
                planned.insert(URL(fileURLWithPath: record.report).lastPathComponent)
            }
        }
        return planned
    }

    /// `stem`, or `stem_2`, `stem_3`, … : the first whose outputs and report are all free.
    func freeStem(_ stem: String, in folder: URL, count: Int, planned: Set<String>) -> String {
        var n = 1
        while true {
            let candidate = n == 1 ? stem : "\(stem)_\(n)"
            let names = (0..<count).map { "\(candidate)\($0 == 0 ? "" : "-\($0 + 1)").png" } + ["\(candidate).json"]
            if names.allSatisfy({ !planned.contains($0) && !FileManager.default.fileExists(atPath: folder.appendingPathComponent($0).path) }) {
                return candidate
            }
            n += 1
        }
    }

    static func claimedName(role: String, source: String) -> String {
        "\(role)-\(URL(fileURLWithPath: source).lastPathComponent)"
    }

    static func jobID(stem: String) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        let safe = String(stem.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(40))
        return "\(formatter.string(from: Date()))-\(safe)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    func rename(_ from: URL, _ to: URL) throws {
        guard Glibc.rename(from.path, to.path) == 0 else {
            throw JobFailure(code: "io", message: "Cannot move '\(from.path)' to '\(to.path)': \(String(cString: strerror(errno))).",
                             file: from.path, field: nil)
        }
    }
}

/// Why a job failed: written as `error.json` beside its inputs.
public struct JobFailure: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// recipe, image, mask, model, pipeline, io, cancelled.
    public var code: String
    public var message: String
    /// The offending file, when there is one.
    public var file: String?
    /// The offending recipe field, when there is one.
    public var field: String?
    public var description: String { message }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
