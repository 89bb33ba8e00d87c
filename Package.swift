// swift-tools-version:6.0
// Darkroom — a Stable Diffusion image-editing service (img2img, inpaint, restore) for Linux, on CPU.
// Layers, low to high (imports only go downwards): see README.md "Layout".
import Foundation
import PackageDescription

let package = Package(
    name: "Darkroom",
    products: [
        .executable(name: "darkroom", targets: ["darkroom"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // System libraries (Debian packages; see .ci/run).
        // OpenBLAS is loaded with dlopen (see OpenBLASLibrary.swift), so it is not linked: the kernel choice must be
        // made before its constructor runs.
        .systemLibrary(name: "COpenBLAS", providers: [.apt(["libopenblas-dev"])]),
        // oneDNN for bf16 matrix products (linked: Debian's libdnnl has no pkg-config file). See OneDNN.swift.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // libpng/libjpeg calls that can longjmp go through `static inline` helpers in each shim.h, which own the setjmp.
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        // zlib, only to gunzip the bundled CLIP merges (inflateInit2 is a macro: the loop is an inline helper in shim.h).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // Our own C: SIMD shims for instructions Swift cannot emit (AVX512_BF16 conversion), each with a Swift twin.
        .target(name: "CDarkroomSIMD"),

        // Tensor, shapes and BLAS-backed kernels: the only importer of COpenBLAS, CDNNL and CDarkroomSIMD.
        .target(name: "DarkroomTensor", dependencies: ["COpenBLAS", "CDNNL", "CDarkroomSIMD"], swiftSettings: numericSettings),

        // safetensors (mmap, validated), diffusers folders, LDM→diffusers key canonicalisation, model family.
        .target(name: "DarkroomWeights", dependencies: ["DarkroomTensor"], swiftSettings: numericSettings),

        // CLIP BPE tokenizer (bundled OpenAI/open_clip merges, MIT), A1111 prompt weighting and 75-token chunks.
        .target(name: "DarkroomTokenizer", dependencies: ["CZlib"], resources: [
            .copy("Resources/bpe_simple_vocab_16e6.txt.gz"),
            .copy("Resources/LICENSE-open_clip.txt"),
        ]),

        // CLIPTextModel, UNet2DConditionModel, AutoencoderKL and their blocks; *Config.detect(from:).
        .target(name: "DarkroomModels", dependencies: ["DarkroomTensor", "DarkroomWeights", "DarkroomTokenizer"],
                swiftSettings: numericSettings),

        // Samplers (one file per algorithm, matching diffusers) and torch-exact random numbers.
        // `-enable-testing`: its tests check internals (quadrature, noise schedules) in the optimised build.
        .target(name: "DarkroomSchedulers", dependencies: ["DarkroomTensor"],
                swiftSettings: [.unsafeFlags(["-enable-testing"])] + numericSettings),

        // img2img / inpaint / restore pipelines, image↔tensor conversion, masks.
        .target(name: "DarkroomPipeline", dependencies: ["DarkroomTensor", "DarkroomTokenizer", "DarkroomModels",
                                                         "DarkroomSchedulers", "DarkroomImageIO"],
                swiftSettings: numericSettings),

        // Recipes, inbox/outbox jobs, systemd notify, logging — no math here.
        .target(name: "DarkroomService", dependencies: ["DarkroomTensor", "DarkroomWeights", "DarkroomPipeline", "DarkroomSchedulers", "DarkroomModels",
                                                        "DarkroomImageIO", "DarkroomTokenizer",
                                                        .product(name: "Logging", package: "swift-log"),
                                                        .product(name: "Crypto", package: "swift-crypto")]),

        // PNG/JPEG decoding and encoding (EXIF orientation, text chunks, decompression-bomb limits).
        .target(name: "DarkroomImageIO", dependencies: ["CPNG", "CJPEG"], swiftSettings: numericSettings),

        // The executable.
        .executableTarget(name: "darkroom", dependencies: [
            "DarkroomTensor", "DarkroomWeights", "DarkroomTokenizer", "DarkroomModels", "DarkroomSchedulers", "DarkroomPipeline", "DarkroomService", "DarkroomImageIO",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Comparison helpers shared by the parity tests (a library only tests import).
        .target(name: "DarkroomTestSupport", dependencies: ["DarkroomTensor", "DarkroomWeights"], path: "Tests/DarkroomTestSupport"),
        .testTarget(name: "DarkroomTensorTests", dependencies: ["DarkroomTensor", "DarkroomWeights", "DarkroomTestSupport"]),
        .testTarget(name: "DarkroomWeightsTests", dependencies: ["DarkroomWeights"]),
        .testTarget(name: "DarkroomTokenizerTests", dependencies: ["DarkroomTokenizer"]),
        .testTarget(name: "DarkroomModelsTests", dependencies: ["DarkroomModels", "DarkroomWeights", "DarkroomTensor", "DarkroomTokenizer",
                                                                "DarkroomTestSupport"]),
        .testTarget(name: "DarkroomSchedulersTests", dependencies: ["DarkroomSchedulers"]),
        .testTarget(name: "DarkroomPipelineTests", dependencies: ["DarkroomPipeline", "DarkroomModels", "DarkroomTokenizer",
                                                                  "DarkroomWeights", "DarkroomImageIO", "DarkroomTensor",
                                                                  "DarkroomTestSupport"]),
        .testTarget(name: "DarkroomServiceTests", dependencies: ["DarkroomService", "DarkroomPipeline", "DarkroomModels", .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto"),
                                                                 "DarkroomTokenizer", "DarkroomWeights", "DarkroomImageIO"]),
        .testTarget(name: "DarkroomImageIOTests", dependencies: ["DarkroomImageIO"]),
    ]
)

/// The vector code (SIMD16 loops: softmax, Winograd transforms, GroupNorm, fp16 expansion) is compiled for the CPU
/// that builds it (`-target-cpu native`: AVX-512 or AVX2 with FMA where present), as a service built from source
/// runs where it is built. `DARKROOM_TARGET_CPU=x86-64` (or another LLVM CPU name) builds for another machine.
var numericSettings: [SwiftSetting] {
    let cpu = ProcessInfo.processInfo.environment["DARKROOM_TARGET_CPU"] ?? "native"
    return [.unsafeFlags(["-target-cpu", cpu])]
}

// Fuzzing (tools/fuzz): libFuzzer executables, declared only when DARKROOM_FUZZ is set, so the normal build,
// `swift test` and CI never see them. tools/fuzz builds them with --sanitize fuzzer,address in .build-fuzz.
if ProcessInfo.processInfo.environment["DARKROOM_FUZZ"] != nil {
    let fuzzSettings: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
    package.targets += [
        .executableTarget(name: "FuzzCheckpoint", dependencies: ["DarkroomWeights", "DarkroomModels"],
                          path: "Fuzz/FuzzCheckpoint", swiftSettings: fuzzSettings),
        .executableTarget(name: "FuzzKeyMap", dependencies: ["DarkroomWeights"], path: "Fuzz/FuzzKeyMap", swiftSettings: fuzzSettings),
        .executableTarget(name: "FuzzRecipe", dependencies: ["DarkroomService"], path: "Fuzz/FuzzRecipe", swiftSettings: fuzzSettings),
        .executableTarget(name: "FuzzPrompt", dependencies: ["DarkroomTokenizer"], path: "Fuzz/FuzzPrompt", swiftSettings: fuzzSettings),
        .executableTarget(name: "FuzzImage", dependencies: ["DarkroomImageIO"], path: "Fuzz/FuzzImage", swiftSettings: fuzzSettings),
    ]
}
