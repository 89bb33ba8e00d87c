import ArgumentParser
import DarkroomService
import Dispatch
import DarkroomTensor
import Foundation
import Logging

/// Set by SIGTERM/SIGINT; polled between jobs and steps.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch an inbox and write results to an outbox (see README: Inbox).")

    @Option(help: "The folder users drop jobs into.")
    var inbox = "Inbox"

    @Option(help: "The folder results appear in.")
    var outbox = "Outbox"

    @Option(help: "The folder of checkpoints (.safetensors files and diffusers folders).")
    var models = "Models"

    @Option(help: "The checkpoint recipes without a `model` use (default: the only one in --models).")
    var model: String?

    @Flag(help: "Process what is in the inbox, then exit (status 1 if any job failed).")
    var once = false

    @Option(help: "Seconds a file must stay unchanged before it counts as complete.")
    var settle: Double = 2

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "darkroom")
        logger.logLevel = .info
        signal(SIGTERM) { _ in stopRequested = 1 }
        signal(SIGINT) { _ in stopRequested = 1 }
        let store = try JobStore(inbox: URL(fileURLWithPath: inbox), outbox: URL(fileURLWithPath: outbox))
        let runner = JobRunner(store: store, scanner: InboxScanner(inbox: store.inbox, settle: settle),
                               library: ModelLibrary(folder: URL(fileURLWithPath: models), defaultName: model), logger: logger)
        let notifier = SystemdNotifier()
        if let warning = BLAS.slowerThanAvailable { logger.warning("\(warning)") }
        logger.info("OpenBLAS \(BLAS.coreName) kernels, \(BLAS.threadCount) threads")
        runner.onStep = { job, image, step, steps in
            notifier.status("job \(job): image \(image + 1), step \(step)/\(steps)")
            notifier.watchdog()
        }
        let model = try runner.preload()
        notifier.ready(status: model.map { "idle; model \($0) loaded" } ?? "idle; recipes must name a model")
        let watcher = once ? nil : InboxWatcher(inbox: store.inbox)
        logger.info("watching", metadata: ["inbox": "\(store.inbox.path)", "outbox": "\(store.outbox.path)",
                                          "inotify": "\(watcher != nil)"])
        var failures = 0
        repeat {
            let outcomes = runner.drain(shouldStop: { stopRequested != 0 })
            failures += outcomes.filter { if case .failed = $0 { return true } else { return false } }.count
            if !outcomes.isEmpty { notifier.status("idle; \(failures) failed so far") }
            notifier.watchdog()
            if once {
                // Files still settling when the scan ran: wait for them, then drain again.
                if stopRequested == 0, !runner.scanner.scan(now: Date().addingTimeInterval(settle)).isEmpty {
                    Thread.sleep(forTimeInterval: settle)
                    continue
                }
                break
            }
            // Sleep until inotify reports a change (or at most a second: files still settling need a
            // look again once their settle time has passed, and a full rescan catches anything missed).
            if stopRequested == 0 {
                if let watcher {
                    watcher.refresh(store.inbox)
                    _ = watcher.wait(timeout: 1)
                } else {
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        } while stopRequested == 0
        notifier.stopping()
        logger.info("stopped", metadata: ["failures": "\(failures)"])
        if failures > 0 { throw ExitCode(1) }
    }
}
