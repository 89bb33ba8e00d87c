import COpenBLAS

/// OpenBLAS settings and the single-precision GEMM every matrix kernel goes through.
public enum BLAS {
    /// Opens OpenBLAS (choosing its kernels first), or throws a clear error when it is missing. Entry points call
    /// this before any kernel; it runs once.
    public static func load() throws {
        if case .failure(let error) = OpenBLASLibrary.loaded { throw error }
    }

    /// Threads OpenBLAS uses inside one GEMM.
    public static var threadCount: Int {
        get { Int(OpenBLASLibrary.shared.getThreads()) }
        set { OpenBLASLibrary.shared.setThreads(Int32(max(1, newValue))) }
    }

    /// Runs `body` with OpenBLAS limited to `count` threads (e.g. 1, while Darkroom's own workers each run their
    /// own GEMMs), then restores the previous count.
    public static func withThreadCount<R>(_ count: Int, _ body: () throws -> R) rethrows -> R {
        let previous = threadCount
        if previous == count { return try body() }
        threadCount = count
        defer { threadCount = previous }
        return try body()
    }

    /// The CPU kernel OpenBLAS selected at run time (e.g. "Cooperlake", "SkylakeX", "Haswell").
    public static var coreName: String { OpenBLASLibrary.shared.coreName().map { String(cString: $0) } ?? "unknown" }

    /// OpenBLAS's build configuration string, and the kernel set Darkroom asked for when it overrode the detection.
    public static var configuration: String {
        let config = OpenBLASLibrary.shared.config().map { String(cString: $0) } ?? "unknown"
        return OpenBLASLibrary.shared.chosenCoreType.map { config + ", OPENBLAS_CORETYPE=\($0) chosen by Darkroom" } ?? config
    }

    /// A warning when OpenBLAS runs an older kernel set than this CPU supports (an exported `OPENBLAS_CORETYPE`),
    /// else nil.
    public static var slowerThanAvailable: String? {
        guard let preferred = OpenBLASLibrary.shared.preferredCoreType,
              coreName.lowercased() != preferred.lowercased(),
              !(preferred == "SKYLAKEX" && coreName == "Cooperlake") else { return nil }
        return "OpenBLAS runs its \(coreName) kernels (OPENBLAS_CORETYPE is set in the environment), but this CPU runs "
            + "its \(preferred == "COOPERLAKE" ? "Cooperlake" : "SkylakeX") kernels, about twice as fast for Stable Diffusion; "
            + "unset OPENBLAS_CORETYPE or set DARKROOM_BLAS_CORE=auto"
    }

    /// The OPENBLAS_CORETYPE Darkroom asks for on the CPU that `cpuinfo` (the text of /proc/cpuinfo) describes.
    public static func preferredCoreType(cpuinfo: String) -> String? { OpenBLASLibrary.preferredCoreType(cpuinfo: cpuinfo) }

    /// Whether bf16 GEMM (`cblas_sbgemm`) runs on native AVX512-BF16 kernels here.
    public static var hasNativeBF16: Bool {
        OpenBLASLibrary.shared.sbgemm != nil && ["Cooperlake", "SapphireRapids"].contains(coreName)
    }

    /// C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C, row-major, with leading dimensions.
    @inlinable
    public static func sgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        callSGEMM(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// C[m×n] = alpha · op(A) · op(B) + beta · C with bfloat16 A and B (raw bits) and Float32 C, row-major
    /// (OpenBLAS `cblas_sbgemm`; native on AVX512-BF16 kernels, see `hasNativeBF16`). Accumulates in Float32.
    public static func sbgemm(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<UInt16>, lda: Int,
        b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard let sbgemm = OpenBLASLibrary.shared.sbgemm else { preconditionFailure("this OpenBLAS has no cblas_sbgemm") }
        flopLock.withLock { flops += 2 * Double(m) * Double(n) * Double(k) }
        sbgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
               Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Floating-point operations (2·m·n·k per GEMM) run since the process started: what `darkroom bench` divides
    /// by the time to report achieved GFLOP/s.
    public static var flopCount: Double { flopLock.withLock { flops } }
    nonisolated(unsafe) private static var flops = 0.0
    /// Adds a product's FLOPs to `flopCount` (oneDNN's products count here too).
    static func countFlops(_ count: Double) { flopLock.withLock { flops += count } }
    private static let flopLock = Mutex()

    @usableFromInline
    static func callSGEMM(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        flopLock.withLock { flops += 2 * Double(m) * Double(n) * Double(k) }
        OpenBLASLibrary.shared.sgemm(
            CblasRowMajor,
            transposeA ? CblasTrans : CblasNoTrans,
            transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }
}
