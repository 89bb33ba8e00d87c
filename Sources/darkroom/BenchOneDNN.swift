import ArgumentParser
import DarkroomTensor
import Foundation

extension Precision: ExpressibleByArgument {}

extension Bench {
    /// `DARKROOM_BENCH_OPENMP_THREADS=N`: oneDNN's products split by OpenMP into N threads instead of over
    /// Darkroom's workers (`OneDNN.openMPThreads`), to compare the two at the level of a whole UNet step.
    static func applyOpenMPThreadsOverride() {
        if let value = ProcessInfo.processInfo.environment["DARKROOM_BENCH_OPENMP_THREADS"], let threads = Int(value), threads > 0 {
            OneDNN.openMPThreads = threads
            print("oneDNN: \(threads) OpenMP threads per product (DARKROOM_BENCH_OPENMP_THREADS)")
        }
    }
}

extension Bench.Kernels {
    /// OpenBLAS's sgemm against oneDNN's f32 and bf16 matmul (bf16 operands, Float32 accumulation and output) on
    /// SD 1.5's UNet shapes (M×K×N), with the sgemm peak of this machine. Weights are packed once, outside the
    /// timing; attention's operands are both activations, converted on every call. "split": oneDNN single-threaded,
    /// the product split over Darkroom's workers (what the kernels do); "omp N": OpenMP threads inside oneDNN.
    func oneDNNKernels() {
        print("oneDNN \(OneDNN.version); M x K x N")
        let peak = Bench.sgemmPeak
        let cases: [(String, Int, Int, Int, Bool)] = [
            ("conv 3x3 320 ch as GEMM", 4096, 2880, 320, true),
            ("GEGLU proj_out 320 ch", 4096, 320, 2560, true),
            ("conv 3x3 640 ch as GEMM", 1024, 5760, 640, true),
            ("attention Q.K^T, 1 head of 40", 4096, 40, 4096, false),
            ("attention P.V, 1 head of 40", 4096, 4096, 40, false),
        ]
        let saved = OneDNN.openMPThreads
        defer { OneDNN.openMPThreads = saved }
        for (name, m, k, n, isWeight) in cases {
            let flops = 2.0 * Double(m) * Double(k) * Double(n)
            let a = Tensor(shape: [m, k], repeating: 0.01)
            let bTensor = Tensor(shape: [k, n], repeating: 0.02)
            let weight = Weight(bTensor)
            var row = "\(m)x\(k)x\(n) \(name):".padding(toLength: 44, withPad: " ", startingAt: 0)
            row += rate("sgemm", flops) { _ = a.matmul(bTensor) }
            for (type, threads) in [(OneDNN.DataType.f32, 1), (.bf16, 1), (.bf16, threadsForOpenMP)] {
                OneDNN.openMPThreads = threads
                let label = "\(type.rawValue) \(threads == 1 ? "split" : "omp \(threads)")"
                row += rate(label, flops) {
                    _ = isWeight ? try? OneDNN.matmul(a, weight, type: type) : try? OneDNN.matmul(a, bTensor, type: type)
                }
            }
            OneDNN.openMPThreads = saved
            if isWeight {  // a fresh weight: conversion, packing and (first shape only) JIT, then the product
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try? OneDNN.matmul(a, Weight(bTensor), type: .bf16)
                row += String(format: "  first bf16 call %.3f s", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            print(row)
        }
        if let f32 = try? OneDNN.implementation(m: 4096, n: 320, k: 2880, type: .f32),
           let bf16 = try? OneDNN.implementation(m: 4096, n: 320, k: 2880, type: .bf16) {
            print("oneDNN implementations: f32 \(f32), bf16 \(bf16)")
        }
        print(String(format: "sgemm peak (OpenBLAS, 2048-3072 square): %.1f GFLOP/s", peak))   // also in the header
        for reason in Precision.fallbackReasons { print("oneDNN error: \(reason)") }
    }

    private var threadsForOpenMP: Int { max(2, threads) }

    private func best(_ body: () -> Void) -> Double? {
        body()  // warm-up: primitive creation and weight packing
        return Bench.bestSeconds(repeats: repeats, body)
    }

    private func rate(_ label: String, _ flops: Double, _ body: () -> Void) -> String {
        let seconds = best(body) ?? .infinity
        return String(format: "  %@ %6.1f", label, flops / seconds / 1e9)
    }
}
