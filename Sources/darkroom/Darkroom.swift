import ArgumentParser
import DarkroomService
import DarkroomTensor
import DarkroomWeights
import Foundation

@main
struct Darkroom: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "darkroom",
        abstract: "Stable Diffusion image editing (img2img, inpaint, restore) from a watched folder, on CPU.",
        subcommands: [Run.self, Process.self, Validate.self, Models.self, Inspect.self, Bench.self, Worker.self])

    /// OpenBLAS is opened first, so that a machine without it gets a message rather than a crash mid-job.
    static func main() async {
        do { try BLAS.load() } catch {
            FileHandle.standardError.write(Data("darkroom: \(error)\n".utf8))
            Foundation.exit(1)
        }
        // Tensors found free of NaN/inf are remembered per file, so a warm load skips the scan (`ScanRecord`).
        SafetensorsFile.scanRecordFolder = ModelHash.defaultCacheFolder()?.appendingPathComponent("scanned")
        // bf16 packed weights are kept between processes too (`PackedWeightStore`), up to DARKROOM_PACKED_CACHE_GB
        // (default 16; 0: none kept).
        let packedLimit = ProcessInfo.processInfo.environment["DARKROOM_PACKED_CACHE_GB"].flatMap(Double.init) ?? 16
        if packedLimit.isFinite, packedLimit > 0 {
            PackedWeightStore.folder = ModelHash.defaultCacheFolder()?.appendingPathComponent("packed")
            PackedWeightStore.limitBytes = Int(min(packedLimit, 1_000_000) * 1_073_741_824)
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }
}
