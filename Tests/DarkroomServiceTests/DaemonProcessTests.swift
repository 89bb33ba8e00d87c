import DarkroomImageIO
import DarkroomService
import Foundation
import XCTest

/// The real `darkroom run` process (built beside this test bundle), killed with SIGKILL at arbitrary
/// moments, restarted, and finally drained: every job is delivered exactly once, every result is a
/// whole PNG, no input is lost. Also 200 jobs dropped at once.
final class DaemonProcessTests: XCTestCase {
    var root: URL!
    var inbox: URL { root.appendingPathComponent("Inbox") }
    var outbox: URL { root.appendingPathComponent("Outbox") }
    let fixtures = JobParityTests.fixtures

    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("darkroom")
    }

    /// The release binary must be there: in CI its absence is a failure, never a skip.
    static func requireBinary() throws {
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            if ProcessInfo.processInfo.environment["CI"] != nil {
                XCTFail("darkroom is not built beside the tests (\(binary.path))")
                throw XCTSkip("no binary")
            }
            throw XCTSkip("darkroom not built beside the tests")
        }
    }

    override func setUpWithError() throws {
        try Self.requireBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("Models"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1/diffusers"),
                                         to: root.appendingPathComponent("Models/sd1"))
    }

    override func tearDownWithError() throws { if let root { try? FileManager.default.removeItem(at: root) } }

    func drop(_ name: String, recipe: String) throws {
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("pipelines/inputs/photo.png"),
                                         to: inbox.appendingPathComponent("\(name).png"))
        try Data(recipe.utf8).write(to: inbox.appendingPathComponent("\(name).json"))
    }

    func start(once: Bool = false) throws -> Foundation.Process {
        let process = Foundation.Process()
        process.executableURL = Self.binary
        process.arguments = ["run", "--inbox", inbox.path, "--outbox", outbox.path,
                             "--models", root.appendingPathComponent("Models").path, "--settle", "0"] + (once ? ["--once"] : [])
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return process
    }

    func testKillNineAtArbitraryMomentsDeliversEveryJobExactlyOnce() throws {
        let jobs = 8
        for i in 0..<jobs { try drop("photo\(i)", recipe: #"{"mode": "img2img", "steps": 4, "seed": \#(i * 10), "count": 2}"#) }
        var generator = SplitMix(seed: 2026)
        var interrupted = 0                                  // kills that left a job claimed, mid-run
        let work = inbox.appendingPathComponent(".darkroom/work")
        func claimed() -> Int { ((try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []).filter { !$0.hasPrefix(".") }.count }
        for round in 0..<12 {
            let process = try start()
            // Even rounds: any moment from start-up on. Odd rounds: once a job is claimed (however long start-up
            // takes on a loaded machine), a random moment into it, so some kills always land mid-job.
            if round % 2 == 1 {
                let deadline = Date().addingTimeInterval(10)
                while claimed() == 0 && Date() < deadline && process.isRunning { usleep(5_000) }
            }
            usleep(UInt32(20_000 + generator.next() % 250_000))
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            interrupted += claimed()
        }
        XCTAssertGreaterThan(interrupted, 0, "the kills hit running jobs")
        let last = try start(once: true)
        last.waitUntilExit()
        XCTAssertEqual(last.terminationStatus, 0)

        var expected = Set<String>()
        for i in 0..<jobs { expected.formUnion(["photo\(i).png", "photo\(i)-2.png", "photo\(i).json"]) }
        let delivered = Set(try FileManager.default.contentsOfDirectory(atPath: outbox.path))
        XCTAssertEqual(delivered, expected, "exactly the planned results: no duplicates, no leftovers")
        for name in expected where name.hasSuffix(".png") {
            XCTAssertNoThrow(try ImageDecoder.decode(fileAt: outbox.appendingPathComponent(name)), "\(name) is a whole PNG")
        }
        let processed = try FileManager.default.contentsOfDirectory(atPath: inbox.appendingPathComponent("Processed").path)
        XCTAssertEqual(processed.count, jobs)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: inbox.appendingPathComponent("Failed").path), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: inbox.path).filter { $0.hasSuffix(".png") }, [])
        // Workers of killed services notice they are orphaned and exit: none is left computing.
        let deadline = Date().addingTimeInterval(5)
        while !workers(of: inbox).isEmpty && Date() < deadline { usleep(50_000) }
        XCTAssertEqual(workers(of: inbox), [], "no orphaned worker")
    }

    /// Processes whose command line is a worker for `inbox`.
    func workers(of inbox: URL) -> [String] {
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { Int($0) != nil }
        return pids.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return arguments.contains("worker") && arguments.contains(inbox.path)
        }
    }

    func testTwoHundredJobsDroppedAtOnce() throws {
        for i in 0..<200 { try drop("p\(i)", recipe: #"{"mode": "img2img", "steps": 1, "strength": 1, "seed": \#(i)}"#) }
        let process = try start(once: true)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let delivered = try FileManager.default.contentsOfDirectory(atPath: outbox.path).filter { $0.hasSuffix(".png") }
        XCTAssertEqual(delivered.count, 200)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: inbox.appendingPathComponent("Processed").path).count, 200)
    }
}

