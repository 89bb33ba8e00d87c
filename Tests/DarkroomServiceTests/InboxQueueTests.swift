import DarkroomService
import Foundation
import Logging
import XCTest

/// The queue kept between scans (issue 11, bulk scale): one listing serves many jobs, so the
/// bookkeeping per job does not grow with the inbox; additions are picked up after `markChanged`;
/// jobs whose files went away are dropped when taken.
final class InboxQueueTests: XCTestCase {
    var inbox: URL!

    override func setUpWithError() throws {
        inbox = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-queue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: inbox.appendingPathComponent("album"), withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: inbox) }

    func touch(_ name: String, _ text: String = "x") throws {
        let url = inbox.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func testOneListingServesAWholeBatch() throws {
        try touch("album/recipe.json", "{}")
        for i in 0..<300 { try touch(String(format: "album/p%03d.png", i)) }
        let queue = InboxQueue(scanner: InboxScanner(inbox: inbox, settle: 0))
        var taken: [String] = []
        while let spec = queue.next() {
            taken.append(spec.image)
            try FileManager.default.removeItem(at: inbox.appendingPathComponent(spec.image))     // as a claim moves it
        }
        XCTAssertEqual(taken.count, 300)
        XCTAssertEqual(Set(taken).count, 300)
        XCTAssertEqual(queue.scans, 1, "the claims' own removals cause no listing")
        XCTAssertFalse(queue.hasPending(batch: "album"))
    }

    func testAdditionsAfterMarkChangedAndVanishedJobsDropped() throws {
        try touch("a.png"); try touch("a.json", "{}"); try touch("b.png"); try touch("b.json", "{}")
        let queue = InboxQueue(scanner: InboxScanner(inbox: inbox, settle: 0))
        queue.scanSpacing = 0
        let first = try XCTUnwrap(queue.next())
        try FileManager.default.removeItem(at: inbox.appendingPathComponent(first.image))
        // The other job vanishes before it is taken: it is dropped, not claimed.
        let other = first.image == "a.png" ? "b.png" : "a.png"
        try FileManager.default.removeItem(at: inbox.appendingPathComponent(other))
        XCTAssertNil(queue.next())
        try touch("c.png"); try touch("c.json", "{}")
        queue.markChanged()
        XCTAssertEqual(queue.next()?.image, "c.png")
    }

    func testAmbiguousImagesAndARecipeFolderBecomeJobsThatFail() throws {
        try touch("twin.png"); try touch("twin.jpg"); try touch("twin.json", "{}")
        try touch("folder.png")
        try FileManager.default.createDirectory(at: inbox.appendingPathComponent("folder.json"), withIntermediateDirectories: true)
        let jobs = InboxScanner(inbox: inbox, settle: 0).scan()
        let twin = try XCTUnwrap(jobs.first { $0.stem == "twin" })
        XCTAssertEqual(twin.image, "twin.jpg")
        XCTAssertEqual(twin.conflicts, ["twin.png"])
        XCTAssertEqual(jobs.filter { $0.stem == "twin" }.count, 1, "one job for both, so both fail together")
        XCTAssertEqual(jobs.first { $0.stem == "folder" }?.recipe, "folder.json", "a folder named like the recipe still makes a job")
        XCTAssertFalse(jobs.contains { $0.batch == "folder.json" }, "and is no batch folder")
    }
}

/// Symbolic links the administrator places in the models folder are followed (links to A1111 or
/// ComfyUI checkpoint folders); recipes still cannot name a path.
final class ModelLibraryTests: XCTestCase {
    func testLinksAreFollowedAndPathsRefused() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-models-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let elsewhere = root.appendingPathComponent("a1111/models/Stable-diffusion")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: elsewhere.appendingPathComponent("dreamy.safetensors"))
        let models = root.appendingPathComponent("Models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: models.appendingPathComponent("dreamy.safetensors"),
                                                   withDestinationURL: elsewhere.appendingPathComponent("dreamy.safetensors"))
        let library = ModelLibrary(folder: models)
        XCTAssertEqual(library.available, ["dreamy.safetensors"])
        XCTAssertEqual(try library.resolve("dreamy").lastPathComponent, "dreamy.safetensors")
        XCTAssertEqual(try library.resolve(nil).lastPathComponent, "dreamy.safetensors")
        XCTAssertThrowsError(try library.resolve("../a1111/models/Stable-diffusion/dreamy")) { error in
            XCTAssertEqual((error as? JobFailure)?.field, "model")
        }
    }
}
