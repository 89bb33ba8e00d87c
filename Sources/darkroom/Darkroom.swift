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
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }
}
