import ArgumentParser
import DarkroomImageIO
import DarkroomService
import Dispatch
import Foundation
import Logging

extension Bench {
    /// The service's bookkeeping per job (scan, claim, publish, move to Processed) against the number
    /// of files waiting, with a stand-in for the computation, so nothing but the bookkeeping is timed.
    struct Inbox: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bookkeeping per job against the inbox's size: a batch folder of N files, jobs computed by a stand-in.")

        @Option(parsing: .upToNextOption, help: "Files waiting in the batch folder, one run each.")
        var files: [Int] = [200, 5_000, 20_000, 100_000]

        @Option(help: "Jobs timed per run.")
        var jobs = 500

        @Option(help: "Also time a full scan before every job (the service before issue 11) for inboxes up to this size.")
        var compareUpTo = 20_000

        func validate() throws {
            guard jobs >= 1, files.allSatisfy({ $0 >= 2 && $0 <= 1_000_000 }) else {
                throw ValidationError("--jobs must be at least 1 and --files from 2 to 1000000.")
            }
        }

        func run() throws {
            print("Bookkeeping per job (scan, claim, publish, Processed/); the computation is a stand-in that stages 1-byte results.")
            print(pad("files waiting", 16) + pad("first scan", 13) + pad("per job", 12) + pad("full scans", 12)
                  + pad("per job, scan before each", 28) + "peak RSS")
            for count in files {
                let (firstScan, perJob, scans) = try measure(files: count, jobs: min(jobs, count - 1), rescanEveryJob: false)
                var old = "-"
                if count <= compareUpTo {
                    let (_, perJobOld, _) = try measure(files: count, jobs: min(max(jobs / 10, 20), count - 1), rescanEveryJob: true)
                    old = String(format: "%.2f ms", perJobOld * 1000)
                }
                print(pad("\(count)", 16) + pad(String(format: "%.3f s", firstScan), 13) + pad(String(format: "%.2f ms", perJob * 1000), 12)
                      + pad("\(scans)", 12) + pad(old, 28) + String(format: "%.0f MiB", peakRSSGiB() * 1024))
            }
        }

        /// Seconds for the first scan, seconds per job over `jobs` jobs, and the full scans they took.
        func measure(files: Int, jobs: Int, rescanEveryJob: Bool) throws -> (TimeInterval, TimeInterval, Int) {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-bench-inbox-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: root) }
            let album = root.appendingPathComponent("Inbox/album")
            try FileManager.default.createDirectory(at: album, withIntermediateDirectories: true)
            try Data(#"{"mode": "img2img", "seed": 1}"#.utf8).write(to: album.appendingPathComponent("recipe.json"))
            for i in 0..<(files - 1) {
                FileManager.default.createFile(atPath: album.appendingPathComponent(String(format: "photo%06d.png", i)).path, contents: Data([0]))
            }
            let store = try JobStore(inbox: root.appendingPathComponent("Inbox"), outbox: root.appendingPathComponent("Outbox"))
            let queue = InboxQueue(scanner: InboxScanner(inbox: store.inbox, settle: 0))
            if rescanEveryJob { queue.scanSpacing = 0 }
            let stub = StagingStub(store: store)
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let runner = JobRunner(store: store, queue: queue, backend: stub, logger: logger)
            if rescanEveryJob { runner.poll = { queue.markChanged() } }
            let start = DispatchTime.now().uptimeNanoseconds
            let outcomes = runner.drain(shouldStop: { stub.count >= jobs })
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let done = outcomes.filter { $0 == .done }.count
            guard done == jobs else { throw ValidationError("only \(done) of \(jobs) jobs were done") }
            // The first scan is part of the first job's time; the figure per job includes it, amortised.
            return (queue.firstScanDuration, seconds / Double(done), queue.scans)
        }
    }
}

/// Stands in for the computation: stages a 1-byte file for each result and the report.
final class StagingStub: JobBackend {
    let store: JobStore
    var count = 0

    init(store: JobStore) { self.store = store }

    func execute(_ record: JobRecord, progress: @escaping (Int, Int, Int) -> Void, shouldStop: @escaping () -> Bool) -> ExecutionOutcome {
        let staging = store.staging(record)
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
            for name in record.outputs + [record.report] {
                try AtomicFile.write([0], to: staging.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent))
            }
        } catch {
            return .failed(JobFailure(code: "io", message: "\(error)", file: nil, field: nil))
        }
        count += 1
        return .done(mode: "stub")
    }
}

