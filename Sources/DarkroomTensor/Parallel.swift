import Dispatch
import Foundation

/// How non-BLAS loops spread over the machine's cores.
public enum Parallel {
    /// Worker count for element-wise and reduction loops (default: active processors).
    nonisolated(unsafe) public static var workers: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Calls `body(range)` for disjoint ranges covering `0..<count`, in parallel when the work is large
    /// enough to pay for the threads (`grain` = the smallest range worth a thread).
    @inlinable
    public static func forEachRange(_ count: Int, grain: Int = 16_384, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let pieces = min(workers, max(1, count / max(grain, 1)))
        if pieces <= 1 { body(0..<count); return }
        let step = (count + pieces - 1) / pieces
        // The pieces touch disjoint ranges of the caller's buffers; Dispatch only needs to be told.
        withoutActuallyEscaping(body) { body in
            let work = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: pieces) { piece in
                let start = piece * step
                let end = min(count, start + step)
                if start < end { work.value(start..<end) }
            }
        }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, `count` items spread over the workers.
    /// For items that are each substantial (a channel, a row of attention, a group).
    @inlinable
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        forEachRange(count, grain: 1) { range in for i in range { body(i) } }
    }
}

/// Carries a non-Sendable value (a closure over raw buffers) into `concurrentPerform`, whose pieces
/// write disjoint memory.
@usableFromInline
struct UncheckedSendable<Value>: @unchecked Sendable {
    @usableFromInline let value: Value
    @usableFromInline init(_ value: Value) { self.value = value }
}
