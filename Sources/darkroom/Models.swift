import ArgumentParser
import DarkroomService
import Foundation

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the checkpoints folder.", subcommands: [Pull.self, List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Known checkpoints and what is in --models.")
        @Option(help: "The folder of checkpoints.") var models = "Models"
        func run() {
            print("known (darkroom models pull NAME):")
            for known in KnownCheckpoint.all {
                print("  \(known.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(known.file)\(known.sha256 == nil ? "  (no published SHA-256 pinned)" : "")")
            }
            print("in \(models):")
            for name in ModelLibrary(folder: URL(fileURLWithPath: models)).available { print("  \(name)") }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a known checkpoint (or --url) into --models, resumably, checking its SHA-256.")
        @Argument(help: "A known name (see `darkroom models list`), or the file name to save --url as.") var name: String
        @Option(help: "The folder of checkpoints.") var models = "Models"
        @Option(help: "Download this URL instead of a known checkpoint.") var url: String?
        @Option(help: "The SHA-256 the file must have (overrides the known one).") var sha256: String?

        func run() throws {
            let known = KnownCheckpoint.all.first { $0.name == name }
            guard let source = url ?? known?.url else {
                throw ValidationError("'\(name)' is not a known checkpoint (\(KnownCheckpoint.all.map(\.name).joined(separator: ", "))); give --url.")
            }
            let folder = URL(fileURLWithPath: models)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let destination = folder.appendingPathComponent(known?.file ?? name)
            let expected = sha256 ?? known?.sha256
            var last = Date.distantPast
            let digest = try ModelDownloader().pull(url: URL(string: source) ?? folder, to: destination, sha256: expected,
                                                    size: url == nil ? known?.size : nil) { written, total in
                guard Date().timeIntervalSince(last) > 0.5 else { return }
                last = Date()
                let percent = total.map { String(format: " (%.1f%%)", Double(written) / Double(max($0, 1)) * 100) } ?? ""
                FileHandle.standardError.write(Data("\r\(written / 1_048_576) MiB\(percent)   ".utf8))
            }
            FileHandle.standardError.write(Data("\n".utf8))
            print("\(destination.path)\nSHA-256 \(digest)\(expected == nil ? " (not pinned: compare it with the publisher's)" : " (verified)")")
        }
    }
}
