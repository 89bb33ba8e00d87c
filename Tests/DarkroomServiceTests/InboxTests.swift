import DarkroomImageIO
import DarkroomPipeline
import DarkroomService
import Foundation
import Logging
import XCTest

/// The inbox → outbox path on a temporary folder with the sd1 fixture model (Tests/Fixtures/models):
/// conventions, failures with error.json, exactly-once delivery across interruption, no overwrites.
final class InboxTests: XCTestCase {
    var root: URL!
    var inbox: URL { root.appendingPathComponent("Inbox") }
    var outbox: URL { root.appendingPathComponent("Outbox") }
    let fixtures = JobParityTests.fixtures

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("darkroom-inbox-\(UUID().uuidString)")
        let models = root.appendingPathComponent("Models")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("models/sd1/diffusers"), to: models.appendingPathComponent("sd1"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func runner() throws -> JobRunner {
        JobRunner(store: try JobStore(inbox: inbox, outbox: outbox), scanner: InboxScanner(inbox: inbox, settle: 0),
                  library: ModelLibrary(folder: root.appendingPathComponent("Models")), logger: Logger(label: "test"))
    }

    func put(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: inbox.appendingPathComponent(name)) }
    func putImage(_ name: String, from fixture: String = "photo.png") throws {
        let target = inbox.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("pipelines/inputs/\(fixture)"), to: target)
    }
    func exists(_ url: URL) -> Bool { FileManager.default.fileExists(atPath: url.path) }
    func failure(_ stem: String) throws -> [String: Any] {
        let folder = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: inbox.appendingPathComponent("Failed").path)
            .first { $0.contains("-\(stem)-") }, "no failed job for \(stem)")
        let data = try Data(contentsOf: inbox.appendingPathComponent("Failed/\(folder)/error.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testPairsBatchesAndHostileInputs() throws {
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 1, "count": 2}"#)
        try putImage("album/a.png"); try putImage("album/b b é.png", from: "photo_ns.png")
        try put("album/recipe.json", #"{"mode": "img2img", "steps": 2}"#)
        try put("notimage.jpg", "plain text"); try put("notimage.json", #"{"mode": "img2img"}"#)
        try putImage("typo.png"); try put("typo.json", #"{"mode": "img2img", "strenght": 0.5}"#)
        try putImage("nomask.png"); try put("nomask.json", #"{"mode": "inpaint"}"#)
        try putImage("escape.png"); try put("escape.json", #"{"mode": "inpaint", "mask": "../../etc/passwd"}"#)
        try putImage("size.png"); try putImage("size.mask.png", from: "mask_ns.png"); try put("size.json", #"{"mode": "inpaint", "steps": 2}"#)
        try putImage("model.png"); try put("model.json", #"{"mode": "img2img", "model": "../Models/sd1"}"#)
        try put("waiting.json", #"{"mode": "img2img"}"#)   // its image has not arrived: not a job yet

        let outcomes = try runner().drain()
        XCTAssertEqual(outcomes.count, 9)
        for name in ["photo.png", "photo-2.png", "photo.json", "album/a.png", "album/b b é.png", "album/b b é.json"] {
            XCTAssertTrue(exists(outbox.appendingPathComponent(name)), name)
        }
        XCTAssertEqual(try failure("notimage")["code"] as? String, "image")
        XCTAssertEqual(try failure("notimage")["file"] as? String, "notimage.jpg")
        XCTAssertEqual(try failure("typo")["field"] as? String, "strenght")
        XCTAssertEqual(try failure("nomask")["code"] as? String, "mask")
        XCTAssertEqual(try failure("escape")["field"] as? String, "mask")
        XCTAssert((try failure("size")["message"] as? String ?? "").contains("Mask 'size.mask.png' is 64×48"))
        XCTAssertEqual(try failure("size")["file"] as? String, "size.mask.png")
        XCTAssertEqual(try failure("model")["field"] as? String, "model")
        XCTAssertTrue(exists(inbox.appendingPathComponent("waiting.json")), "a recipe without its image waits")
        // Every input is kept: processed or failed, never deleted.
        let kept = try FileManager.default.subpathsOfDirectory(atPath: inbox.path).filter { $0.hasPrefix("Processed/") || $0.hasPrefix("Failed/") }
        for input in ["image-photo.png", "image-notimage.jpg", "recipe-typo.json", "mask-size.mask.png", "image-a.png"] {
            XCTAssertTrue(kept.contains { $0.hasSuffix("/" + input) }, input)
        }
    }

    /// A recipe's own control image moves in with its job (a pair), is copied for every job of a batch, and a
    /// `*.control.png` is never taken for a photo; both come back with the inputs.
    func testControlImagesAreClaimedWithTheirJobs() throws {
        let controls = root.appendingPathComponent("Models/ControlNet")
        try FileManager.default.createDirectory(at: controls, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: controls.appendingPathComponent("cn"),
                                                   withDestinationURL: fixtures.appendingPathComponent("controlnet/sd1_a/diffusers"))
        let recipe = #"{"mode": "img2img", "steps": 2, "seed": 1, "controlnet": [{"model": "cn", "image": "edges.control.png"}]}"#
        try putImage("photo.png"); try putImage("edges.control.png"); try put("photo.json", recipe)
        try putImage("album/a.png"); try putImage("album/b.png"); try putImage("album/edges.control.png"); try put("album/recipe.json", recipe)
        let outcomes = try runner().drain()
        XCTAssertEqual(outcomes.count, 3, "the control images are no jobs")
        for name in ["photo.png", "photo.json", "album/a.png", "album/b.png"] {
            XCTAssertTrue(exists(outbox.appendingPathComponent(name)), name)
        }
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: outbox.appendingPathComponent("photo.json"))) as? [String: Any])
        XCTAssertEqual((report["controlnet"] as? [[String: Any]])?.first?["image"] as? String, "edges.control.png")
        let kept = try FileManager.default.subpathsOfDirectory(atPath: inbox.appendingPathComponent("Processed").path)
        // One per job (the pair's moved, the batch's copied), and the batch's own, retired with its folder.
        XCTAssertEqual(kept.filter { $0.hasSuffix("edges.control.png") }.count, 4, "\(kept)")
        XCTAssertFalse(exists(inbox.appendingPathComponent("edges.control.png")))
    }

    func testExistingOutputsAreNeverOverwritten() throws {
        try FileManager.default.createDirectory(at: outbox, withIntermediateDirectories: true)
        try Data("earlier".utf8).write(to: outbox.appendingPathComponent("photo.png"))
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 1}"#)
        XCTAssertEqual(try runner().drain(), [.done])
        XCTAssertEqual(try String(contentsOf: outbox.appendingPathComponent("photo.png"), encoding: .utf8), "earlier")
        XCTAssertTrue(exists(outbox.appendingPathComponent("photo_2.png")))
    }

    /// Stopped after the first of two images (as SIGTERM or a crash between outputs): nothing is
    /// published yet (a job's results appear together, report last); the next start finishes the job,
    /// computes only the missing image, and publishes the staged first one as it was.
    func testInterruptedJobFinishesExactlyOnce() throws {
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 9, "count": 2}"#)
        let work = inbox.appendingPathComponent(".darkroom/work")
        func staged() -> URL? {
            let jobs = ((try? FileManager.default.contentsOfDirectory(atPath: work.path)) ?? []).filter { !$0.hasPrefix(".") }
            return jobs.first.map { work.appendingPathComponent("\($0)/out/photo.png") }.flatMap { exists($0) ? $0 : nil }
        }
        let outcomes = try runner().drain(shouldStop: { staged() != nil })
        XCTAssertEqual(outcomes, [.requeued])
        let firstBytes = try Data(contentsOf: try XCTUnwrap(staged()))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outbox.path), [], "nothing published before the job is done")
        XCTAssertFalse(exists(inbox.appendingPathComponent("photo.png")), "claimed: out of the inbox")

        XCTAssertEqual(try runner().drain(), [.done])
        XCTAssertEqual(try Data(contentsOf: outbox.appendingPathComponent("photo.png")), firstBytes)
        XCTAssertTrue(exists(outbox.appendingPathComponent("photo-2.png")))
        XCTAssertFalse(exists(outbox.appendingPathComponent("photo_2.png")), "no duplicate job")
        XCTAssertEqual(try runner().drain(), [], "nothing left to do")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: outbox.appendingPathComponent("photo.json"))) as? [String: Any]
        XCTAssertEqual(report?["seeds"] as? [String], ["9", "10"])
        let processed = try FileManager.default.subpathsOfDirectory(atPath: inbox.appendingPathComponent("Processed").path)
        XCTAssertFalse(processed.contains { $0.hasSuffix(".png") && !$0.contains("image-") }, "no second copy of the results is kept")
    }

    /// A claim cut short by a crash (record written, image still in the inbox) is completed on restart.
    func testHalfClaimedJobIsRecovered() throws {
        try putImage("photo.png"); try put("photo.json", #"{"mode": "img2img", "steps": 2, "seed": 2}"#)
        let store = try JobStore(inbox: inbox, outbox: outbox)
        let spec = try XCTUnwrap(InboxScanner(inbox: inbox, settle: 0).scan().first)
        // Simulate: publish the record, move nothing, "crash".
        let record = try store.claim(spec, count: 1, seed: 2)
        let claimedImage = try XCTUnwrap(store.claimed(record, role: "image"))
        try FileManager.default.moveItem(at: claimedImage, to: inbox.appendingPathComponent("photo.png"))
        XCTAssertEqual(try runner().drain(), [.done])
        XCTAssertTrue(exists(outbox.appendingPathComponent("photo.png")))
        XCTAssertFalse(exists(inbox.appendingPathComponent("photo.png")))
    }
}

