import Foundation

/// A job found in the inbox: one image, its recipe, its optional mask, and where its results go.
public struct JobSpec: Sendable, Equatable {
    /// The image, relative to the inbox (`photo.jpg`, `album/a.png`).
    public var image: String
    /// The recipe, relative to the inbox (`photo.json`, `album/recipe.json`).
    public var recipe: String
    /// The mask, relative to the inbox, when one is beside the image (`photo.mask.png`).
    public var mask: String?
    /// The batch folder, or nil for a pair at the top level.
    public var batch: String?
    /// Whether the recipe belongs to this job alone (a pair) or is shared (a batch folder's recipe.json).
    public var recipeIsShared: Bool

    /// The image's name without extension.
    public var stem: String { URL(fileURLWithPath: image).deletingPathExtension().lastPathComponent }
}

/// Finds complete jobs in the inbox (conventions in README "Inbox"):
/// - a pair: `photo.jpg` + `photo.json` (+ `photo.mask.png`, or a mask named by the recipe);
/// - a batch folder: `album/recipe.json` + images (+ `<stem>.mask.png` each);
/// - a top-level `recipe.json`: applies to top-level images that have no recipe of their own.
/// A file counts only once it has settled: unchanged for `settle` seconds (a copy still being written,
/// or a pair whose second half has not arrived, waits). `Processed`, `Failed` and names starting with
/// `.` or `_` are never jobs.
public struct InboxScanner: Sendable {
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]
    public static let reserved: Set<String> = ["Processed", "Failed"]

    public let inbox: URL
    public let settle: TimeInterval

    public init(inbox: URL, settle: TimeInterval = 2) {
        self.inbox = inbox
        self.settle = settle
    }

    /// Complete jobs, in a stable order (oldest images first, then by name).
    public func scan(now: Date = Date()) -> [JobSpec] {
        var jobs: [(Date, JobSpec)] = []
        let top = entries(inbox)
        let topRecipe = top.files["recipe.json"]
        for (name, modified) in top.files.sorted(by: { $0.key < $1.key }) where isImage(name) {
            let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
            let ownRecipe = "\(stem).json"
            let recipe: String, shared: Bool
            if top.files[ownRecipe] != nil { recipe = ownRecipe; shared = false }
            else if topRecipe != nil { recipe = "recipe.json"; shared = true }
            else { continue }                                           // its recipe has not arrived yet
            let mask = top.files["\(stem).mask.png"] != nil ? "\(stem).mask.png" : nil
            let parts = [name, recipe] + (mask.map { [$0] } ?? [])
            guard parts.allSatisfy({ settled(top.files[$0], now) }) else { continue }
            jobs.append((modified, JobSpec(image: name, recipe: recipe, mask: mask, batch: nil, recipeIsShared: shared)))
        }
        for folder in top.folders.sorted() {
            let inside = entries(inbox.appendingPathComponent(folder))
            guard let recipeDate = inside.files["recipe.json"], settled(recipeDate, now),
                  inside.newest.map({ now.timeIntervalSince($0) >= settle }) ?? true else { continue }   // still being copied
            for (name, modified) in inside.files.sorted(by: { $0.key < $1.key }) where isImage(name) {
                let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
                let mask = inside.files["\(stem).mask.png"] != nil ? "\(folder)/\(stem).mask.png" : nil
                jobs.append((modified, JobSpec(image: "\(folder)/\(name)", recipe: "\(folder)/recipe.json", mask: mask,
                                               batch: folder, recipeIsShared: true)))
            }
        }
        return jobs.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.image < $1.1.image }.map(\.1)
    }

    func isImage(_ name: String) -> Bool {
        !name.hasSuffix(".mask.png") && Self.imageExtensions.contains(URL(fileURLWithPath: name).pathExtension.lowercased())
    }

    func settled(_ modified: Date?, _ now: Date) -> Bool {
        guard let modified else { return false }
        return now.timeIntervalSince(modified) >= settle
    }

    /// Regular files (name → modification date) and folders of `url`, without hidden/reserved names.
    /// Symbolic links are never followed: a link counts as a file (so a job with one fails with a clear
    /// error instead of waiting forever), never as a folder.
    func entries(_ url: URL) -> (files: [String: Date], folders: [String], newest: Date?) {
        var files: [String: Date] = [:], folders: [String] = [], newest: Date?
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where !name.hasPrefix(".") && !name.hasPrefix("_") && !Self.reserved.contains(name) {
            var info = stat()
            guard lstat(url.appendingPathComponent(name).path, &info) == 0 else { continue }
            let modified = Date(timeIntervalSince1970: TimeInterval(info.st_mtim.tv_sec) + TimeInterval(info.st_mtim.tv_nsec) / 1e9)
            switch info.st_mode & S_IFMT {
            case S_IFREG, S_IFLNK: files[name] = modified; newest = max(newest ?? modified, modified)
            case S_IFDIR: folders.append(name)
            default: continue
            }
        }
        return (files, folders, newest)
    }
}
