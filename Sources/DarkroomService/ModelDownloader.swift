import Crypto
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Checkpoints `darkroom models pull NAME` knows: where they are published and what they must hash to.
public struct KnownCheckpoint: Sendable {
    public let name: String, file: String, url: String
    /// The published SHA-256; nil when Darkroom has no confirmed value (then `--sha256` can pin one).
    public let sha256: String?
    public let size: Int?

    public static let all: [KnownCheckpoint] = [
        KnownCheckpoint(name: "sd15", file: "v1-5-pruned-emaonly.safetensors",
                        url: "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/v1-5-pruned-emaonly.safetensors",
                        sha256: "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa", size: 4_265_146_304),
        KnownCheckpoint(name: "sd21-base", file: "v2-1_512-ema-pruned.safetensors",
                        url: "https://huggingface.co/stabilityai/stable-diffusion-2-1-base/resolve/main/v2-1_512-ema-pruned.safetensors",
                        sha256: nil, size: 5_214_604_494),
        KnownCheckpoint(name: "sdxl", file: "sd_xl_base_1.0.safetensors",
                        url: "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
                        sha256: "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b", size: 6_938_078_334),
    ]
}

/// Downloads a file to a folder, resumably and verifiably: bytes go to `<file>.part` (a later run
/// continues it with an HTTP `Range` request), the whole file's SHA-256 and size are checked, and only
/// then is it renamed to its name. An existing file is never replaced.
public struct ModelDownloader {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case exists(String), http(String, Int), transport(String, String), mismatch(String, expected: String, found: String)
        public var description: String {
            switch self {
            case .exists(let path): return "'\(path)' exists; it is never overwritten."
            case let .http(url, status): return "Downloading '\(url)' failed: HTTP status \(status)."
            case let .transport(url, reason): return "Downloading '\(url)' failed: \(reason). Run the command again to resume."
            case let .mismatch(path, expected, found):
                return "'\(path)' does not match: expected \(expected), found \(found). The download was kept as '\(path).mismatch'."
            }
        }
    }

    public init() {}

    /// Downloads `url` into `destination`; returns the file's SHA-256.
    @discardableResult
    public func pull(url: URL, to destination: URL, sha256 expected: String?, size: Int?,
                     progress: ((Int64, Int64?) -> Void)? = nil) throws -> String {
        if FileManager.default.fileExists(atPath: destination.path) { throw Failure.exists(destination.path) }
        let part = destination.appendingPathExtension("part")
        if !FileManager.default.fileExists(atPath: part.path) { FileManager.default.createFile(atPath: part.path, contents: nil) }
        try download(url, appendingTo: part, progress: progress)
        let attributes = try FileManager.default.attributesOfItem(atPath: part.path)
        let actualSize = (attributes[.size] as? NSNumber)?.intValue ?? -1
        let digest = try ModelHash.sha256(of: part)
        if let size, size != actualSize {
            try? FileManager.default.moveItem(at: part, to: destination.appendingPathExtension("mismatch"))
            throw Failure.mismatch(destination.path, expected: "\(size) bytes", found: "\(actualSize) bytes")
        }
        if let expected, expected.lowercased() != digest {
            try? FileManager.default.moveItem(at: part, to: destination.appendingPathExtension("mismatch"))
            throw Failure.mismatch(destination.path, expected: "SHA-256 \(expected)", found: digest)
        }
        guard link(part.path, destination.path) == 0 else { throw Failure.exists(destination.path) }
        unlink(part.path)
        return digest
    }

    /// Appends the rest of `url` (from the part file's current length) to the part file.
    func download(_ url: URL, appendingTo part: URL, progress: ((Int64, Int64?) -> Void)?) throws {
        let handle = try FileHandle(forWritingTo: part)
        defer { try? handle.close() }
        let offset = try handle.seekToEnd()
        var request = URLRequest(url: url)
        if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
        let delegate = StreamingDelegate(handle: handle, offset: Int64(offset), progress: progress)
        let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
        defer { session.invalidateAndCancel() }
        session.dataTask(with: request).resume()
        delegate.done.wait()
        if let status = delegate.status, ![200, 206].contains(status) { throw Failure.http(url.absoluteString, status) }
        if let error = delegate.error { throw Failure.transport(url.absoluteString, error) }
    }
}

/// Writes a response body to a file as it arrives. A 200 answer to a range request (the server cannot
/// resume) starts the file over.
final class StreamingDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let handle: FileHandle
    var written: Int64
    let progress: ((Int64, Int64?) -> Void)?
    let done = DispatchSemaphore(value: 0)
    var status: Int?, error: String?, total: Int64?

    init(handle: FileHandle, offset: Int64, progress: ((Int64, Int64?) -> Void)?) {
        self.handle = handle
        written = offset
        self.progress = progress
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        let http = response as? HTTPURLResponse
        status = http?.statusCode
        if status == 200, written > 0 {                                   // no resume: start over
            try? handle.truncate(atOffset: 0)
            written = 0
        }
        if let length = http?.expectedContentLength, length >= 0 { total = written + length }
        completionHandler([200, 206].contains(status ?? 0) ? .allow : .cancel)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        do { try handle.write(contentsOf: data); written += Int64(data.count); progress?(written, total) } catch {
            self.error = "cannot write: \(error.localizedDescription)"
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error, self.error == nil, [200, 206].contains(status ?? 0) { self.error = error.localizedDescription }
        if let total, self.error == nil, written < total { self.error = "the connection closed after \(written) of \(total) bytes" }
        try? handle.synchronize()
        done.signal()
    }
}