extension InboxTests {
    /// inotify wakes the loop for a file written at the top and inside a batch folder created later.
    func testWatcherWakesOnNewFiles() throws {
        let watcher = try XCTUnwrap(InboxWatcher(inbox: inbox))
        XCTAssertFalse(watcher.wait(timeout: 0.05), "nothing happened yet")
        try put("a.json", "{}")
        XCTAssertTrue(watcher.wait(timeout: 1))
        try FileManager.default.createDirectory(at: inbox.appendingPathComponent("album"), withIntermediateDirectories: true)
        XCTAssertTrue(watcher.wait(timeout: 1))
        watcher.refresh(inbox)
        try put("album/recipe.json", "{}")
        XCTAssertTrue(watcher.wait(timeout: 1), "events inside a batch folder")
    }
}

/// The notify protocol against a datagram socket standing in for systemd.
final class SystemdNotifierTests: XCTestCase {
    func testDatagramsReachTheSocket() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString.prefix(8))").path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": path])
        notifier.ready(status: "model sd15 loaded")
        notifier.watchdog()
        var buffer = [UInt8](repeating: 0, count: 512)
        var messages: [String] = []
        for _ in 0..<2 {
            let n = recv(fd, &buffer, buffer.count, 0)
            XCTAssertGreaterThan(n, 0)
            messages.append(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self))
        }
        XCTAssertEqual(messages, ["READY=1\nSTATUS=model sd15 loaded", "WATCHDOG=1"])
        XCTAssertFalse(SystemdNotifier(environment: [:]).send("READY=1"), "no socket, no message")
    }
}

