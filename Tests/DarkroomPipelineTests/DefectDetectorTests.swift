import DarkroomPipeline
import Foundation
import XCTest

/// `ImageOps.detectDefects` on issue 15's evaluation set (tools/reference/make_defect_eval.py →
/// Tests/Fixtures/defects: eight scikit-image photographs at 320 px with drawn scratches, dust and tears, grain,
/// fading and JPEG; true masks; the clean originals). Every expected count comes from cases.json, written by
/// that script with the integer reference tools/reference/defect_detector.py (new) and skimage's top-hats (old).
/// The held-out set Tests/Fixtures/defects-held-out-320 (other photos and seeds) is checked the same way.
final class DefectDetectorTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/defects")

    struct Score { var tp = 0, fp = 0, fn = 0, masked = 0, pixels = 0
        var recall: Double { Double(tp) / Double(max(tp + fn, 1)) }
        var precision: Double { Double(tp) / Double(max(tp + fp, 1)) }
        var iou: Double { Double(tp) / Double(max(tp + fp + fn, 1)) }
    }

    /// As make_defect_eval.py's `score`: truth is 255; 128 (drawn, not visible) and a 2-pixel band (Chebyshev)
    /// around the truth count neither way.
    static func score(_ predicted: PlanarImage, truth mask: PlanarImage8) -> Score {
        let w = mask.width, h = mask.height
        var ignore = [Bool](repeating: false, count: w * h)
        for y in 0..<h { for x in 0..<w where mask.pixels[y * w + x] == 255 {
            for yy in max(0, y - 2)...min(h - 1, y + 2) { for xx in max(0, x - 2)...min(w - 1, x + 2) { ignore[yy * w + xx] = true } }
        } }
        var s = Score()
        s.pixels = w * h
        for i in 0..<(w * h) {
            let on = predicted.pixels[i] > 0.5, truth = mask.pixels[i] == 255
            if on { s.masked += 1 }
            if truth { if on { s.tp += 1 } else { s.fn += 1 } } else if on, !ignore[i], mask.pixels[i] != 128 { s.fp += 1 }
        }
        return s
    }

    static func png(_ folder: String, _ name: String) throws -> PlanarImage8 {
        try ControlPreprocessorTests.png("../\(folder)/\(name).png")
    }

    typealias Sums = (r: Double, p: Double, iou: Double, clean: Double, cleanMax: Double, n: Double)

    /// Runs the detectors named on every case of `folder`'s cases.json, checks TP/FP/FN and the clean photo's
    /// count against the reference's, prints the scores and returns their sums per detector.
    static func evaluate(_ folder: String, detectors: [(String, (PlanarImage8) throws -> PlanarImage)]) throws
        -> [String: Sums] {
        let root = Self.root.deletingLastPathComponent().appendingPathComponent(folder)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        var sums: [String: Sums] = [:]
        var lines: [String] = []
        for c in cases {
            let photo = try XCTUnwrap(c["photo"] as? String)
            let damaged = try png(folder, "\(photo)_damaged"), clean = try png(folder, photo), truth = try png(folder, "\(photo)_mask")
            XCTAssertEqual(truth.channels, 1)
            var line = photo.padding(toLength: 10, withPad: " ", startingAt: 0)
            for (label, detect) in detectors {
                let expected = try XCTUnwrap(c[label] as? [String: Any])
                let s = score(try detect(damaged), truth: truth)
                let cleanMask = try detect(clean)
                let cleanCount = cleanMask.pixels.filter { $0 > 0.5 }.count
                XCTAssertEqual(s.tp, expected["tp"] as? Int, "\(folder) \(photo) \(label) TP")
                XCTAssertEqual(s.fp, expected["fp"] as? Int, "\(folder) \(photo) \(label) FP")
                XCTAssertEqual(s.fn, expected["fn"] as? Int, "\(folder) \(photo) \(label) FN")
                XCTAssertEqual(cleanCount, expected["clean_pixels"] as? Int, "\(folder) \(photo) \(label) clean photo")
                let cleanFraction = Double(cleanCount) / Double(s.pixels)
                var sum = sums[label] ?? (0, 0, 0, 0, 0, 0)
                sum.r += s.recall; sum.p += s.precision; sum.iou += s.iou; sum.clean += cleanFraction; sum.n += 1
                sum.cleanMax = max(sum.cleanMax, cleanFraction)
                sums[label] = sum
                line += String(format: " | %@ R %.3f P %.3f IoU %.3f mask %5.2f %% clean %6.3f %%", label, s.recall, s.precision,
                               s.iou, 100 * Double(s.masked) / Double(s.pixels), 100 * cleanFraction)
            }
            lines.append(line)
        }
        for (label, _) in detectors {
            let s = try XCTUnwrap(sums[label])
            lines.append(String(format: "%@ mean %@: recall %.3f precision %.3f IoU %.3f clean photo %.3f %% (max %.3f %%)",
                                folder, label, s.r / s.n, s.p / s.n, s.iou / s.n, 100 * s.clean / s.n, 100 * s.cleanMax))
        }
        print(lines.joined(separator: "\n"))
        return sums
    }

    /// The reference's mean recall of the new detector on `folder` (cases.json's "means").
    static func referenceMeans(_ folder: String) throws -> [String: Double] {
        let root = Self.root.deletingLastPathComponent().appendingPathComponent(folder)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as? [String: Any])
        let means = try XCTUnwrap(json["means"] as? [String: Any])
        return try XCTUnwrap(means["new"] as? [String: Double])
    }

    /// The new detector gives the reference's masks (same TP/FP/FN on every damaged photo and the same clean-photo
    /// count), and the old top-hat mask is measured beside it (also equal to its skimage reference).
    func testEvaluationSetOldAndNew() throws {
        let sums = try Self.evaluate("defects", detectors: [
            ("old", { try ImageOps.defectMask(image: $0, threshold: 0.12) }),
            ("new", { try ImageOps.detectDefects($0) }),
        ])
        let new = try XCTUnwrap(sums["new"]), old = try XCTUnwrap(sums["old"])
        XCTAssertEqual(new.n, 8)
        let reference = try Self.referenceMeans("defects")
        XCTAssertEqual(new.r / new.n, try XCTUnwrap(reference["recall"]), accuracy: 1e-4)
        XCTAssertEqual(new.clean / new.n, try XCTUnwrap(reference["clean_fraction"]), accuracy: 1e-4)
        // Issue 15's goals hold on this set (reference: recall 0.862, precision 0.795, clean photos 0.08 % mean
        // and 0.24 % at most; see Tests/Fixtures/defects/README.md).
        XCTAssertGreaterThanOrEqual(new.r / new.n, 0.85)
        XCTAssertGreaterThanOrEqual(new.p / new.n, 0.6)
        XCTAssertLessThan(new.cleanMax, 0.005, "every clean photo under 0.5 %")
        XCTAssertGreaterThan(new.iou / new.n, 2 * old.iou / old.n, "twice the old detector's IoU")
    }

    /// The held-out set (other photos, other seeds; `make_defect_eval.py --held-out --side 320`): the masks equal
    /// the reference's there too, on other sizes and aspect ratios.
    func testHeldOutSetMatchesReference() throws {
        let sums = try Self.evaluate("defects-held-out-320", detectors: [("new", { try ImageOps.detectDefects($0) })])
        let new = try XCTUnwrap(sums["new"])
        XCTAssertEqual(new.n, 8)
        let reference = try Self.referenceMeans("defects-held-out-320")
        XCTAssertEqual(new.r / new.n, try XCTUnwrap(reference["recall"]), accuracy: 1e-4)
        XCTAssertEqual(new.p / new.n, try XCTUnwrap(reference["precision"]), accuracy: 1e-4)
    }

    /// A winding 3-pixel path of paper white with a shadow on one side (a tear), across a gradient, is found over
    /// most of its length; it wanders too much for the line stage.
    func testWindingTear() throws {
        let w = 200, h = 120
        var pixels = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { pixels[y * w + x] = UInt8(70 + y / 2) } }
        var centre: [Int] = []
        for x in 0..<w {
            // A zigzag of period 24 and amplitude 6 around row 60, plus a slow bend.
            let phase = x % 24, zig = phase < 12 ? phase - 6 : 18 - phase
            centre.append(60 + zig + (x / 40) * 3 - 6)
        }
        for x in 0..<w {
            let c = centre[x]
            for y in (c - 1)...(c + 1) { pixels[y * w + x] = 240 }
            for y in (c + 2)...(c + 3) { pixels[y * w + x] = UInt8(Int(pixels[y * w + x]) / 2) }
        }
        let mask = try ImageOps.detectDefects(try PlanarImage8(width: w, height: h, channels: 1, pixels: pixels))
        let found = (0..<w).filter { mask.pixels[centre[$0] * w + $0] > 0 }.count
        XCTAssertGreaterThanOrEqual(found, 180, "tear centre found in \(found) of \(w) columns")
        XCTAssertEqual(mask.pixels[10 * w + 100], 0)
    }

    /// A shaded rod (the profile across a tripod leg of camera.png, row 250: a dark stripe beside a bright one) is
    /// structure, not damage; a dark one-pixel scratch beside it is damage. The line stage finds both stripes of
    /// the rod (200 bright and 176 dark line pixels in the reference), but they pair with each other.
    /// Expected: tools/reference/defect_detector.py `detect(L, 18)` on this image marks 0 pixels in columns
    /// 55..<70, all of column 110 in rows 10..<110, and 306 pixels in all.
    func testShadedRodIsNotAScratch() throws {
        let w = 160, h = 120, rod: [UInt8] = [56, 84, 133, 208, 223, 132, 108]
        var pixels = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { pixels[y * w + x] = UInt8(140 + x / 8) } }
        for y in 10..<110 {
            for (i, v) in rod.enumerated() { pixels[y * w + 60 + i] = v }
            pixels[y * w + 110] = 60
        }
        let mask = try ImageOps.detectDefects(try PlanarImage8(width: w, height: h, channels: 1, pixels: pixels))
        let rodMarks = (0..<h).reduce(0) { sum, y in sum + (55..<70).filter { mask.pixels[y * w + $0] > 0 }.count }
        XCTAssertEqual(rodMarks, 0, "the shaded rod")
        XCTAssertEqual((10..<110).filter { mask.pixels[$0 * w + 110] > 0 }.count, 100, "the scratch")
        XCTAssertEqual(mask.pixels.filter { $0 > 0 }.count, 306)
    }

    static func detect(_ width: Int, _ height: Int, _ level: (Int, Int) -> Int) throws -> (PlanarImage, Int) {
        var pixels = [UInt8](repeating: 0, count: width * height)
        for y in 0..<height { for x in 0..<width { pixels[y * width + x] = UInt8(level(y, x)) } }
        let mask = try ImageOps.detectDefects(try PlanarImage8(width: width, height: height, channels: 1, pixels: pixels))
        return (mask, mask.pixels.filter { $0 > 0 }.count)
    }

    /// A scratch seen in pieces (26 px of a dark one-pixel line, then 4 px where it does not show) is one
    /// scratch: its pieces are grouped across the gaps. The detector before grouping (pieces had to run 40 px)
    /// marked none of it. Expected: tools/reference/defect_synthetic_cases.py (dashed scratch): 132 of the 140
    /// rows of column 100 and 402 pixels in all.
    func testDashedScratchIsFoundAcrossItsGaps() throws {
        let (mask, marked) = try Self.detect(200, 160) { y, x in x == 100 && (10..<150).contains(y) && y % 30 >= 4 ? 40 : 100 + x / 4 }
        XCTAssertEqual((10..<150).filter { mask.pixels[$0 * 200 + 100] > 0 }.count, 132)
        XCTAssertEqual(marked, 402)
    }

    /// Brick mortar is a mesh of thin dark lines, each darker than both sides: its groups have far more line
    /// pixels than their extent, so none is kept (the detector before marked 12124 of its 48000 pixels).
    /// Expected: tools/reference/defect_synthetic_cases.py (brick wall): 0 pixels.
    func testBrickMortarIsNotAScratch() throws {
        let (_, marked) = try Self.detect(240, 200) { y, x in y % 24 < 2 || (x + 16 * (y / 24 % 2)) % 32 < 2 ? 40 : 110 }
        XCTAssertEqual(marked, 0)
    }

    /// A field of stars (3 × 3 light spots every 12 px) is not dust; a speck of the same kind far from it is.
    /// Expected: tools/reference/defect_synthetic_cases.py (star field): 0 pixels in the field (3969 before the
    /// crowding rule), the speck's 49 (7 × 7) and 49 in all.
    func testStarFieldIsNotDust() throws {
        var stars = Set<Int>()
        for i in 0..<9 { for j in 0..<9 {
            let y = 6 + 12 * i + (i * 7 + j * 3) % 5, x = 6 + 12 * j + (j * 5 + i) % 5
            for dy in -1...1 { for dx in -1...1 { stars.insert((y + dy) * 240 + x + dx) } }
        } }
        let (mask, marked) = try Self.detect(240, 120) { y, x in
            stars.contains(y * 240 + x) || ((59...61).contains(y) && (199...201).contains(x)) ? 200 : 30
        }
        XCTAssertEqual((0..<120).reduce(0) { sum, y in sum + (0..<120).filter { mask.pixels[y * 240 + $0] > 0 }.count }, 0)
        XCTAssertEqual((55...65).reduce(0) { sum, y in sum + (195...205).filter { mask.pixels[y * 240 + $0] > 0 }.count }, 49)
        XCTAssertEqual(marked, 49)
    }

    /// On a small photo a scratch cannot run 60 px: groups need half the longer side there (32 px at 64 px).
    /// Expected: tools/reference/defect_synthetic_cases.py (small photo): all 54 rows of the scratch, 168 in all.
    func testScratchOnASmallPhoto() throws {
        let (mask, marked) = try Self.detect(64, 64) { y, x in x == 32 && (5..<59).contains(y) ? 30 : 90 + x + y / 2 }
        XCTAssertEqual((5..<59).filter { mask.pixels[$0 * 64 + 32] > 0 }.count, 54)
        XCTAssertEqual(marked, 168)
    }

    func testTinyAndFlatImagesAndBadThresholds() throws {
        for (w, h) in [(1, 1), (1, 7), (9, 1), (2, 2), (3, 70), (70, 3), (1, 400), (400, 2)] {
            let flat = try PlanarImage8(width: w, height: h, channels: 1, pixels: [UInt8](repeating: 128, count: w * h))
            let mask = try ImageOps.detectDefects(flat)
            XCTAssertEqual(mask.width, w)
            XCTAssertEqual(mask.height, h)
            XCTAssertEqual(mask.pixels.filter { $0 != 0 }.count, 0, "\(w)×\(h) flat")
            var noisy = flat
            for i in 0..<(w * h) { noisy.pixels[i] = UInt8((i &* 2_654_435_761) >> 7 & 255) }
            _ = try ImageOps.detectDefects(noisy)
        }
        let rgb = try PlanarImage8(width: 4, height: 3, channels: 3, pixels: [UInt8](repeating: 9, count: 36))
        XCTAssertEqual(try ImageOps.detectDefects(rgb).pixels.count, 12)
        for bad: Float in [0, -0.1, 1.5, .nan, .infinity] { XCTAssertThrowsError(try ImageOps.detectDefects(rgb, threshold: bad)) }
        let twoChannels = try PlanarImage8(width: 2, height: 2, channels: 2, pixels: [UInt8](repeating: 0, count: 8))
        XCTAssertThrowsError(try ImageOps.detectDefects(twoChannels))
    }

    /// A long one-pixel scratch across a smooth gradient is found over its length; a dust spot is found; a step
    /// edge (detail that is no defect) is not.
    func testScratchSpotAndEdge() throws {
        let w = 160, h = 120
        var pixels = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { pixels[y * w + x] = UInt8(60 + x / 2 + (x > 120 ? 40 : 0)) } }
        for y in 10..<110 { pixels[y * w + 40] = 235 }                             // scratch
        for y in 58...60 { for x in 88...90 { pixels[y * w + x] = 10 } }           // dust
        let mask = try ImageOps.detectDefects(try PlanarImage8(width: w, height: h, channels: 1, pixels: pixels))
        let scratch = (10..<110).filter { mask.pixels[$0 * w + 40] > 0 }.count
        XCTAssertGreaterThanOrEqual(scratch, 95)
        XCTAssertEqual(mask.pixels[59 * w + 89], 1)
        XCTAssertEqual((0..<h).filter { mask.pixels[$0 * w + 121] > 0 }.count, 0, "the step edge")
    }
}
