import DarkroomTensor
import XCTest

/// The kernel set Darkroom asks OpenBLAS 0.3.21 for, which misdetects AMD's AVX-512 CPUs as Haswell.
final class OpenBLASCoreTests: XCTestCase {
    private func cpuinfo(vendor: String, flags: [String]) -> String {
        // Two logical CPUs, as /proc/cpuinfo lists them.
        let one = "processor\t: 0\nvendor_id\t: \(vendor)\ncpu family\t: 25\nflags\t\t: \(flags.joined(separator: " "))\n\n"
        return one + one.replacingOccurrences(of: "processor\t: 0", with: "processor\t: 1")
    }

    private let avx2 = ["fpu", "sse2", "avx", "avx2", "fma"]
    private let avx512 = ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512_vnni"]

    func testAMDWithAVX512AndBF16GetsCooperlake() {
        XCTAssertEqual(BLAS.preferredCoreType(cpuinfo: cpuinfo(vendor: "AuthenticAMD", flags: avx2 + avx512 + ["avx512_bf16"])),
                       "COOPERLAKE")
    }

    func testAMDWithAVX512WithoutBF16GetsSkylakeX() {
        XCTAssertEqual(BLAS.preferredCoreType(cpuinfo: cpuinfo(vendor: "AuthenticAMD", flags: avx2 + avx512)), "SKYLAKEX")
    }

    func testOpenBLASDecidesElsewhere() {
        // Zen 3 (AVX2 only), Intel with AVX-512 (0.3.21 detects it), a partial AVX-512 set, and no cpuinfo at all.
        XCTAssertNil(BLAS.preferredCoreType(cpuinfo: cpuinfo(vendor: "AuthenticAMD", flags: avx2)))
        XCTAssertNil(BLAS.preferredCoreType(cpuinfo: cpuinfo(vendor: "GenuineIntel", flags: avx2 + avx512 + ["avx512_bf16"])))
        XCTAssertNil(BLAS.preferredCoreType(cpuinfo: cpuinfo(vendor: "AuthenticAMD", flags: avx2 + ["avx512f", "avx512bw"])))
        XCTAssertNil(BLAS.preferredCoreType(cpuinfo: ""))
    }

    func testLibraryLoadsAndReportsItsKernels() {
        XCTAssertFalse(BLAS.coreName.isEmpty)
        XCTAssertNotEqual(BLAS.coreName, "unknown")
        XCTAssertTrue(BLAS.configuration.contains("OpenBLAS"), BLAS.configuration)
    }
}
