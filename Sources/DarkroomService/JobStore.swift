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

/// The inbox's bookkeeping (Maildir-style): claims are atomic renames into `work/`, a job's results are
/// staged in its work folder and then published into the outbox together, finished inputs move to
/// `Processed/`, failed ones with their `error.json` to `Failed/`. Nothing is deleted, nothing is overwritten.
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

    /// The store of a service that is already running (a worker's): creates nothing, cleans nothing.
    public init(existingInbox inbox: URL, outbox: URL) {
        self.inbox = inbox
        self.outbox = outbox
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
    /// `mask` is an inbox-relative mask the recipe names (beside the recipe), if any; `extra` are more
    /// inputs by role (files that make the job ambiguous, so they fail with it).
    ///
    /// Once the record is published the job exists: if moving its inputs fails, it is failed at once
    /// (whatever moved goes to `Failed/` with `error.json`), so a half claim never blocks anything.
    public func claim(_ spec: JobSpec, count: Int, seed: UInt64, mask: String? = nil, extra: [String: String] = [:]) throws -> JobRecord {
        let id = Self.jobID(stem: spec.stem)
        let outputFolder = spec.batch.map { outbox.appendingPathComponent($0) } ?? outbox
        try FileManager.default.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        let base = freeStem(spec.stem, in: outputFolder, count: count, planned: inFlightOutputs())
        let prefix = spec.batch.map { "\($0)/" } ?? ""
        var sources = extra.merging(["image": spec.image, "recipe": spec.recipe]) { $1 }
        if let mask = spec.mask ?? mask { sources["mask"] = mask }
        let record = JobRecord(id: id, sources: sources, recipeIsShared: spec.recipeIsShared,
                               outputs: (0..<count).map { "\(prefix)\(base)\($0 == 0 ? "" : "-\($0 + 1)").png" },
                               report: "\(prefix)\(base).json", batch: spec.batch, seed: seed)
        // Publish the record atomically (a folder renamed into place), then move the inputs.
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let staging = work.appendingPathComponent(".claim-\(id)")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try AtomicFile.write(Array(try JSONEncoder.sorted.encode(record)), to: staging.appendingPathComponent("job.json"))
        try rename(staging, work.appendingPathComponent(id))
        do { try finishClaim(record) } catch {
            let failure = (error as? JobFailure) ?? JobFailure(code: "io", message: "\(error)", file: spec.image, field: nil)
            try fail(record, error: JobFailure(code: failure.code, message: "The job could not be claimed: \(failure.message)",
                                               file: failure.file.map { relative($0) }, field: failure.field))
            throw ClaimFailed(record: record, failure: failure)
        }
        return record
    }

    /// A claim whose inputs could not all be moved in: the job has already been failed.
    public struct ClaimFailed: Error, CustomStringConvertible {
        public let record: JobRecord
        public let failure: JobFailure
        public var description: String { failure.message }
    }

    /// Moves every input still in the inbox into the job's work folder (shared recipes are copied).
    public func finishClaim(_ record: JobRecord) throws {
        let folder = work.appendingPathComponent(record.id)
        for (role, source) in record.sources.sorted(by: { $0.key < $1.key }) {
            let from = inbox.appendingPathComponent(source)
            let to = folder.appendingPathComponent(Self.claimedName(role: role, source: source))
            guard !exists(to) else { continue }
            var info = stat()
            guard lstat(from.path, &info) == 0 else {
                throw JobFailure(code: "io", message: "'\(source)' (\(role)) vanished from the inbox before it could be claimed.",
                                 file: source, field: role == "mask" ? "mask" : nil)
            }
            let isLink = info.st_mode & S_IFMT == S_IFLNK
            // A batch folder's recipe, and the control images it names, serve every image of the batch: copied.
            if (role == "recipe" || role.hasPrefix("control")) && record.recipeIsShared && !isLink {
                guard info.st_mode & S_IFMT == S_IFREG else {
                    throw JobFailure(code: "recipe", message: "'\(source)' is a folder, not a \(role == "recipe" ? "recipe" : "control image") file.",
                                     file: source, field: nil)
                }
                let bytes: Data
                do { bytes = try Data(contentsOf: from) } catch {
                    throw JobFailure(code: "recipe", message: "Cannot read '\(source)': \(error.localizedDescription)", file: source, field: nil)
                }
                try AtomicFile.write(Array(bytes), to: to)
            } else {
                try rename(from, to)
            }
        }
    }

    /// The path of a claimed input inside the work folder.
    public func claimed(_ record: JobRecord, role: String) -> URL? {
        record.sources[role].map { work.appendingPathComponent(record.id).appendingPathComponent(Self.claimedName(role: role, source: $0)) }
    }

    /// Where a job's results are written before they are published: `work/<id>/out/`.
    public func staging(_ record: JobRecord) -> URL {
        work.appendingPathComponent(record.id).appendingPathComponent("out")
    }

    /// Jobs claimed before a crash or a stop, with their claims completed. A job whose record cannot be
    /// read, or whose claim cannot be completed, is failed (its inputs and `error.json` go to `Failed/`);
    /// it never stops the recovery of the others.
    public func recover(logger: ((String) -> Void)? = nil) -> [JobRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []
        var records: [JobRecord] = []
        for name in names.sorted() {
            let folder = work.appendingPathComponent(name)
            if name.hasPrefix(".claim-") {
                // Never published: nothing had moved yet. Keep it out of the way rather than delete it.
                try? rename(folder, work.appendingPathComponent(".abandoned-\(name.dropFirst(7))"))
                continue
            }
            guard !name.hasPrefix(".") else { continue }
            let record: JobRecord
            do {
                record = try JSONDecoder().decode(JobRecord.self, from: Data(contentsOf: folder.appendingPathComponent("job.json")))
            } catch {
                // Not a record this version can read: its folder goes to Failed/ as it is.
                logger?("cannot read the record of claimed job \(name): \(error)")
                try? FileManager.default.createDirectory(at: failed, withIntermediateDirectories: true)
                try? AtomicFile.write(Array(try JSONEncoder.sorted.encode(JobFailure(
                    code: "io", message: "The job's record (job.json) cannot be read: \(error.localizedDescription)", file: nil, field: nil))),
                    to: folder.appendingPathComponent("error.json"))
                try? rename(folder, failed.appendingPathComponent(name))
                continue
            }
            do {
                try finishClaim(record)
                records.append(record)
            } catch {
                let failure = (error as? JobFailure) ?? JobFailure(code: "io", message: "\(error)", file: nil, field: nil)
                logger?("cannot complete the claim of job \(name): \(failure.message)")
                try? fail(record, error: failure)
            }
        }
        return records
    }

    /// What a job publishes, in order: its images, the defect mask when one was staged, the report last.
    public func deliverables(_ record: JobRecord) -> [String] {
        var names = record.outputs
        if let first = record.outputs.first {
            names.append(String(first.dropLast(4)) + ".defects.png")
        }
        return names + [record.report]
    }

    /// Publishes a job's staged results into the outbox, all of them, report last. A file already in the
    /// outbox under its planned name was published by an earlier attempt and is kept. Errors that may
    /// pass (a full disk, a quota, an I/O error, a read-only outbox) are `DeliveryError.transient`: the job
    /// stays claimed and delivery is tried again later.
    public func deliver(_ record: JobRecord) throws {
        let staged = staging(record)
        for name in deliverables(record) {
            let source = staged.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent)
            let target = outbox.appendingPathComponent(name)
            guard exists(source) else {
                if name.hasSuffix(".defects.png") { continue }
                if exists(target) { continue }           // published by an older version straight into the outbox
                throw JobFailure(code: "io", message: "The result '\(name)' was not produced.", file: name, field: nil)
            }
            if exists(target) { continue }
            do {
                try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            } catch {
                throw DeliveryError.transient(path: target.deletingLastPathComponent().path, reason: error.localizedDescription)
            }
            // A hard link publishes the staged file atomically without a second copy; across file
            // systems (EXDEV) or where links are refused, the bytes are copied (written, fsynced, linked).
            if link(source.path, target.path) == 0 {
                AtomicFile.syncFolder(target.deletingLastPathComponent())
                continue
            }
            let code = errno
            if code == EEXIST { continue }
            if code != EXDEV && code != EPERM && code != EMLINK {
                throw DeliveryError.transient(path: target.path, reason: String(cString: strerror(code)))
            }
            let bytes: Data
            do { bytes = try Data(contentsOf: source) } catch {
                throw DeliveryError.transient(path: source.path, reason: error.localizedDescription)
            }
            do { try AtomicFile.write(Array(bytes), to: target) } catch AtomicFile.Failure.exists {
                continue
            } catch AtomicFile.Failure.failed(let path, let reason, _) {
                throw DeliveryError.transient(path: path, reason: reason)
            }
        }
    }

    /// Whether every result of a job is in the outbox (its report is published last).
    public func isDelivered(_ record: JobRecord) -> Bool {
        ([record.report] + record.outputs).allSatisfy { exists(outbox.appendingPathComponent($0)) }
    }

    /// Removes a delivered job's staged results (they are in the outbox now; no second copy is kept).
    public func removeStaging(_ record: JobRecord) {
        let staged = staging(record)
        for name in deliverables(record) {
            let file = staged.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent)
            if exists(outbox.appendingPathComponent(name)) { unlink(file.path) }
        }
        rmdir(staged.path)
    }

    /// Moves a finished job's inputs (and its staged results) to `Processed/<id>/`.
    public func complete(_ record: JobRecord) throws {
        try FileManager.default.createDirectory(at: processed, withIntermediateDirectories: true)
        try rename(work.appendingPathComponent(record.id), processed.appendingPathComponent(record.id))
    }

    /// Writes `error.json` and a readable `error.txt` beside the inputs and moves them to `Failed/<id>/`.
    public func fail(_ record: JobRecord, error: JobFailure) throws {
        let folder = work.appendingPathComponent(record.id)
        try? AtomicFile.write(Array(try JSONEncoder.sorted.encode(error)), to: folder.appendingPathComponent("error.json"))
        var text = error.message + "\n"
        if let log = error.log, !log.isEmpty { text += "\nThe worker's last log lines:\n" + log.joined(separator: "\n") + "\n" }
        try? AtomicFile.write(Array(text.utf8), to: folder.appendingPathComponent("error.txt"))
        rmdir(staging(record).path)                              // only when nothing was staged
        try FileManager.default.createDirectory(at: failed, withIntermediateDirectories: true)
        try rename(folder, failed.appendingPathComponent(record.id))
    }

    /// A batch folder whose images are all claimed moves (with its recipe) to `Processed/`.
    public func retireEmptyBatch(_ batch: String) {
        let folder = inbox.appendingPathComponent(batch)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        let scanner = InboxScanner(inbox: inbox)
        guard !names.isEmpty, !names.contains(where: { scanner.isImage($0) && !$0.hasPrefix(".") }) else { return }
        try? FileManager.default.createDirectory(at: processed, withIntermediateDirectories: true)
        try? rename(folder, processed.appendingPathComponent("\(Self.jobID(stem: batch))-batch"))
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

    /// `stem`, or `stem_2`, `stem_3`, … : the first whose outputs, defect mask and report are all free.
    func freeStem(_ stem: String, in folder: URL, count: Int, planned: Set<String>) -> String {
        var n = 1
        while true {
            let candidate = n == 1 ? stem : "\(stem)_\(n)"
            let names = (0..<count).map { "\(candidate)\($0 == 0 ? "" : "-\($0 + 1)").png" }
                + ["\(candidate).json", "\(candidate).defects.png"]
            if names.allSatisfy({ !planned.contains($0) && !exists(folder.appendingPathComponent($0)) }) {
                return candidate
            }
            n += 1
        }
    }

    func exists(_ url: URL) -> Bool {
        var info = stat()
        return lstat(url.path, &info) == 0
    }

    func relative(_ path: String) -> String {
        path.hasPrefix(inbox.path + "/") ? String(path.dropFirst(inbox.path.count + 1)) : path
    }

    static func claimedName(role: String, source: String) -> String {
        "\(role)-\(URL(fileURLWithPath: source).lastPathComponent)"
    }

    nonisolated(unsafe) static let idFormatter: DateFormatter = {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        return formatter
    }()
    static let idLock = NSLock()

    static func jobID(stem: String) -> String {
        let time = idLock.withLock { idFormatter.string(from: Date()) }
        let safe = String(stem.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(40))
        return "\(time)-\(safe)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    func rename(_ from: URL, _ to: URL) throws {
        guard Glibc.rename(from.path, to.path) == 0 else {
            let code = errno
            throw JobFailure(code: "io", message: "Cannot move '\(relative(from.path))' to '\(relative(to.path))': \(String(cString: strerror(code))).",
                             file: relative(from.path), field: nil)
        }
    }
}

