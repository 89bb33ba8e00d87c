import Foundation

/// The jobs waiting in the inbox, kept between scans so that the bookkeeping per job does not grow
/// with the inbox: a full scan lists every file once, and the jobs it found are then taken one by one
/// after a cheap check that their files are still there. Another full scan runs when the queue is
/// empty, when something was added (inotify) or a file found settling has settled, and at least every
/// `maximumAge` seconds (so anything missed is caught). Scans are spaced at least `scanSpacing` times
/// the last scan's duration apart, so a huge inbox spends a bounded share of the time scanning.
public final class InboxQueue {
    public let scanner: InboxScanner
    /// The last scan's jobs; those before `head` are taken.
    var pending: [JobSpec] = []
    var head = 0
    var pendingPerBatch: [String: Int] = [:]
    var lastScan: Date?
    public private(set) var lastScanDuration: TimeInterval = 0
    /// How long the first full scan took.
    public private(set) var firstScanDuration: TimeInterval = 0
    /// Something was added since the last scan (inotify), or events were lost.
    var changed = true
    /// When a file the last scan saw settling will have settled.
    var recheck: Date?
    public var maximumAge: TimeInterval = 30
    public var scanSpacing: Double = 10
    /// Full scans so far (for the benchmark and tests).
    public private(set) var scans = 0

    public init(scanner: InboxScanner) { self.scanner = scanner }

    /// Something may have been added to the inbox: scan again soon.
    public func markChanged() { changed = true }

    /// The next complete job, or nil when none is waiting now.
    public func next(now: Date = Date()) -> JobSpec? {
        if needsScan(now: now) { rescan(now: now) }
        while true {
            while head < pending.count {
                let spec = pending[head]
                head += 1
                if let batch = spec.batch { pendingPerBatch[batch, default: 1] -= 1 }
                if scanner.isStillComplete(spec, now: now) { return spec }
                changed = true                                     // moved, removed or rewritten: look again
            }
            // Out of jobs: one more scan may find what arrived meanwhile.
            guard needsScan(now: now, emptyQueue: true) else { return nil }
            rescan(now: now)
            if head >= pending.count { return nil }
        }
    }

    /// Whether jobs of `batch` found by the last scan are still waiting.
    public func hasPending(batch: String) -> Bool { (pendingPerBatch[batch] ?? 0) > 0 }

    /// When the queue next wants a scan even without events (a file settling, the periodic rescan).
    public func nextScanDue(now: Date = Date()) -> Date {
        let periodic = (lastScan ?? now).addingTimeInterval(maximumAge)
        return min(recheck ?? periodic, periodic)
    }

    func needsScan(now: Date, emptyQueue: Bool = false) -> Bool {
        guard let lastScan else { return true }
        let age = now.timeIntervalSince(lastScan)
        if age >= maximumAge { return true }
        let spaced = age >= lastScanDuration * scanSpacing
        if head >= pending.count || emptyQueue {
            // Nothing queued: scan when told of changes, or when a settling file is due.
            if changed || (recheck.map { now >= $0 } ?? false) { return spaced }
            return false
        }
        return (changed || (recheck.map { now >= $0 } ?? false)) && spaced
    }

    func rescan(now: Date) {
        let start = Date()
        let (jobs, recheck) = scanner.scanDetailed(now: now)
        lastScanDuration = Date().timeIntervalSince(start)
        if scans == 0 { firstScanDuration = lastScanDuration }
        lastScan = now
        scans += 1
        changed = false
        self.recheck = recheck
        pending = jobs
        head = 0
        pendingPerBatch = [:]
        for spec in jobs { if let batch = spec.batch { pendingPerBatch[batch, default: 0] += 1 } }
    }
}
