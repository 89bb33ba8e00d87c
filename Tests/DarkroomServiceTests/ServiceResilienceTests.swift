import DarkroomImageIO
import DarkroomService
import Foundation
import XCTest

/// The real `darkroom run` (built beside this test bundle) with its worker process, fed what breaks
/// services: inputs that used to trap, a worker killed mid-job, a full outbox, an inbox deleted while
/// running. Each bad job ends in `Failed/` with a clear `error.json`, nothing stays claimed, the good
/// jobs beside them are served, and the service never exits on its own.
final class ServiceResilienceTests: XCTestCase {
    var root: URL!
    var inbox: URL { root.appendingPathComponent("Inbox") }
    var outbox: URL { root.appendingPathComponent("Outbox") }
    var models: URL { root.appendingPathComponent("Models") }
    var log: URL { root.appendingPathComponent("service.log") }
    let fixtures = JobParityTests.fixtures
    var service: Foundation.Process?

    override func setUpWithError() throws {
        try DaemonProcessTests.requireBinary()
        root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-resilience-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1/diffusers"), to: models.appendingPathComponent("sd1"))
    }

    override func tearDownWithError() throws {
        if let service, service.isRunning { service.terminate(); service.waitUntilExit() }
        if let root {
            _ = shell("umount \(outbox.path) 2>/dev/null")
            try? FileManager.default.removeItem(at: root)
        }
    }

    // MARK: helpers

    func put(_ name: String, _ text: String) throws {
        let url = inbox.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    func putImage(_ name: String, from fixture: String = "photo.png") throws {
        let url = inbox.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("pipelines/inputs/\(fixture)"), to: url)
    }

    func start(_ extra: [String] = [], once: Bool = false) throws -> Foundation.Process {
        let process = Foundation.Process()
        process.executableURL = DaemonProcessTests.binary
        process.arguments = ["run", "--inbox", inbox.path, "--outbox", outbox.path, "--models", models.path, "--settle", "0"]
            + (once ? ["--once"] : []) + extra
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_CACHE_HOME"] = root.appendingPathComponent("cache").path
        process.environment = environment
        try process.run()
        if !once { service = process }
        return process
    }

