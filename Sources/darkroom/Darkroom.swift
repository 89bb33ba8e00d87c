import ArgumentParser

@main
struct Darkroom: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "darkroom",
        abstract: "Stable Diffusion image editing (img2img, inpaint, restore) from a watched folder, on CPU.",
        subcommands: [Run.self, Process.self, Validate.self, Models.self, Inspect.self, Bench.self])
}
