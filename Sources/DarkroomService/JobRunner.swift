import DarkroomImageIO
import DarkroomPipeline
import DarkroomTensor
import Foundation
import Logging

/// How one claimed job's computation ended.
public enum ExecutionOutcome: Sendable, Equatable {
    /// Every result is staged in the job's work folder.
    case done(mode: String)
    case failed(JobFailure)
    /// Stopped on request (SIGTERM): the job stays claimed.
    case cancelled
    /// A write failed in a way that may pass (a full disk): try again later.
    case retry(String)
    /// The worker process died running the job.
    case crashed(WorkerCrash)
}

/// How a worker process died.
public struct WorkerCrash: Sendable, Equatable, CustomStringConvertible {
    /// `SIGSEGV`, `SIGKILL`, … or `exit status 3`.
    public var signal: String
    /// The worker's last log lines (stderr).
    public var log: [String]
    public var description: String { "the worker process died (\(signal))" }
    public init(signal: String, log: [String]) { (self.signal, self.log) = (signal, log) }
}

/// Where claimed jobs are computed: in this process (tests, `darkroom process`) or in a supervised
/// worker process (`darkroom run`), which a trap, a signal or the OOM killer can end without ending
/// the service.
public protocol JobBackend: AnyObject {
    /// Computes `record` into its staging folder. `progress` gets (image index, step, steps).
    func execute(_ record: JobRecord, progress: @escaping (Int, Int, Int) -> Void, shouldStop: @escaping () -> Bool) -> ExecutionOutcome
}

/// Runs jobs in this process with a `JobExecutor`.
public final class InProcessBackend: JobBackend {
    public let executor: JobExecutor
    let store: JobStore

    public init(executor: JobExecutor, store: JobStore) {
        self.executor = executor
        self.store = store
    }

    public func execute(_ record: JobRecord, progress: @escaping (Int, Int, Int) -> Void, shouldStop: @escaping () -> Bool) -> ExecutionOutcome {
        Self.outcome {
            try executor.execute(try JobExecutor.Inputs(record: record, store: store), staging: store.staging(record)) { index, step, steps in
                progress(index, step, steps)
                return !shouldStop()
            }
        }
    }

    /// The outcome of one execution, errors sorted into failures, cancellations and retries.
    public static func outcome(_ body: () throws -> PipelineConfiguration.Mode) -> ExecutionOutcome {
        do {
            return .done(mode: try body().rawValue)
        } catch let failure as JobFailure where failure.code == "cancelled" {
            return .cancelled
        } catch let failure as JobFailure {
            return .failed(failure)
        } catch let error as DeliveryError {
            return .retry(error.description)
        } catch {
            return .failed(JobFailure(code: "pipeline", message: "\(error)", file: nil, field: nil))
        }
    }
}

/// Takes jobs from the inbox to the outbox: claims, computes (through a `JobBackend`), publishes,
/// and on any problem fails the job cleanly (its inputs and an `error.json` in `Failed/`) and goes on.
/// A worker that dies gets its job retried once; a second death fails the job as `worker_crashed`.
/// Results that cannot be written (a full disk) keep the job claimed and are retried with back-off.
public final class JobRunner {
    public let store: JobStore
    public let queue: InboxQueue
    public var scanner: InboxScanner { queue.scanner }
    public let backend: JobBackend
    let logger: Logger
    /// Called after every denoising step with (job id, image index, step, steps): status and watchdog.
    public var onStep: ((String, Int, Int, Int) -> Void)?
    /// Called with a line for `STATUS=` when the runner waits (a full disk) or a worker died.
    public var onStatus: ((String) -> Void)?
    /// Worker deaths per job id.
    var crashes: [String: Int] = [:]
    /// Jobs whose folders could not be moved to `Processed/` or `Failed/` (the inbox vanished, …):
    /// never run again by this process.
    var stuck: Set<String> = []
    /// Called before each job is taken from the queue (the daemon reads inotify events here).
    public var poll: (() -> Void)?
    /// The longest wait between two delivery attempts.
    public var maximumBackoff: TimeInterval = 60

    public enum Outcome: Equatable { case done, failed(JobFailure), requeued }

    public init(store: JobStore, queue: InboxQueue, backend: JobBackend, logger: Logger) {
        self.store = store
        self.queue = queue
        self.backend = backend
        self.logger = logger
    }