/// Why results could not be published. Every write error at delivery (ENOSPC, EDQUOT, EIO, EROFS, a
/// vanished outbox, …) is taken as one that may pass: the inputs and staged results are safe in the work
/// folder, so the job stays claimed and its delivery is retried with back-off, never failed for good.
public enum DeliveryError: Error, CustomStringConvertible {
    case transient(path: String, reason: String)

    public var description: String {
        switch self { case let .transient(path, reason): return "Cannot write '\(path)': \(reason)" }
    }
}

/// Why a job failed: written as `error.json` beside its inputs.
public struct JobFailure: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// recipe, image, mask, model, embedding, pipeline, non_finite, ambiguous, io, worker_crashed, cancelled.
    public var code: String
    public var message: String
    /// The offending file, when there is one.
    public var file: String?
    /// The offending recipe field, when there is one.
    public var field: String?
    /// `worker_crashed`: the signal that ended the worker (`SIGSEGV`), or its exit status.
    public var signal: String?
    /// `worker_crashed`: the worker's last log lines.
    public var log: [String]?
    public var description: String { message }

    public init(code: String, message: String, file: String?, field: String?, signal: String? = nil, log: [String]? = nil) {
        (self.code, self.message, self.file, self.field, self.signal, self.log) = (code, message, file, field, signal, log)
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