extension InboxTests {
    /// Restoration with `repair_defects`: two drawn one-pixel scratches are in the defect mask, which
    /// lands in the outbox beside the result. Recall counts the scratch pixels that are visible (more
    /// than 0.2 of the range from the photo beneath): a white line over the white spacesuit is no defect.
    func testRestoreFindsScratchesAndWritesTheMask() throws {
        var image = try ImageDecoder.decode(fileAt: fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image
        let original = image.samples
        var samples = image.samples
        for x in 5..<60 { for c in 0..<3 { samples[(30 * 64 + x) * 3 + c] = 255 } }          // a white horizontal scratch
        for y in 4..<58 { for c in 0..<3 { samples[(y * 64 + 50) * 3 + c] = 0 } }            // a black vertical one
        image = try Image(width: 64, height: 64, layout: .rgb, bitDepth: 8, samples: samples)
        try AtomicFile.write(try PNGEncoder.encode(image), to: inbox.appendingPathComponent("old.png"))
        try put("old.json", #"{"mode": "restore", "steps": 10, "seed": 4, "repair_defects": true}"#)
        XCTAssertEqual(try runner().drain(), [.done])
        let mask = try ImageDecoder.decode(fileAt: outbox.appendingPathComponent("old.defects.png")).image
        let scratch = ((5..<60).map { 30 * 64 + $0 } + (4..<58).map { $0 * 64 + 50 }).filter { i in
            abs(Int(samples[i * 3]) - Int(original[i * 3])) > 51
        }
        XCTAssertGreaterThan(scratch.count, 60)
        let found = scratch.filter { mask.samples[$0] == 255 }.count
        XCTAssertGreaterThanOrEqual(Double(found) / Double(scratch.count), 0.9, "recall of the drawn scratches")
        XCTAssertTrue(exists(outbox.appendingPathComponent("old.png")))
    }
}

extension InboxTests {
    /// More hostile inputs, each failing with a clear error.json while the others are served.
    func testTruncatedHugeEmptyAndLinkedInputs() throws {
        // A JPEG cut in half.
        let jpeg = try JPEGEncoder.encode(try ImageDecoder.decode(fileAt: fixtures.appendingPathComponent("pipelines/inputs/photo.png")).image)
        try Data(jpeg.prefix(jpeg.count / 2)).write(to: inbox.appendingPathComponent("cut.jpg"))
        try put("cut.json", #"{"mode": "img2img"}"#)
        // A PNG whose header claims 100000×100000 pixels (valid CRC).
        var ihdr: [UInt8] = Array("IHDR".utf8) + [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0, 8, 2, 0, 0, 0]
        let crc = crc32(ihdr)
        ihdr = [0, 0, 0, 13] + ihdr + [UInt8(crc >> 24), UInt8(crc >> 16 & 255), UInt8(crc >> 8 & 255), UInt8(crc & 255)]
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + ihdr).write(to: inbox.appendingPathComponent("huge.png"))
        try put("huge.json", #"{"mode": "img2img"}"#)
        // A zero-byte image and a symbolic link to a file outside the inbox.
        try Data().write(to: inbox.appendingPathComponent("empty.png"))
        try put("empty.json", #"{"mode": "img2img"}"#)
        let outside = root.appendingPathComponent("secret.png")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("pipelines/inputs/photo.png"), to: outside)
        try FileManager.default.createSymbolicLink(at: inbox.appendingPathComponent("link.png"), withDestinationURL: outside)
        try put("link.json", #"{"mode": "img2img"}"#)
        try putImage("fine.png"); try put("fine.json", #"{"mode": "img2img", "steps": 2}"#)

        let outcomes = try runner().drain()
        XCTAssertEqual(outcomes.filter { $0 == .done }.count, 1)
        XCTAssert((try failure("cut")["message"] as? String ?? "").contains("cut.jpg"))
        XCTAssert((try failure("huge")["message"] as? String ?? "").contains("100000"))
        XCTAssertEqual(try failure("empty")["file"] as? String, "empty.png")
        XCTAssert((try failure("link")["message"] as? String ?? "").contains("symbolic link"))
        XCTAssertTrue(exists(outside), "the link's target is untouched")
        XCTAssertTrue(exists(outbox.appendingPathComponent("fine.png")))
    }

    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

extension InboxTests {
    /// Files still being written (changed within the settle time) are not a job yet; the same files
    /// count once they have settled. A recipe dropped after its image completes the pair then.
    func testJobsStartOnlyWhenTheirFilesHaveSettled() throws {
        let scanner = InboxScanner(inbox: inbox, settle: 2)
        try putImage("photo.png")
        XCTAssertEqual(scanner.scan(now: Date().addingTimeInterval(5)), [], "no recipe yet")
        try put("photo.json", #"{"mode": "img2img"}"#)
        XCTAssertEqual(scanner.scan(now: Date()), [], "just written: still settling")
        XCTAssertEqual(scanner.scan(now: Date().addingTimeInterval(5)).map(\.image), ["photo.png"])
        // A batch folder counts only when its newest file has settled.
        try putImage("album/a.png")
        try put("album/recipe.json", #"{"mode": "img2img"}"#)
        XCTAssertEqual(scanner.scan(now: Date().addingTimeInterval(1)).map(\.image), [])
        XCTAssertEqual(Set(scanner.scan(now: Date().addingTimeInterval(5)).map(\.image)), ["photo.png", "album/a.png"])
    }
}

extension InboxTests {
    /// A one-pixel mask, and a small one that the default `mask_blur` would fade below 0.5: A1111
    /// still inpaints them (the diffusion uses the binarised unblurred mask), so the jobs are done,
    /// not refused as empty.
    func testTinyMasksAreInpainted() throws {
        for (stem, pixels) in [("dot", [(30, 30)]), ("speck", [(10, 10), (10, 11), (11, 10)])] {
            var samples = [UInt16](repeating: 0, count: 64 * 64)
            for (x, y) in pixels { samples[y * 64 + x] = 255 }
            try AtomicFile.write(try PNGEncoder.encode(try Image(width: 64, height: 64, layout: .gray, bitDepth: 8, samples: samples)),
                                 to: inbox.appendingPathComponent("\(stem).mask.png"))
            try putImage("\(stem).png")
            try put("\(stem).json", #"{"mode": "inpaint", "steps": 2, "seed": 1, "mask_blur": 8}"#)
        }
        XCTAssertEqual(try runner().drain(), [.done, .done])
        XCTAssertTrue(exists(outbox.appendingPathComponent("dot.png")))
        XCTAssertTrue(exists(outbox.appendingPathComponent("speck.png")))
    }
}