    /// Jobs computed in this process (tests): the inbox's models in `library`.
    public convenience init(store: JobStore, scanner: InboxScanner, library: ModelLibrary, logger: Logger,
                            decodeLimits: DecodeLimits = .default,
                            loadPipeline: @escaping (URL) throws -> StableDiffusionPipeline = JobExecutor.defaultLoader) {
        let executor = JobExecutor(library: library, logger: logger, decodeLimits: decodeLimits, loadPipeline: loadPipeline)
        self.init(store: store, queue: InboxQueue(scanner: scanner), backend: InProcessBackend(executor: executor, store: store), logger: logger)
    }

    /// Finishes jobs interrupted earlier, then everything complete in the inbox; returns the outcomes.
    /// `shouldStop` is polled between jobs and steps (a stop requeues the job in progress).
    public func drain(shouldStop: @escaping () -> Bool = { false }) -> [Outcome] {
        var outcomes: [Outcome] = []
        for record in store.recover(logger: { [logger] in logger.error("\($0)") }) where !stuck.contains(record.id) {
            if shouldStop() { return outcomes }
            outcomes.append(run(record, shouldStop: shouldStop))
        }
        while !shouldStop() {
            poll?()
            guard let spec = queue.next() else { break }
            outcomes.append(claimAndRun(spec, shouldStop: shouldStop))
        }
        // Idle now: the freed activation blocks kept for reuse between ops go back to the system.
        LargeBlockCache.shared.releaseAll()
        return outcomes
    }

    func claimAndRun(_ spec: JobSpec, shouldStop: @escaping () -> Bool) -> Outcome {
        // What the claim needs from the recipe: the image count, the seed, a mask it names. A recipe
        // that cannot be read still gets claimed (with one output planned) so it can fail in order.
        let recipeURL = store.inbox.appendingPathComponent(spec.recipe)
        let recipe = (try? JobExecutor.readRegularFile(recipeURL, name: spec.recipe)).flatMap { try? Recipe.parse($0, file: spec.recipe) }
        let folder = URL(fileURLWithPath: spec.recipe).deletingLastPathComponent().relativePath
        var namedMask = spec.mask == nil ? recipe?.mask.map { folder == "." ? $0 : "\(folder)/\($0)" } : nil
        if let mask = namedMask, mask == spec.image || mask == spec.recipe || spec.conflicts.contains(mask) { namedMask = nil }
        let maskExists = namedMask.map { FileManager.default.fileExists(atPath: store.inbox.appendingPathComponent($0).path) } ?? false
        var extra: [String: String] = [:]
        for (i, other) in spec.conflicts.enumerated() { extra["conflict\(i + 1)"] = other }
        // A recipe's own control images (`controlnet[i].image`) beside it move in with the job, as a named mask does.
        for (i, use) in (recipe?.controlNets ?? []).enumerated() {
            guard let name = use.image else { continue }
            let path = folder == "." ? name : "\(folder)/\(name)"
            guard path != spec.image, path != spec.recipe, !spec.conflicts.contains(path), path != spec.mask, path != namedMask,
                  FileManager.default.fileExists(atPath: store.inbox.appendingPathComponent(path).path) else { continue }
            extra["control\(i)"] = path
        }
        let outcome: Outcome
        do {
            let record = try store.claim(spec, count: recipe?.configuration.count ?? 1,
                                         seed: recipe?.seed ?? UInt64.random(in: 0...UInt64.max),
                                         mask: maskExists ? namedMask : nil, extra: extra)
            outcome = run(record, shouldStop: shouldStop)
        } catch let error as JobStore.ClaimFailed {
            logger.info("job failed", metadata: ["job.id": "\(error.record.id)", "job.image": "\(spec.image)",
                                                 "error.code": "\(error.failure.code)", "error.message": "\(error.failure.message)"])
            outcome = .failed(error.failure)
        } catch {
            // Nothing was published: the inputs are still where the user left them.
            logger.error("cannot claim job", metadata: ["job.image": "\(spec.image)", "error.message": "\(error)"])
            outcome = .failed(JobFailure(code: "io", message: "\(error)", file: spec.image, field: nil))
        }
        if let batch = spec.batch, !queue.hasPending(batch: batch) { store.retireEmptyBatch(batch) }
        return outcome
    }

