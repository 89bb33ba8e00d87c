import Foundation
import XCTest
import DarkroomService

/// Replays Tests/Fixtures/fuzz/recipe/ (inputs found by `tools/fuzz recipe`, minimised) through `Recipe.parse`:
/// each must end in a `RecipeError` or a recipe, never a trap.
final class FuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/recipe")

    func testFuzzRecipesThrowOrParse() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.folder, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
        for url in files {
            do { _ = try Recipe.parse(try Data(contentsOf: url), file: url.lastPathComponent) } catch is RecipeError {}
        }
    }
}
