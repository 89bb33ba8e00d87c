import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One line of the protocol between the service and its worker process: JSON, one object per line,
/// on the worker's stdin (requests) and stdout (events). The worker logs on stderr, which the service
/// passes on to its own and keeps the last lines of, for the report of a crash.
///
/// - service → worker: `{"event": "run", "record": {…}}`
/// - worker → service: `{"event": "ready", "model": …}` once, after the default model is loaded
///   (`error` when it could not be); then per job `step` events and one of `done` (`mode`), `failed`
///   (`failure`), `cancelled` or `retry` (`message`).
public struct WorkerMessage: Codable, Sendable, Equatable {
    public var event: String
    public var record: JobRecord?
    public var model: String?
    public var error: String?
    public var job: String?
    public var image: Int?
    public var step: Int?
    public var steps: Int?
    public var mode: String?
    public var failure: JobFailure?
    public var message: String?

    public init(event: String, record: JobRecord? = nil, model: String? = nil, error: String? = nil, job: String? = nil,
                image: Int? = nil, step: Int? = nil, steps: Int? = nil, mode: String? = nil, failure: JobFailure? = nil,
                message: String? = nil) {
        (self.event, self.record, self.model, self.error, self.job) = (event, record, model, error, job)
        (self.image, self.step, self.steps, self.mode, self.failure, self.message) = (image, step, steps, mode, failure, message)
    }

    public func line() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(self)) ?? Data(#"{"event":"invalid"}"#.utf8)) + Data([0x0A])
    }
}

/// The service's side of a worker process (`darkroom worker`): starts it, sends it jobs, reads its
/// events, and notices its death. A trap, a signal or the OOM killer ends the worker, never the
/// service: the job it was running gets `.crashed`, and the next job starts a new worker. The worker
/// keeps the model loaded between jobs. It exits when the service does (its stdin closes).
public final class WorkerProcess: JobBackend {
    let executable: URL
    let arguments: [String]
    let logger: Logger
    var process: Foundation.Process?
    var input: FileHandle?
    var outputFD: Int32 = -1
    var buffer = Data()
    let recent = RecentLines(capacity: 40)
    /// The `ready` event of the current worker.
    public private(set) var readyMessage: WorkerMessage?
    /// Workers started so far.
    public private(set) var starts = 0
    /// Whether the worker's log lines go on to this process's stderr (they are kept either way).
    public var forwardsLog = true

    /// `arguments` follow the executable (`["worker", "--models", …]`).
    public init(executable: URL, arguments: [String], logger: Logger) {
        self.executable = executable
        self.arguments = arguments
        self.logger = logger
    }

    deinit { stop() }

