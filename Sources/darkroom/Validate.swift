import ArgumentParser
import DarkroomService
import Foundation

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check recipes without running them: every problem, each naming its field (exit 1 if any).")

    @Argument(help: "Recipe files (JSON).")
    var recipes: [String]

    func run() throws {
        var bad = 0
        for path in recipes {
            do {
                let recipe = try JobExecutor.readRecipe(URL(fileURLWithPath: path), name: path)
                print("\(path): valid (\(recipe.configuration.mode.rawValue))")
            } catch {
                bad += 1
                print("\(error)")
            }
        }
        if bad > 0 { throw ExitCode(1) }
    }
}
