// swift-tools-version:6.0
// Darkroom — a Stable Diffusion image-editing service (img2img, inpaint, restore) for Linux, on CPU.
// Layers, low to high (imports only go downwards): see README.md "Layout".
import PackageDescription

let package = Package(
    name: "Darkroom",
    products: [
        .executable(name: "darkroom", targets: ["darkroom"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // System libraries (Debian packages; see .ci/run).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),

        // Tensor, shapes and BLAS-backed kernels: the only importer of COpenBLAS.
        .target(name: "DarkroomTensor", dependencies: ["COpenBLAS"]),

        // The executable.
        .executableTarget(name: "darkroom", dependencies: [
            "DarkroomTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "DarkroomTensorTests", dependencies: ["DarkroomTensor"]),
    ]
)
