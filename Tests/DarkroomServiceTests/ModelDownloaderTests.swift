import Crypto
import DarkroomService
import Foundation
import XCTest

/// `models pull` against a small HTTP server on the loopback address (this test's own, bounded: it
/// answers a handful of requests and stops).
final class ModelDownloaderTests: XCTestCase {
    var folder: URL!
    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("pull-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    let body: [UInt8] = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
    var digest: String { SHA256.hash(data: body).map { String(format: "%02x", $0) }.joined() }

    func testInterruptedDownloadResumesWithARangeRequestAndVerifies() throws {
        let server = try LoopbackHTTPServer(body: body, cutFirstResponseAfter: 100_000)
        let destination = folder.appendingPathComponent("model.safetensors")
        XCTAssertThrowsError(try ModelDownloader().pull(url: server.url, to: destination, sha256: digest, size: body.count)) {
            XCTAssert("\($0)".contains("resume"), "\($0)")
        }
        let partial = try Data(contentsOf: destination.appendingPathExtension("part"))
        XCTAssertEqual(partial.count, 100_000)
        XCTAssertEqual(try ModelDownloader().pull(url: server.url, to: destination, sha256: digest, size: body.count), digest)
        XCTAssertEqual(Array(try Data(contentsOf: destination)), body)
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination.appendingPathExtension("part").path))
        XCTAssertEqual(server.rangeHeaders, ["bytes=100000-"])
    }

    func testWrongChecksumIsRefusedAndNothingIsOverwritten() throws {
        let server = try LoopbackHTTPServer(body: body, cutFirstResponseAfter: nil)
        let destination = folder.appendingPathComponent("model.safetensors")
        XCTAssertThrowsError(try ModelDownloader().pull(url: server.url, to: destination, sha256: String(repeating: "0", count: 64), size: nil)) {
            XCTAssertEqual($0 as? ModelDownloader.Failure, .mismatch(destination.path, expected: "SHA-256 " + String(repeating: "0", count: 64), found: digest))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: destination.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: destination.appendingPathExtension("mismatch").path))
        try Data("mine".utf8).write(to: destination)
        XCTAssertThrowsError(try ModelDownloader().pull(url: server.url, to: destination, sha256: nil, size: nil)) {
            XCTAssertEqual($0 as? ModelDownloader.Failure, .exists(destination.path))
        }
        XCTAssertEqual(try String(contentsOf: destination, encoding: .utf8), "mine")
    }
}

/// A minimal HTTP/1.1 file server on 127.0.0.1 for one body, with `Range: bytes=N-` support; the first
/// answer can be cut short to simulate a dropped connection. It serves at most 8 connections.
final class LoopbackHTTPServer: @unchecked Sendable {
    let socketFD: Int32
    let port: UInt16
    let body: [UInt8]
    var cut: Int?
    private let lock = NSLock()
    private var ranges: [String] = []
    var rangeHeaders: [String] { lock.lock(); defer { lock.unlock() }; return ranges }
    var url: URL { URL(string: "http://127.0.0.1:\(port)/model.safetensors")! }

    init(body: [UInt8], cutFirstResponseAfter cut: Int?) throws {
        self.body = body
        self.cut = cut
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        socketFD = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound, listen(fd, 4) == 0 else { close(fd); throw POSIXError(.EADDRNOTAVAIL) }
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread { [self] in serve() }
    }

    deinit { close(socketFD) }

    private func serve() {
        for _ in 0..<8 {
            let client = accept(socketFD, nil, nil)
            guard client >= 0 else { return }
            var request = [UInt8](), buffer = [UInt8](repeating: 0, count: 4096)
            while !String(decoding: request, as: UTF8.self).contains("\r\n\r\n") {
                let n = read(client, &buffer, buffer.count)
                if n <= 0 { break }
                request += buffer.prefix(n)
            }
            let text = String(decoding: request, as: UTF8.self)
            var start = 0
            if let line = text.split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("range: bytes=") }) {
                let value = line.split(separator: "=", maxSplits: 1)[1]
                lock.lock(); ranges.append("bytes=\(value)"); lock.unlock()
                start = Int(value.split(separator: "-").first ?? "0") ?? 0
            }
            let part = Array(body[start...])
            let status = start > 0 ? "206 Partial Content" : "200 OK"
            var header = "HTTP/1.1 \(status)\r\nContent-Length: \(part.count)\r\nConnection: close\r\n"
            if start > 0 { header += "Content-Range: bytes \(start)-\(body.count - 1)/\(body.count)\r\n" }
            header += "\r\n"
            _ = Array(header.utf8).withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            let sending = cut.map { Array(part.prefix($0)) } ?? part
            cut = nil
            var offset = 0
            while offset < sending.count {
                let n = sending.withUnsafeBytes { write(client, $0.baseAddress! + offset, sending.count - offset) }
                if n <= 0 { break }
                offset += n
            }
            close(client)
        }
    }
}
