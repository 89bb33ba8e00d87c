#if canImport(Glibc)
import Glibc
#endif

/// Freed large tensor blocks, kept for the next allocation of a similar size.
///
/// Every op writes a fresh output, and at 512² a VAE activation is 128 MiB: allocated with `posix_memalign`
/// and freed at once, each one came back from the kernel as new pages to zero, which `perf` showed as 17–38 %
/// of a run (`clear_page_erms`). Reusing a block that is already resident skips that. The cache is bounded
/// (`limitBytes`, raised to `blocksPerLargest` times the largest block asked for since the last `releaseAll`): past
/// it, the oldest blocks go back to the system. A block serves requests from half its size up, so one large block
/// is not spent on a small tensor.
///
/// Fresh memory is dear on this project's machine kind (a VM: a page new to the guest faults in the host too).
/// With a flat 1 GiB, a 512 px VAE decode repeated in one process still took 0.75 GiB of fresh blocks per decode
/// (the 128–256 MiB activations of its last blocks pushed each other out), and a 1024 px SDXL decode 5.4 GiB; with
/// the limit at 8× the largest block (2 GiB and 8 GiB) they take none: alternating runs of `darkroom bench model
/// --precision bf16`, decode 4.29 and 4.56 s against 5.30 and 6.16 s (CPU 7.9–8.3 s against 9.6–11.1 s) at 512 px,
/// 16.4 s against 32.0 s at 1024 px (SDXL), with the same peak RSS at 512 px (3.62 GiB) and 0.75 GiB more at
/// 1024 px (12.06 GiB, the same from a 4 GiB limit up).
public final class LargeBlockCache: @unchecked Sendable {
    /// Blocks below this size go straight to `free` (malloc's own bins serve them well).
    static let minimumBytes = 4 << 20

    /// The bytes kept at least (default 1 GiB; 0 disables the cache). At 512 MiB the VAE's 128–256 MiB activations
    /// pushed each other out and a 512 px img2img job spent about 2 s more zeroing pages (51.4 vs 53.6 s) for
    /// 0.35 GiB less peak RSS (3.37 vs 3.72 GiB).
    public var limitBytes: Int {
        get { lock.withLock { limit } }
        set { lock.withLock { limit = max(0, newValue); trim() } }
    }

    /// Bytes currently cached.
    public var cachedBytes: Int { lock.withLock { total } }

    /// Bytes of large blocks asked for and not found here since the process started (each a fresh allocation whose
    /// pages the kernel zeroes on first touch): what the bench prints per stage.
    public var missedBytes: Int { lock.withLock { missed } }
    private var missed = 0

    /// How many blocks of the largest size asked for since the last `releaseAll` the cache may hold, when that is
    /// more than `limitBytes`.
    public var blocksPerLargest: Int {
        get { lock.withLock { perLargest } }
        set { lock.withLock { perLargest = max(0, newValue); trim() } }
    }
    private var perLargest = 8

    public static let shared = LargeBlockCache(limitBytes: 1 << 30)

    private var blocks: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []  // oldest first
    private var total = 0
    private var limit: Int
    private var largest = 0
    /// `limitBytes`, or more for large activations; nothing when `limitBytes` is 0.
    private var effectiveLimit: Int { limit == 0 ? 0 : max(limit, perLargest * largest) }
    private let lock = Mutex()

    init(limitBytes: Int) { limit = limitBytes }

    /// A cached block of at least `bytes` and at most twice that (the smallest such), or nil.
    func take(bytes: Int) -> UnsafeMutableRawPointer? {
        lock.withLock {
            largest = max(largest, bytes)
            var best: Int?
            for (i, block) in blocks.enumerated() where block.bytes >= bytes && block.bytes <= 2 * bytes {
                if best == nil || block.bytes < blocks[best!].bytes { best = i }
            }
            guard let best else {
                missed += bytes
                return nil
            }
            let block = blocks.remove(at: best)
            total -= block.bytes
            remember(block.pointer, bytes: block.bytes)
            return block.pointer
        }
    }

    func put(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        lock.withLock {
            let capacity = forget(pointer) ?? bytes
            blocks.append((pointer, capacity))
            total += capacity
            trim()
        }
    }

    /// Returns every cached block to the system (e.g. when a job ends and the service goes idle).
    public func releaseAll() {
        lock.withLock {
            let keep = limit
            limit = 0
            trim()
            limit = keep
            largest = 0
        }
    }

    private func trim() {
        while total > effectiveLimit, !blocks.isEmpty {
            let block = blocks.removeFirst()
            total -= block.bytes
            free(block.pointer)
        }
    }

    // A reused block may be larger than the tensor that now holds it; its real size is remembered here so that it
    // is cached again at that size.
    private var capacities: [UnsafeMutableRawPointer: Int] = [:]
    private func remember(_ pointer: UnsafeMutableRawPointer, bytes: Int) { capacities[pointer] = bytes }
    private func forget(_ pointer: UnsafeMutableRawPointer) -> Int? { capacities.removeValue(forKey: pointer) }
}

/// A pthread mutex (Synchronization's `Mutex` needs a newer deployment target on some toolchains).
final class Mutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
