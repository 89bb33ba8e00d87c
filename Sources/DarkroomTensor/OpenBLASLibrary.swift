import COpenBLAS
import Foundation

/// OpenBLAS, loaded at first use with `dlopen` rather than linked.
///
/// OpenBLAS built with DYNAMIC_ARCH picks its kernels in a library constructor, from CPUID. Debian's 0.3.21 does
/// not know AMD Zen 4/5: it falls back to its Haswell (AVX2) kernels, which run SD's GEMMs at half the speed of its
/// SkylakeX/Cooperlake (AVX-512) kernels on the same CPU (measured: 207 vs 434 GFLOP/s on a 320×4096×2880 sgemm,
/// 2 threads). The kernel set can only be chosen through `OPENBLAS_CORETYPE` before that constructor runs, so the
/// library is opened here, after `preferredCoreType` has set it.
///
/// Precedence: `DARKROOM_BLAS_CORE` (`auto`: Darkroom's choice; `openblas`: OpenBLAS's detection; or a kernel name),
/// then an exported `OPENBLAS_CORETYPE` (the user's choice, honoured, with a warning from `BLAS.slowerThanAvailable`
/// when it is slower than what this CPU runs), then Darkroom's choice.
struct OpenBLASLibrary: @unchecked Sendable {
    typealias SGEMM = @convention(c) (
        CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, Int32, Int32, Int32,
        Float, UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
        Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias SBGEMM = @convention(c) (
        CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, Int32, Int32, Int32,
        Float, UnsafePointer<UInt16>?, Int32, UnsafePointer<UInt16>?, Int32,
        Float, UnsafeMutablePointer<Float>?, Int32) -> Void

    let sgemm: SGEMM
    /// bf16 × bf16 → fp32 GEMM (OpenBLAS ≥ 0.3.10); nil when the library lacks it.
    let sbgemm: SBGEMM?
    let setThreads: @convention(c) (Int32) -> Void
    let getThreads: @convention(c) () -> Int32
    let coreName: @convention(c) () -> UnsafeMutablePointer<CChar>?
    let config: @convention(c) () -> UnsafeMutablePointer<CChar>?
    /// The `OPENBLAS_CORETYPE` Darkroom chose, or nil when OpenBLAS's own detection (or the user's) was used.
    let chosenCoreType: String?
    /// The kernel set this CPU would get from Darkroom's own choice (nil: OpenBLAS's detection is right).
    let preferredCoreType: String?

    /// The library, or why it could not be opened (checked once, up front, by `BLAS.load()`).
    static let loaded: Result<OpenBLASLibrary, BLASLoadError> = {
        do throws(BLASLoadError) { return .success(try load()) } catch { return .failure(error) }
    }()

    /// The opened library. Entry points call `BLAS.load()` first and report its error; reaching here without the
    /// library is a programming error.
    static var shared: OpenBLASLibrary {
        switch loaded {
        case .success(let library): return library
        case .failure(let error): preconditionFailure(error.description)
        }
    }

    static func load() throws(BLASLoadError) -> OpenBLASLibrary {
        var chosen: String?
        let preferred = preferredCoreType(cpuinfo: readCPUInfo())
        switch getenv("DARKROOM_BLAS_CORE").map({ String(cString: $0) }) {
        case "openblas"?:
            unsetenv("OPENBLAS_CORETYPE")  // OpenBLAS's own CPUID detection
        case let name? where name != "auto" && !name.isEmpty:
            setenv("OPENBLAS_CORETYPE", name, 1)
            chosen = name
        case let value?:  // "auto" (or empty): Darkroom's choice, whatever OPENBLAS_CORETYPE says
            _ = value
            if let preferred { setenv("OPENBLAS_CORETYPE", preferred, 1); chosen = preferred }
        case nil:  // an exported OPENBLAS_CORETYPE is the user's choice
            if getenv("OPENBLAS_CORETYPE") == nil, let preferred {
                setenv("OPENBLAS_CORETYPE", preferred, 1)
                chosen = preferred
            }
        }
        // OpenBLAS's idle threads spin (sched_yield) for 2^28 cycles after each GEMM by default, competing for the
        // cores with Darkroom's own parallel loops (softmax, GroupNorm, im2col) that run between GEMMs: 10 % of a
        // UNet step went to `__schedule`. 2^10 cycles puts them to sleep almost at once: a guided SD 1.5 step went
        // from 6.2 s to 5.2 s (2 cores). An exported OPENBLAS_THREAD_TIMEOUT is kept.
        if getenv("OPENBLAS_THREAD_TIMEOUT") == nil { setenv("OPENBLAS_THREAD_TIMEOUT", "10", 1) }
        var handle: UnsafeMutableRawPointer?
        var errors: [String] = []
        for name in ["libopenblas.so.0", "libopenblas.so"] {
            handle = dlopen(name, RTLD_NOW | RTLD_LOCAL)
            if handle != nil { break }
            errors.append(dlerror().map { String(cString: $0) } ?? name)
        }
        guard let handle else { throw BLASLoadError(detail: errors.joined(separator: "; ")) }
        func symbol<T>(_ name: String, as type: T.Type) -> T? {
            dlsym(handle, name).map { unsafeBitCast($0, to: type) }
        }
        func required<T>(_ name: String, as type: T.Type) throws(BLASLoadError) -> T {
            guard let function = symbol(name, as: type) else { throw BLASLoadError(detail: "the library lacks \(name)") }
            return function
        }
        return OpenBLASLibrary(
            sgemm: try required("cblas_sgemm", as: SGEMM.self),
            sbgemm: symbol("cblas_sbgemm", as: SBGEMM.self),
            setThreads: try required("openblas_set_num_threads", as: (@convention(c) (Int32) -> Void).self),
            getThreads: try required("openblas_get_num_threads", as: (@convention(c) () -> Int32).self),
            coreName: try required("openblas_get_corename", as: (@convention(c) () -> UnsafeMutablePointer<CChar>?).self),
            config: try required("openblas_get_config", as: (@convention(c) () -> UnsafeMutablePointer<CChar>?).self),
            chosenCoreType: chosen, preferredCoreType: preferred)
    }

    /// `/proc/cpuinfo` (procfs reports size 0, so it is read in chunks to the end).
    static func readCPUInfo() -> String {
        guard let file = fopen("/proc/cpuinfo", "r") else { return "" }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The kernel set to ask OpenBLAS for, from `/proc/cpuinfo`, or nil to let OpenBLAS decide.
    ///
    /// Only AMD CPUs with AVX-512 (Zen 4 and later) are overridden: OpenBLAS 0.3.21 detects Intel's AVX-512 parts
    /// itself. Cooperlake is SkylakeX plus the AVX512-BF16 kernels (`cblas_sbgemm`), so it is asked for when the
    /// CPU has BF16; both need AVX512 F/BW/VL/DQ.
    static func preferredCoreType(cpuinfo: String) -> String? {
        guard let vendorLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("vendor_id") }),
              vendorLine.contains("AuthenticAMD"),
              let flagsLine = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return nil }
        let flags = Set(flagsLine.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "\t" }).map(String.init))
        guard ["avx512f", "avx512bw", "avx512vl", "avx512dq"].allSatisfy(flags.contains) else { return nil }
        return flags.contains("avx512_bf16") ? "COOPERLAKE" : "SKYLAKEX"
    }
}

/// OpenBLAS could not be opened or lacks a function Darkroom needs.
public struct BLASLoadError: Error, CustomStringConvertible {
    public let detail: String
    public var description: String {
        "Darkroom needs OpenBLAS (Debian: apt-get install libopenblas0-pthread, or run tools/setup): \(detail)"
    }
}
