import ArgumentParser
import DarkroomService
import Dispatch
import DarkroomTensor
import Foundation
import Logging

/// Set by SIGTERM/SIGINT; polled between jobs and steps.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

/// Where `run` computes its jobs.
enum Isolation: String, ExpressibleByArgument, CaseIterable {
    /// In a supervised worker process: a crash fails the job, not the service (the default).
    case worker
    /// In the service process itself: for debugging and for measuring what isolation costs.
    case none
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch an inbox and write results to an outbox (see README: Inbox).")

    @OptionGroup var folders: ServiceFolders

    @Flag(help: "Process what is in the inbox, then exit (status 1 if any job failed).")
    var once = false

    @Option(help: "Seconds a file must stay unchanged before it counts as complete.")
    var settle: Double = 2

    @Option(help: "Where jobs are computed: worker (a supervised process; a crash fails only its job) or none (in the service process).")
    var isolation: Isolation = .worker

    func validate() throws {
        guard settle.isFinite, settle >= 0, settle <= 3600 else { throw ValidationError("--settle must be a number of seconds from 0 to 3600.") }
    }

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "darkroom")
        logger.logLevel = .info
        signal(SIGTERM) { _ in stopRequested = 1 }
        signal(SIGINT) { _ in stopRequested = 1 }
        signal(SIGPIPE, SIG_IGN)
        let store = try JobStore(inbox: folders.inboxURL, outbox: folders.outboxURL)
        let library = folders.library
        if library.available.isEmpty {
            logger.warning("no checkpoint in the models folder '\(library.folder.path)': jobs will fail until one is there (darkroom models pull sd15); mode upscale needs none")
        }
        let notifier = SystemdNotifier()
        if let warning = BLAS.slowerThanAvailable { logger.warning("\(warning)") }
        logger.info("OpenBLAS \(BLAS.coreName) kernels, \(BLAS.threadCount) threads")

        let backend: JobBackend, model: String?
        switch isolation {
        case .worker:
            let worker = WorkerProcess(executable: Self.executable, arguments: ["worker"] + folders.arguments, logger: logger)
            if let crash = worker.start(shouldStop: { stopRequested != 0 }) {
                logger.error("the worker process could not start: \(crash.signal)")
            }
            model = worker.readyMessage?.model
            backend = worker
        case .none:
            let executor = JobExecutor(library: library, logger: logger)
            executor.defaultPrecision = folders.precision
            do { model = try executor.preload() } catch {
                logger.error("the default model could not be loaded: \(error)")
                model = nil
            }
            backend = InProcessBackend(executor: executor, store: store)
        }
        let queue = InboxQueue(scanner: InboxScanner(inbox: store.inbox, settle: settle))
        let runner = JobRunner(store: store, queue: queue, backend: backend, logger: logger)
        runner.onStep = { job, image, step, steps in
            notifier.status("job \(job): image \(image + 1), step \(step)/\(steps)")
            notifier.watchdog()
        }
        runner.onStatus = { notifier.status($0) }
        notifier.ready(status: model.map { "idle; model \($0) loaded" } ?? "idle; recipes must name a model")
        let watcher = once ? nil : InboxWatcher(inbox: store.inbox)
        runner.poll = {
            guard let watcher else { return }
            if watcher.wait(timeout: 0) { queue.markChanged() }
        }
        logger.info("watching", metadata: ["inbox": "\(store.inbox.path)", "outbox": "\(store.outbox.path)",
                                          "inotify": "\(watcher != nil)", "isolation": "\(isolation.rawValue)"])
        var failures = 0, scans = queue.scans
        repeat {
            let outcomes = runner.drain(shouldStop: { stopRequested != 0 })
            failures += outcomes.filter { if case .failed = $0 { return true } else { return false } }.count
            if !outcomes.isEmpty { notifier.status("idle; \(failures) failed so far") }
            notifier.watchdog()
            if once {
                // Files still settling when the scan ran: wait for them, then drain again.
                if stopRequested == 0, !runner.scanner.scan(now: Date().addingTimeInterval(settle)).isEmpty {
                    Thread.sleep(forTimeInterval: settle)
                    queue.markChanged()
                    continue
                }
                break
            }
            // Sleep until inotify reports an addition, a settling file is due, or (at most a second)
            // the inbox needs watching again; the queue rescans when it is due.
            if stopRequested == 0 {
                if let watcher {
                    if watcher.needsRefresh || queue.scans != scans {
                        // A folder watched anew (a recreated inbox, a new batch) may already hold files.
                        if watcher.refresh(store.inbox) { queue.markChanged() }
                        scans = queue.scans
                    }
                    let timeout = min(1, max(0.05, queue.nextScanDue().timeIntervalSinceNow))
                    if watcher.wait(timeout: timeout) { queue.markChanged() }
                } else {
                    Thread.sleep(forTimeInterval: 1)
                    queue.markChanged()
                }
            }
        } while stopRequested == 0
        notifier.stopping()
        if let worker = backend as? WorkerProcess { worker.stop() }
        logger.info("stopped", metadata: ["failures": "\(failures)"])
        if once && failures > 0 { throw ExitCode(1) }
    }

    /// This program, to start workers from.
    static var executable: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    }
}