    /// Starts a worker if none runs and waits for its `ready` event (the default model loaded).
    /// Returns nil when it is ready, or how it died.
    @discardableResult
    public func start(shouldStop: () -> Bool = { false }) -> WorkerCrash? {
        if let process, process.isRunning, readyMessage != nil { return nil }
        stop()
        let process = Foundation.Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = nil                       // only the service talks to systemd
        // Swift's backtracer catches SIGSEGV and, for one sent by another process, lets the worker go on;
        // without it a fatal signal ends the worker at once. Runtime errors ("Fatal error: Index out of
        // range" with file and line) are still printed, and end up in the crash report's log lines.
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        do { try process.run() } catch {
            return WorkerCrash(signal: "not started", log: ["cannot start \(executable.path): \(error)"])
        }
        starts += 1
        self.process = process
        input = stdin.fileHandleForWriting
        outputFD = stdout.fileHandleForReading.fileDescriptor
        buffer = Data()
        readyMessage = nil
        // The worker's log: passed on line by line, the last lines kept.
        let recent = self.recent
        recent.clear()
        let errorHandle = stderr.fileHandleForReading
        let forwardsLog = self.forwardsLog
        Thread.detachNewThread {
            var pending = Data()
            while true {
                let chunk = errorHandle.availableData
                if chunk.isEmpty { break }
                if forwardsLog { FileHandle.standardError.write(chunk) }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    recent.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending.removeSubrange(pending.startIndex...newline)
                }
            }
            if !pending.isEmpty { recent.append(String(decoding: pending, as: UTF8.self)) }
        }
        var stopSent = false
        while true {
            let event = readEvent(shouldStop: shouldStop, onStop: {
                if !stopSent { kill(process.processIdentifier, SIGTERM); stopSent = true }
            })
            switch event {
            case .message(let message) where message.event == "ready":
                readyMessage = message
                if let error = message.error { logger.error("the default model could not be loaded: \(error)") }
                return nil
            case .message:
                continue
            case .died(let crash):
                return crash
            case .stopped:
                return WorkerCrash(signal: "stopped", log: [])
            }
        }
    }

    /// Ends the worker (it gets SIGTERM by closing its input and SIGKILL if it lingers).
    public func stop() {
        guard let process else { return }
        try? input?.close()
        input = nil
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        self.process = nil
        readyMessage = nil
    }

    public func execute(_ record: JobRecord, progress: @escaping (Int, Int, Int) -> Void, shouldStop: @escaping () -> Bool) -> ExecutionOutcome {
        if let crash = start(shouldStop: shouldStop) {
            if shouldStop() { return .cancelled }
            return .crashed(crash)
        }
        guard let input else { return .crashed(WorkerCrash(signal: "no input", log: recent.lines)) }
        do { try input.write(contentsOf: WorkerMessage(event: "run", record: record).line()) } catch {
            return .crashed(waitForDeath())
        }
        var stopSent = false
        while true {
            let event = readEvent(shouldStop: shouldStop, onStop: { [process] in
                // Stop at the next step, as SIGTERM does in the worker itself (systemd sends it to both).
                if !stopSent, let pid = process?.processIdentifier { kill(pid, SIGTERM); stopSent = true }
            })
            switch event {
            case .message(let message):
                switch message.event {
                case "step":
                    progress(message.image ?? 0, message.step ?? 0, message.steps ?? 0)
                case "done":
                    return .done(mode: message.mode ?? "")
                case "failed":
                    return .failed(message.failure ?? JobFailure(code: "pipeline", message: "The worker reported a failure without details.", file: nil, field: nil))
                case "cancelled":
                    // A worker that was told to stop exits after answering; the next job starts a new one.
                    stop()
                    return .cancelled
                case "retry":
                    return .retry(message.message ?? "a write failed")
                default:
                    continue
                }
            case .died(let crash):
                return stopSent ? .cancelled : .crashed(crash)
            case .stopped:
                return .cancelled
            }
        }
    }

    enum Event { case message(WorkerMessage), died(WorkerCrash), stopped }

    /// The next event line from the worker; `onStop` is called (once per second at most) while
    /// `shouldStop()` holds. Reads with poll() so that a stop request is noticed while waiting.
    func readEvent(shouldStop: () -> Bool, onStop: () -> Void) -> Event {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<newline]
                buffer.removeSubrange(buffer.startIndex...newline)
                if let message = try? JSONDecoder().decode(WorkerMessage.self, from: Data(line)) { return .message(message) }
                logger.warning("unreadable line from the worker: \(String(decoding: line.prefix(200), as: UTF8.self))")
                continue
            }
            if shouldStop() { onStop() }
            var descriptor = pollfd(fd: outputFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 1000)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let n = read(outputFD, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .died(waitForDeath()) }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Waits for the worker to exit after its output closed; how it ended, with its last log lines.
    func waitForDeath() -> WorkerCrash {
        guard let process else { return WorkerCrash(signal: "unknown", log: recent.lines) }
        try? input?.close()
        input = nil
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        usleep(50_000)                                            // the stderr reader's last lines
        let status = process.terminationStatus
        let signal = process.terminationReason == .uncaughtSignal ? Self.signalName(status) : "exit status \(status)"
        self.process = nil
        readyMessage = nil
        return WorkerCrash(signal: signal, log: recent.lines)
    }

    static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGILL: "SIGILL", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE",
                                      SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGTRAP: "SIGTRAP", SIGINT: "SIGINT", SIGPIPE: "SIGPIPE"]
        return names[number] ?? "signal \(number)"
    }
}

/// The last lines of a log, kept by one thread and read by another.
final class RecentLines: @unchecked Sendable {
    let capacity: Int
    let lock = NSLock()
    var storage: [String] = []

    init(capacity: Int) { self.capacity = capacity }

    func append(_ line: String) {
        lock.withLock {
            storage.append(line)
            if storage.count > capacity { storage.removeFirst(storage.count - capacity) }
        }
    }

    func clear() { lock.withLock { storage.removeAll() } }
    var lines: [String] { lock.withLock { storage } }
}