/// A small deterministic generator for the kill timings.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt32 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt32(truncatingIfNeeded: z ^ (z >> 31))
    }
}

/// `darkroom process` and `darkroom validate`, the real binary: the same executor as the service, so
/// the same report and naming; clear refusals before any compute.
final class CommandLineTests: XCTestCase {
    var root: URL!
    let fixtures = JobParityTests.fixtures

    override func setUpWithError() throws {
        try DaemonProcessTests.requireBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { if let root { try? FileManager.default.removeItem(at: root) } }

    func darkroom(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Foundation.Process()
        process.executableURL = DaemonProcessTests.binary
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testProcessWritesTheReportAndDefectMaskAsTheServiceDoes() throws {
        let recipe = root.appendingPathComponent("restore.json")
        try Data(#"{"mode": "restore", "steps": 4, "seed": 3, "repair_defects": true, "count": 2}"#.utf8).write(to: recipe)
        let image = fixtures.appendingPathComponent("pipelines/inputs/photo.png").path
        let model = fixtures.appendingPathComponent("models/sd1/diffusers").path
        let out = root.appendingPathComponent("out/old.png").path
        // Refused before any compute: a folder that does not exist, a JPEG name, a folder as recipe.
        let missing = try darkroom(["process", image, "--recipe", recipe.path, "--model", model, "--output", out])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssert(missing.output.contains("does not exist"), missing.output)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("out"), withIntermediateDirectories: true)
        let jpeg = try darkroom(["process", image, "--recipe", recipe.path, "--model", model, "--output", root.appendingPathComponent("out/old.jpg").path])
        XCTAssertNotEqual(jpeg.status, 0)
        XCTAssert(jpeg.output.contains(".png"), jpeg.output)
        let folder = try darkroom(["process", image, "--recipe", root.appendingPathComponent("out").path, "--model", model, "--output", out])
        XCTAssertNotEqual(folder.status, 0)
        XCTAssert(folder.output.contains("is a folder"), folder.output)

        let run = try darkroom(["process", image, "--recipe", recipe.path, "--model", model, "--output", out])
        XCTAssertEqual(run.status, 0, run.output)
        let names = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("out").path).sorted()
        XCTAssertEqual(names, ["old-2.png", "old.defects.png", "old.json", "old.png"])
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("out/old.json"))) as? [String: Any])
        XCTAssertEqual(report["seeds"] as? [String], ["3", "4"])
        XCTAssertEqual(report["defects"] as? String, "old.defects.png")
        // Run again: nothing is overwritten.
        let again = try darkroom(["process", image, "--recipe", recipe.path, "--model", model, "--output", out])
        XCTAssertNotEqual(again.status, 0)
        XCTAssert(again.output.contains("never overwrites"), again.output)
    }

    func testValidateNamesTheFieldAndRefusesFolders() throws {
        let recipe = root.appendingPathComponent("r.json")
        try Data(#"{"mode": "img2img", "prompt": "a\u0007"}"#.utf8).write(to: recipe)
        let bad = try darkroom(["validate", recipe.path, root.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssert(bad.output.contains("prompt: contains the control character U+0007"), bad.output)
        XCTAssert(bad.output.contains("is a folder"), bad.output)
        XCTAssertFalse(bad.output.contains("NSCocoaErrorDomain"), bad.output)
    }
}