func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count + 1), withPad: " ", startingAt: 0) }

extension Bench {
    /// What running jobs in a worker process costs against running them in the service process:
    /// the same jobs on the same checkpoint, both ways, in one invocation.
    struct Isolation: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seconds per job with and without the worker process, on one checkpoint (e.g. a small test model).")

        @Option(help: "A .safetensors checkpoint or a diffusers folder.")
        var model: String

        @Option(help: "Jobs per way.")
        var jobs = 40

        @Option(help: "Steps per job.")
        var steps = 4

        @Option(help: "Rounds (both ways each round; the best round is reported).")
        var rounds = 3

        func run() throws {
            var logger = Logger(label: "bench")
            logger.logLevel = .error
            let modelURL = URL(fileURLWithPath: model).standardizedFileURL
            var best: [String: Double] = [:]
            var startup: [String: Double] = [:]
            for _ in 0..<rounds {
                for way in ["in-process", "worker"] {
                    let root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-bench-isolation-\(UUID().uuidString.prefix(8))")
                    defer { try? FileManager.default.removeItem(at: root) }
                    let models = root.appendingPathComponent("Models")
                    try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
                    try FileManager.default.createSymbolicLink(at: models.appendingPathComponent(modelURL.lastPathComponent), withDestinationURL: modelURL)
                    let inbox = root.appendingPathComponent("Inbox")
                    try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
                    let image = try benchImage()
                    for i in 0..<jobs {
                        try image.write(to: inbox.appendingPathComponent("p\(i).png"))
                        try Data(#"{"mode": "img2img", "steps": \#(steps), "strength": 1, "seed": \#(i)}"#.utf8).write(to: inbox.appendingPathComponent("p\(i).json"))
                    }
                    let store = try JobStore(inbox: inbox, outbox: root.appendingPathComponent("Outbox"))
                    let library = ModelLibrary(folder: models)
                    let loadStart = Date()
                    let backend: JobBackend
                    if way == "worker" {
                        let worker = WorkerProcess(executable: Run.executable,
                                                   arguments: ["worker", "--inbox", inbox.path, "--outbox", store.outbox.path, "--models", models.path],
                                                   logger: logger)
                        worker.forwardsLog = false
                        if let crash = worker.start() { throw ValidationError("the worker did not start: \(crash)") }
                        backend = worker
                    } else {
                        let executor = JobExecutor(resolveModel: { try library.resolve($0) }, logger: logger, hashCache: nil)
                        try executor.preload()
                        backend = InProcessBackend(executor: executor, store: store)
                    }
                    startup[way] = min(startup[way] ?? .infinity, Date().timeIntervalSince(loadStart))
                    let runner = JobRunner(store: store, queue: InboxQueue(scanner: InboxScanner(inbox: inbox, settle: 0)), backend: backend, logger: logger)
                    let start = Date()
                    let done = runner.drain().filter { $0 == .done }.count
                    let perJob = Date().timeIntervalSince(start) / Double(max(done, 1))
                    if let worker = backend as? WorkerProcess { worker.stop() }
                    guard done == jobs else { throw ValidationError("\(way): only \(done) of \(jobs) jobs were done") }
                    best[way] = min(best[way] ?? .infinity, perJob)
                }
            }
            let inProcess = best["in-process"] ?? 0, worker = best["worker"] ?? 0
            print("\(jobs) img2img jobs of \(steps) steps on \(modelURL.lastPathComponent), best of \(rounds) rounds")
            print(pad("way", 14) + pad("start (model loaded)", 22) + "per job")
            for way in ["in-process", "worker"] {
                print(pad(way, 14) + pad(String(format: "%.3f s", startup[way] ?? 0), 22) + String(format: "%.2f ms", (best[way] ?? 0) * 1000))
            }
            print(String(format: "isolation costs %.2f ms per job (%.1f %% of an in-process job here)",
                         (worker - inProcess) * 1000, inProcess > 0 ? (worker - inProcess) / inProcess * 100 : 0))
        }

        /// A 64×64 PNG (a gradient).
        func benchImage() throws -> Data {
            var samples = [UInt16]()
            for y in 0..<64 { for x in 0..<64 { samples += [UInt16(x * 4), UInt16(y * 4), 128] } }
            return Data(try PNGEncoder.encode(try Image(width: 64, height: 64, layout: .rgb, bitDepth: 8, samples: samples)))
        }
    }
}
