import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wakes the daemon when something changes in the inbox (inotify, the kernel API: no library needed),
/// recursively for batch folders. Events only say "look again": the full rescan in `InboxScanner`
/// stays the source of truth, so an event-queue overflow, a missed event, or files dropped while the
/// daemon was down are all caught by the next scan.
public final class InboxWatcher {
    let fd: Int32
    var watched: [String: Int32] = [:]
    static let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_Q_OVERFLOW)

    /// nil when inotify is unavailable (the daemon then rescans on a timer only).
    public init?(inbox: URL) {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        refresh(inbox)
    }

    deinit { close(fd) }

    /// Watches `inbox` and its visible subfolders (batch folders), adding new ones as they appear.
    public func refresh(_ inbox: URL) {
        var folders = [inbox.path]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: inbox.path)) ?? []
        for name in names where !name.hasPrefix(".") && !name.hasPrefix("_") && !InboxScanner.reserved.contains(name) {
            var isDirectory: ObjCBool = false
            let path = inbox.appendingPathComponent(name).path
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { folders.append(path) }
        }
        for path in folders where watched[path] == nil {
            let wd = inotify_add_watch(fd, path, Self.mask)
            if wd >= 0 { watched[path] = wd }
        }
    }

    /// Waits up to `timeout` seconds for events; true when there were any (the queue is drained).
    public func wait(timeout: TimeInterval) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(timeout * 1000))
        guard ready > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while read(fd, &buffer, buffer.count) > 0 {}
        return true
    }
}