/// The folders and defaults `run` and its worker share.
struct ServiceFolders: ParsableArguments {
    @Option(help: "The folder users drop jobs into.")
    var inbox = "Inbox"

    @Option(help: "The folder results appear in.")
    var outbox = "Outbox"

    @Option(help: "The folder of checkpoints (.safetensors files and diffusers folders; symbolic links are followed).")
    var models = "Models"

    @Option(help: "The checkpoint recipes without a `model` use (default: the only one in --models).")
    var model: String?

    @Option(help: "The matrix products' precision for recipes that name none: fp32 (diffusers parity) or bf16 (oneDNN, about twice as fast; autocast's accuracy).")
    var precision = Precision.fp32

    var inboxURL: URL { URL(fileURLWithPath: inbox).standardizedFileURL }
    var outboxURL: URL { URL(fileURLWithPath: outbox).standardizedFileURL }
    var library: ModelLibrary { ModelLibrary(folder: URL(fileURLWithPath: models).standardizedFileURL, defaultName: model) }

    /// The same folders as arguments, absolute, for a worker.
    var arguments: [String] {
        ["--inbox", inboxURL.path, "--outbox", outboxURL.path, "--models", library.folder.path] + (model.map { ["--model", $0] } ?? [])
            + ["--precision", precision.rawValue]
    }
}

/// Set in the worker by SIGTERM/SIGINT while a job runs (it stops at the next step); when idle the
/// worker exits at once.
nonisolated(unsafe) var workerBusy: sig_atomic_t = 0

/// The worker process of `darkroom run` (not for direct use): it keeps the model loaded and computes
/// the jobs the service sends on stdin, answering with events on stdout (`WorkerMessage`).
struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The worker process `darkroom run` starts (internal).", shouldDisplay: false)

    @OptionGroup var folders: ServiceFolders

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "darkroom.worker")
        logger.logLevel = .info
        let handler: @convention(c) (Int32) -> Void = { _ in
            if workerBusy != 0 { stopRequested = 1 } else { _exit(0) }
        }
        signal(SIGTERM, handler)
        signal(SIGINT, handler)
        signal(SIGPIPE, SIG_IGN)
        // A service killed with SIGKILL cannot close our stdin before a long job ends: notice being
        // orphaned and stop at once, so a restarted service never shares a job with a stale worker.
        let parent = getppid()
        Thread.detachNewThread {
            while getppid() == parent { usleep(200_000) }
            _exit(0)
        }
        let store = JobStore(existingInbox: folders.inboxURL, outbox: folders.outboxURL)
        let executor = JobExecutor(library: folders.library, logger: logger)
        executor.defaultPrecision = folders.precision
        let output = FileHandle.standardOutput
        func send(_ message: WorkerMessage) { try? output.write(contentsOf: message.line()) }
        do {
            let model = try executor.preload()
            logger.info("worker \(getpid()) ready", metadata: ["model": "\(model ?? "(none)")"])
            send(WorkerMessage(event: "ready", model: model))
        } catch {
            send(WorkerMessage(event: "ready", error: "\(error)"))
        }
        while let line = readLine(strippingNewline: true) {
            guard let message = try? JSONDecoder().decode(WorkerMessage.self, from: Data(line.utf8)),
                  message.event == "run", let record = message.record else {
                logger.warning("unreadable request: \(line.prefix(200))")
                continue
            }
            logger.info("worker \(getpid()) computing", metadata: ["job.id": "\(record.id)", "job.image": "\(record.sources["image"] ?? "")"])
            workerBusy = 1
            let outcome = InProcessBackend(executor: executor, store: store).execute(record, progress: { image, step, steps in
                send(WorkerMessage(event: "step", job: record.id, image: image, step: step, steps: steps))
            }, shouldStop: { stopRequested != 0 })
            workerBusy = 0
            switch outcome {
            case .done(let mode): send(WorkerMessage(event: "done", job: record.id, mode: mode))
            case .failed(let failure): send(WorkerMessage(event: "failed", job: record.id, failure: failure))
            case .cancelled: send(WorkerMessage(event: "cancelled", job: record.id))
            case .retry(let reason): send(WorkerMessage(event: "retry", job: record.id, message: reason))
            case .crashed: break
            }
            if stopRequested != 0 { return }
        }
    }
}