    /// Runs a claimed job to the end: delivered, failed, or (on stop) left claimed for the next start.
    public func run(_ record: JobRecord, shouldStop: @escaping () -> Bool) -> Outcome {
        let started = Date()
        var metadata: Logger.Metadata = ["job.id": "\(record.id)", "job.image": "\(record.sources["image"] ?? "")"]
        logger.info("job started", metadata: metadata)
        var backoff: TimeInterval = 1
        while true {
            // Delivered before a crash or stop, but not yet moved to Processed/: nothing to compute.
            let outcome = store.isDelivered(record) ? .done(mode: "delivered") : backend.execute(record, progress: { [onStep] index, step, steps in onStep?(record.id, index, step, steps) },
                                          shouldStop: shouldStop)
            switch outcome {
            case .done(let mode):
                // Publish every result, report last; a full outbox keeps the job claimed and waits.
                while true {
                    do {
                        try store.deliver(record)
                        break
                    } catch let error as DeliveryError {
                        if wait(&backoff, because: "cannot deliver job \(record.id): \(error)", shouldStop: shouldStop) {
                            logger.info("job requeued (stopping)", metadata: metadata)
                            return .requeued
                        }
                    } catch {
                        return finish(record, failure: (error as? JobFailure) ?? JobFailure(code: "io", message: "\(error)", file: nil, field: nil),
                                      metadata: metadata)
                    }
                }
                store.removeStaging(record)
                do { try store.complete(record) } catch {
                    stuck.insert(record.id)
                    logger.error("cannot move finished job to Processed", metadata: ["job.id": "\(record.id)", "error.message": "\(error)"])
                }
                crashes[record.id] = nil
                metadata["job.mode"] = "\(mode)"
                metadata["job.outputs"] = "\(record.outputs.joined(separator: ","))"
                metadata["job.seconds"] = "\(String(format: "%.1f", Date().timeIntervalSince(started)))"
                logger.info("job done", metadata: metadata)
                return .done
            case .failed(let failure):
                return finish(record, failure: failure, metadata: metadata)
            case .cancelled:
                logger.info("job requeued (stopping)", metadata: metadata)
                return .requeued
            case .retry(let reason):
                if wait(&backoff, because: "job \(record.id) cannot write its results: \(reason)", shouldStop: shouldStop) {
                    logger.info("job requeued (stopping)", metadata: metadata)
                    return .requeued
                }
            case .crashed(let crash):
                let deaths = (crashes[record.id] ?? 0) + 1
                crashes[record.id] = deaths
                logger.error("worker died", metadata: ["job.id": "\(record.id)", "worker.signal": "\(crash.signal)", "job.attempt": "\(deaths)"])
                onStatus?("job \(record.id): the worker died (\(crash.signal)); \(deaths < 2 ? "retrying once" : "failing the job")")
                if deaths >= 2 {
                    crashes[record.id] = nil
                    let image = record.sources["image"] ?? "the image"
                    return finish(record, failure: JobFailure(
                        code: "worker_crashed",
                        message: "The worker process died twice while running this job (\(crash.signal)), so the job was given up. "
                            + "A crash on '\(image)' or its recipe is a bug in Darkroom; the last log lines are in error.txt.",
                        file: record.sources["image"], field: nil, signal: crash.signal, log: crash.log), metadata: metadata)
                }
                if shouldStop() { return .requeued }
            }
        }
    }

    /// Fails a job: its inputs (and anything staged) with `error.json` to `Failed/`.
    func finish(_ record: JobRecord, failure: JobFailure, metadata: Logger.Metadata) -> Outcome {
        var metadata = metadata
        metadata["error.code"] = "\(failure.code)"
        metadata["error.file"] = "\(failure.file ?? "")"
        metadata["error.message"] = "\(failure.message)"
        logger.info("job failed", metadata: metadata)
        crashes[record.id] = nil
        do { try store.fail(record, error: failure) } catch {
            stuck.insert(record.id)
            logger.error("cannot move failed job", metadata: ["job.id": "\(record.id)", "error.message": "\(error)"])
        }
        return .failed(failure)
    }

    /// Sleeps `backoff` seconds (doubling it, up to `maximumBackoff`), polling `shouldStop`; true when stopped.
    func wait(_ backoff: inout TimeInterval, because reason: String, shouldStop: () -> Bool) -> Bool {
        logger.warning("\(reason); retrying in \(Int(backoff)) s")
        onStatus?("waiting: \(reason); retrying in \(Int(backoff)) s")
        let until = Date().addingTimeInterval(backoff)
        while Date() < until {
            if shouldStop() { return true }
            Thread.sleep(forTimeInterval: min(0.2, max(0, until.timeIntervalSinceNow)))
        }
        backoff = min(backoff * 2, maximumBackoff)
        return shouldStop()
    }
}
