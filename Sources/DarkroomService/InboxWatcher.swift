import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wakes the daemon when something is added to the inbox (inotify, the kernel API: no library needed),
/// recursively for batch folders. Events only say "look again": the scan in `InboxQueue` stays the
/// source of truth, so an event-queue overflow, a missed event, or files dropped while the daemon was
/// down are all caught by a later scan. Removals (the daemon's own claims among them) and hidden or
/// reserved names wake nothing: a queued job whose files went away is dropped when it is taken.
public final class InboxWatcher {
    let fd: Int32
    var watched: [String: Int32] = [:]
    var paths: [Int32: String] = [:]
    /// Folders appeared, a watch was lost (a folder deleted or moved) or events were dropped: call
    /// `refresh` to watch what is there now.
    public private(set) var needsRefresh = false
    static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_Q_OVERFLOW
                             | IN_DELETE_SELF | IN_MOVE_SELF)
    static let additions = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ATTRIB)

    /// nil when inotify is unavailable (the daemon then rescans on a timer only).
    public init?(inbox: URL) {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        refresh(inbox)
    }

    deinit { close(fd) }

    /// Watches `inbox` and its visible subfolders (batch folders), adding new ones as they appear and
    /// watching a recreated inbox again. True when a folder is watched anew (events for what it
    /// already holds were missed: scan it).
    @discardableResult
    public func refresh(_ inbox: URL) -> Bool {
        var added = false
        needsRefresh = false
        var folders = [inbox.path]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: inbox.path)) ?? []
        for name in names where !name.hasPrefix(".") && !name.hasPrefix("_") && !InboxScanner.reserved.contains(name) {
            var info = stat()
            let path = inbox.appendingPathComponent(name).path
            if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { folders.append(path) }
        }
        for path in folders where watched[path] == nil {
            let wd = inotify_add_watch(fd, path, Self.mask)
            if wd >= 0 { watched[path] = wd; paths[wd] = path; added = true }
            else if path == inbox.path { needsRefresh = true }      // the inbox is gone for now: try again later
        }
        return added
    }

    /// Waits up to `timeout` seconds for events; true when something may have been added (the queue
    /// is drained either way).
    public func wait(timeout: TimeInterval) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(max(0, timeout) * 1000))
        guard ready > 0 else { return false }
        var added = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { break }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= n {
                let (wd, mask, length) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                    let base = raw.baseAddress! + offset
                    return (base.loadUnaligned(as: Int32.self),
                            base.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
                            Int(base.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
                }
                let nameStart = offset + MemoryLayout<inotify_event>.size
                let nameBytes = buffer[nameStart..<min(n, nameStart + length)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset = nameStart + length
                if mask & UInt32(IN_Q_OVERFLOW) != 0 { added = true; needsRefresh = true; continue }
                if mask & UInt32(IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF) != 0 {
                    // The watched folder itself went away (a batch folder retired, the inbox deleted).
                    if let path = paths.removeValue(forKey: wd) { watched[path] = nil }
                    needsRefresh = true
                    continue
                }
                guard !name.hasPrefix("."), !name.hasPrefix("_"), !InboxScanner.reserved.contains(name) else { continue }
                if mask & Self.additions != 0 {
                    added = true
                    if mask & UInt32(IN_ISDIR) != 0 { needsRefresh = true }
                }
            }
        }
        return added
    }
}
