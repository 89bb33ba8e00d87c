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
    /// Other images with the same stem as `image` beside its own recipe (`x.png` + `x.jpg` + `x.json`):
    /// which one the recipe is for is unknown, so the job fails naming them all.
    public var conflicts: [String] = []

    public init(image: String, recipe: String, mask: String? = nil, batch: String? = nil, recipeIsShared: Bool, conflicts: [String] = []) {
        (self.image, self.recipe, self.mask, self.batch, self.recipeIsShared, self.conflicts) = (image, recipe, mask, batch, recipeIsShared, conflicts)
    }

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
    public func scan(now: Date = Date()) -> [JobSpec] { scanDetailed(now: now).jobs }

    /// Complete jobs, and the earliest time a file that is still settling will have settled (when
    /// another scan could find more).
    public func scanDetailed(now: Date = Date()) -> (jobs: [JobSpec], recheck: Date?) {
        var jobs: [(Date, JobSpec)] = []
        var recheck: Date?
        func settledOrNote(_ modified: Date?) -> Bool {
            guard let modified else { return false }
            if now.timeIntervalSince(modified) >= settle { return true }
            let when = modified.addingTimeInterval(settle)
            recheck = min(recheck ?? when, when)
            return false
        }
        let top = entries(inbox)
        // A folder named like a recipe (`photo.json/`) still counts as that recipe, so the job fails
        // clearly ("is a folder") instead of waiting forever.
        func recipeDate(_ name: String, in listing: Listing) -> Date? { listing.files[name] ?? listing.folderDates[name] }
        let topRecipe = recipeDate("recipe.json", in: top)
        var images: [String: [String]] = [:]                       // stem → images with that stem
        for name in top.files.keys where isImage(name) {
            images[URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent, default: []].append(name)
        }
        var recipeFolders = Set<String>()
        for (stem, names) in images {
            let ownRecipe = "\(stem).json"
            let sorted = names.sorted()
            let ownDate = recipeDate(ownRecipe, in: top)
            if ownDate != nil, top.folderDates[ownRecipe] != nil { recipeFolders.insert(ownRecipe) }
            let mask = top.files["\(stem).mask.png"] != nil ? "\(stem).mask.png" : nil
            let groups: [(image: String, conflicts: [String])] = ownDate != nil ? [(sorted[0], Array(sorted.dropFirst()))] : sorted.map { ($0, []) }
            for (name, conflicts) in groups {
                let recipe: String, shared: Bool, recipeModified: Date?
                if let ownDate { recipe = ownRecipe; shared = false; recipeModified = ownDate }
                else if let topRecipe { recipe = "recipe.json"; shared = true; recipeModified = topRecipe }
                else { continue }                                   // its recipe has not arrived yet
                let parts = [name] + conflicts + (mask.map { [$0] } ?? [])
                guard settledOrNote(recipeModified), parts.allSatisfy({ settledOrNote(top.files[$0]) }),
                      let modified = top.files[name] else { continue }
                jobs.append((modified, JobSpec(image: name, recipe: recipe, mask: mask, batch: nil, recipeIsShared: shared, conflicts: conflicts)))
            }
        }
        for folder in top.folderDates.keys.sorted() where !recipeFolders.contains(folder) && folder != "recipe.json" {
            let inside = entries(inbox.appendingPathComponent(folder))
            guard settledOrNote(recipeDate("recipe.json", in: inside)),
                  inside.newest.map({ settledOrNote($0) }) ?? true else { continue }   // still being copied
            for (name, modified) in inside.files.sorted(by: { $0.key < $1.key }) where isImage(name) {
                let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
                let mask = inside.files["\(stem).mask.png"] != nil ? "\(folder)/\(stem).mask.png" : nil
                jobs.append((modified, JobSpec(image: "\(folder)/\(name)", recipe: "\(folder)/recipe.json", mask: mask,
                                               batch: folder, recipeIsShared: true)))
            }
        }
        return (jobs.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1.image < $1.1.image }.map(\.1), recheck)
    }

    /// Whether a job's files are all still there and settled (a cheap check before claiming a job
    /// found by an earlier scan).
    public func isStillComplete(_ spec: JobSpec, now: Date = Date()) -> Bool {
        for path in [spec.image, spec.recipe] + spec.conflicts + (spec.mask.map { [$0] } ?? []) {
            var info = stat()
            guard lstat(inbox.appendingPathComponent(path).path, &info) == 0 else { return false }
            if now.timeIntervalSince(Self.date(info.st_mtim)) < settle { return false }
        }
        return true
    }

    /// A photo to process: not a mask (`*.mask.png`) and not a control image (`*.control.png`, `*.control.jpg`:
    /// what a recipe's `controlnet[i].image` names, so a batch folder's shared one is not taken for a photo).
    func isImage(_ name: String) -> Bool {
        let stem = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
        return !name.hasSuffix(".mask.png") && !stem.hasSuffix(".control")
            && Self.imageExtensions.contains(URL(fileURLWithPath: name).pathExtension.lowercased())
    }

    func settled(_ modified: Date?, _ now: Date) -> Bool {
        guard let modified else { return false }
        return now.timeIntervalSince(modified) >= settle
    }

    struct Listing {
        var files: [String: Date] = [:]
        /// Folders, with their modification dates.
        var folderDates: [String: Date] = [:]
        var newest: Date?
    }

    /// Regular files (name → modification date) and folders of `url`, without hidden/reserved names.
    /// Symbolic links are never followed: a link counts as a file (so a job with one fails with a clear
    /// error instead of waiting forever), never as a folder.
    func entries(_ url: URL) -> Listing {
        var listing = Listing()
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where !name.hasPrefix(".") && !name.hasPrefix("_") && !Self.reserved.contains(name) {
            var info = stat()
            guard lstat(url.appendingPathComponent(name).path, &info) == 0 else { continue }
            let modified = Self.date(info.st_mtim)
            switch info.st_mode & S_IFMT {
            case S_IFREG, S_IFLNK: listing.files[name] = modified; listing.newest = max(listing.newest ?? modified, modified)
            case S_IFDIR: listing.folderDates[name] = modified
            default: continue
            }
        }
        return listing
    }

    static func date(_ time: timespec) -> Date {
        Date(timeIntervalSince1970: TimeInterval(time.tv_sec) + TimeInterval(time.tv_nsec) / 1e9)
    }
}