    /// Polls `condition` every 50 ms for up to `seconds`.
    func eventually(_ seconds: TimeInterval = 30, _ what: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return }
            usleep(50_000)
        }
        XCTFail("timed out waiting for: \(what)\n\((try? String(contentsOf: log, encoding: .utf8))?.suffix(3000) ?? "")")
    }

    func names(_ url: URL) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted() }
    func claimed() -> [String] { names(inbox.appendingPathComponent(".darkroom/work")).filter { !$0.hasPrefix(".") } }
    func failures() -> [String: [String: Any]] {
        var result: [String: [String: Any]] = [:]
        for folder in names(inbox.appendingPathComponent("Failed")) {
            guard let data = try? Data(contentsOf: inbox.appendingPathComponent("Failed/\(folder)/error.json")),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
            // The job id is <time>-<stem>-<8 hex>.
            let stem = folder.split(separator: "-").dropFirst().dropLast().joined(separator: "-")
            result[stem] = json
        }
        return result
    }

    /// The worker processes of `pid` (its children).
    func children(of pid: Int32) -> [Int32] {
        let tasks = names(URL(fileURLWithPath: "/proc/\(pid)/task"))
        return tasks.flatMap { task -> [Int32] in
            let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
            return text.split(separator: " ").compactMap { Int32($0) }
        }
    }

    @discardableResult
    func shell(_ command: String) -> Int32 {
        let process = Foundation.Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    // MARK: tests

    /// Inputs that trapped (issue 11), each beside a good job in one inbox: every bad one ends in
    /// `Failed/` naming its problem, the good one is delivered, nothing stays claimed.
    func testBadInputsFailClearlyAndTheGoodJobIsServed() throws {
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1_inpaint/diffusers"),
                                         to: models.appendingPathComponent("inpaint9"))
        try putImage("good.png"); try put("good.json", #"{"mode": "img2img", "steps": 2, "seed": 1, "model": "sd1"}"#)
        // Steps beyond the schedule (index out of range in DDIM, NaN in DPM++ 2M before).
        try putImage("steps.png"); try put("steps.json", #"{"mode": "img2img", "steps": 1000, "strength": 1, "sampler": "ddim", "model": "sd1"}"#)
        // A mask that names the job's own image.
        try putImage("self.png"); try put("self.json", #"{"mode": "inpaint", "mask": "self.png", "model": "sd1"}"#)
        // A batch recipe naming itself as the mask.
        try putImage("album/a.png"); try put("album/recipe.json", #"{"mode": "inpaint", "mask": "recipe.json", "model": "sd1"}"#)
        // Two images for one recipe.
        try putImage("twin.png"); try putImage("twin.jpg", from: "photo.png"); try put("twin.json", #"{"mode": "img2img", "model": "sd1"}"#)
        // A folder where the recipe should be.
        try putImage("folder.png"); try FileManager.default.createDirectory(at: inbox.appendingPathComponent("folder.json"), withIntermediateDirectories: true)
        // A prompt with control characters.
        try putImage("control.png"); try put("control.json", #"{"mode": "img2img", "prompt": "a cat\u0007", "model": "sd1"}"#)
        // A model whose head count is zero.
        try FileManager.default.copyItem(at: models.appendingPathComponent("sd1"), to: models.appendingPathComponent("zeroheads"))
        let config = models.appendingPathComponent("zeroheads/unet/config.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any])
        json["attention_head_dim"] = 0
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        try putImage("heads.png"); try put("heads.json", #"{"mode": "img2img", "steps": 2, "model": "zeroheads"}"#)
        // img2img on a 9-channel inpainting checkpoint: runs, as A1111 does.
        try putImage("nine.png"); try put("nine.json", #"{"mode": "img2img", "steps": 2, "seed": 3, "model": "inpaint9"}"#)

        let process = try start(once: true)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, "--once exits 1 when a job failed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: outbox.appendingPathComponent("good.png").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: outbox.appendingPathComponent("good.json").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: outbox.appendingPathComponent("nine.png").path), "img2img on a 9-channel model")
        let failed = failures()
        XCTAssertEqual(failed["steps"]?["field"] as? String, "steps")
        XCTAssertEqual(failed["self"]?["field"] as? String, "mask")
        XCTAssert((failed["self"]?["message"] as? String ?? "").contains("own image"))
        XCTAssertEqual(failed["a"]?["field"] as? String, "mask")
        XCTAssertEqual(failed["twin"]?["code"] as? String, "ambiguous")
        XCTAssert((failed["twin"]?["message"] as? String ?? "").contains("'twin.jpg'"))
        XCTAssert((failed["folder"]?["message"] as? String ?? "").contains("is a folder"))
        XCTAssertEqual(failed["control"]?["field"] as? String, "prompt")
        XCTAssertEqual(failed["heads"]?["code"] as? String, "model")
        XCTAssertEqual(claimed(), [], "nothing stays claimed")
        XCTAssertEqual(names(inbox).filter { !$0.hasPrefix(".") && $0 != "Processed" && $0 != "Failed" }, [], "every input was taken")
        // Inputs come back whole.
        let twin = try XCTUnwrap(names(inbox.appendingPathComponent("Failed")).first { $0.contains("-twin-") })
        XCTAssertEqual(Set(names(inbox.appendingPathComponent("Failed/\(twin)")).filter { $0.hasPrefix("image-") || $0.hasPrefix("conflict") || $0.hasPrefix("recipe-") }),
                       ["image-twin.jpg", "conflict1-twin.png", "recipe-twin.json"])
    }

    /// A worker killed with SIGSEGV mid-job, twice: the service lives, the job fails as
    /// `worker_crashed` with the signal and the worker's last log lines, and the next job is served.
    func testWorkerKilledTwiceFailsTheJobAndTheServiceGoesOn() throws {
        try putImage("long.png"); try put("long.json", #"{"mode": "img2img", "steps": 999, "strength": 1, "sampler": "euler", "seed": 5}"#)
        let process = try start()
        var killed: [Int32] = []
        eventually(60, "the job running") { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("job started") }
        for round in 1...2 {
            var worker: Int32 = 0
            eventually(60, "a worker running the job (round \(round))") {
                worker = children(of: process.processIdentifier).first { !killed.contains($0) } ?? 0
                return worker != 0 && claimed().count == 1
            }
            usleep(500_000)
            XCTAssertEqual(kill(worker, SIGSEGV), 0)
            killed.append(worker)
        }
        eventually(60, "the job failed as worker_crashed") { failures()["long"] != nil }
        let failure = try XCTUnwrap(failures()["long"])
        XCTAssertEqual(failure["code"] as? String, "worker_crashed")
        XCTAssertEqual(failure["signal"] as? String, "SIGSEGV")
        XCTAssertFalse((failure["log"] as? [String] ?? []).isEmpty, "the worker's last log lines")
        XCTAssertTrue(process.isRunning, "the service lives")
        try putImage("next.png"); try put("next.json", #"{"mode": "img2img", "steps": 2, "seed": 6}"#)
        eventually(60, "the next job served") { FileManager.default.fileExists(atPath: outbox.appendingPathComponent("next.json").path) }
        XCTAssertTrue(process.isRunning)
        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "SIGTERM stops the service cleanly")
    }

    /// SIGTERM stops the job in progress at its next step: it stays claimed, and the next start
    /// finishes it.
    func testSigtermLeavesTheJobClaimedAndTheNextStartFinishesIt() throws {
        try putImage("long.png"); try put("long.json", #"{"mode": "img2img", "steps": 400, "strength": 1, "sampler": "euler", "seed": 5}"#)
        let process = try start()
        eventually(60, "the job running") { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("job started") }
        usleep(300_000)
        process.terminate()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(claimed().count, 1, "the job stays claimed")
        XCTAssertEqual(names(outbox), [], "nothing half delivered")
        let again = try start(once: true)
        again.waitUntilExit()
        XCTAssertEqual(again.terminationStatus, 0)
        XCTAssertEqual(names(outbox), ["long.json", "long.png"])
        XCTAssertEqual(claimed(), [])
    }

    /// The outbox on a full file system (a small tmpfs): the job waits, claimed, with nothing
    /// half delivered; once space is freed it completes.
    func testFullOutboxWaitsAndDeliversWhenSpaceReturns() throws {
        try FileManager.default.createDirectory(at: outbox, withIntermediateDirectories: true)
        guard shell("mount -t tmpfs -o size=128k tmpfs \(outbox.path)") == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI runs as root and must be able to mount a tmpfs") }
            throw XCTSkip("mounting a tmpfs needs root")
        }
        XCTAssertEqual(shell("dd if=/dev/zero of=\(outbox.path)/filler bs=4k count=1000"), 1, "the outbox is full")
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 8, "count": 2}"#)
        let process = try start()
        eventually(60, "the job waiting for space") { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("retrying in") }
        XCTAssertEqual(names(outbox).filter { !$0.hasPrefix(".") }, ["filler"], "nothing half delivered")
        XCTAssertEqual(claimed().count, 1, "the job stays claimed")
        XCTAssertEqual(failures().count, 0, "not failed for good")
        try FileManager.default.removeItem(at: outbox.appendingPathComponent("filler"))
        eventually(60, "delivery once space returned") { names(inbox.appendingPathComponent("Processed")).count == 1 }
        XCTAssertEqual(names(outbox).filter { !$0.hasPrefix(".") }, ["photo-2.png", "photo.json", "photo.png"])
        for name in ["photo.png", "photo-2.png"] {
            XCTAssertNoThrow(try ImageDecoder.decode(fileAt: outbox.appendingPathComponent(name)), "\(name) is whole")
        }
        XCTAssertTrue(process.isRunning)
    }

    /// The inbox deleted and recreated while the service runs: the next job is served once and
    /// moved to `Processed/`, never run again and again.
    func testDeletedAndRecreatedInboxIsServedOnce() throws {
        let process = try start()
        eventually(30, "the service watching") { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("watching") }
        try FileManager.default.removeItem(at: inbox)
        usleep(300_000)
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 2}"#)
        eventually(60, "the job done") { names(inbox.appendingPathComponent("Processed")).count == 1 }
        sleep(3)
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        XCTAssertEqual(text.components(separatedBy: "job started").count - 1, 1, "run once")
        XCTAssertEqual(names(outbox), ["photo.json", "photo.png"])
        XCTAssertTrue(process.isRunning)
    }

    /// A claimed job whose record is unreadable, beside a claimed job interrupted by a crash: the
    /// broken one goes to `Failed/`, the other is finished; recovery never stops at the first.
    func testOneBrokenClaimNeverStopsTheRecoveryOfTheOthers() throws {
        let work = inbox.appendingPathComponent(".darkroom/work")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("20260101T000000-broken-00000000"), withIntermediateDirectories: true)
        try Data("{ not json".utf8).write(to: work.appendingPathComponent("20260101T000000-broken-00000000/job.json"))
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 2}"#)
        let store = try JobStore(inbox: inbox, outbox: outbox)
        let spec = try XCTUnwrap(InboxScanner(inbox: inbox, settle: 0).scan().first)
        _ = try store.claim(spec, count: 1, seed: 2)
        let process = try start(once: true)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(names(outbox), ["photo.json", "photo.png"])
        XCTAssertEqual(names(inbox.appendingPathComponent("Failed")), ["20260101T000000-broken-00000000"])
        XCTAssertEqual(claimed(), [])
    }
}
