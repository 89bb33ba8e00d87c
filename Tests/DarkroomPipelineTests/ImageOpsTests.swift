import DarkroomPipeline
import Foundation
import DarkroomTestSupport
import XCTest

final class ImageOpsTests: XCTestCase {
    typealias F = ImageOpsFixtures

    // MARK: 1. Lanczos (PIL Image.LANCZOS, bit-exact)

    func testLanczosMatchesPIL() throws {
        let cases = try XCTUnwrap(try F.manifest()["resize"] as? [[String: Any]])
        XCTAssertGreaterThanOrEqual(cases.count, 9)
        let cam = try F.camera()
        for c in cases {
            let inW = try XCTUnwrap(c["inW"] as? Int), inH = try XCTUnwrap(c["inH"] as? Int)
            let ch = try XCTUnwrap(c["channels"] as? Int)
            let outW = try XCTUnwrap(c["outW"] as? Int), outH = try XCTUnwrap(c["outH"] as? Int)
            let input: PlanarImage8
            if let crop = c["crop"] as? [Int] {
                input = try F.crop(cam, x: crop[0], y: crop[1], w: crop[2], h: crop[3])
            } else if c["input"] as? String == "camera512.u8" {
                input = cam
            } else {
                input = try F.image(try XCTUnwrap(c["input"] as? String), width: inW, height: inH, channels: ch)
            }
            let out = try ImageOps.resizeLanczos(input, width: outW, height: outH)
            XCTAssertEqual(out.width, outW)
            XCTAssertEqual(out.height, outH)
            let label = "\(c["input"] ?? "") \(inW)x\(inH)x\(ch) -> \(outW)x\(outH)"
            if let name = c["expected"] as? String {
                let d = F.diff(out.interleaved, try F.bytes(name))
                XCTAssertEqual(d.count, 0, "\(label): \(d.count) bytes differ, max \(d.max)")
            } else {
                XCTAssertEqual(F.fnv(out.interleaved), c["expectedHash"] as? String, label)
                XCTAssertEqual(out.pixels.reduce(0) { $0 + Int($1) }, c["expectedSum"] as? Int, label)
            }
            if let legacy = c["legacyHash"] as? String {
                let old = try ImageOps.resizeLanczos(input, width: outW, height: outH, order: .horizontalFirst)
                XCTAssertEqual(F.fnv(old.interleaved), legacy, "\(label) (Pillow <= 12 pass order)")
            }
        }
    }

    func testLanczosIdentityAndFloat() throws {
        let img = try F.crop(try F.camera(), x: 10, y: 20, w: 30, h: 20)
        XCTAssertEqual(try ImageOps.resizeLanczos(img, width: 30, height: 20), img)
        let f = try ImageOps.resizeLanczos(img.floatImage, width: 45, height: 20)
        XCTAssertEqual(f.quantized, try ImageOps.resizeLanczos(img, width: 45, height: 20))
        XCTAssertThrowsError(try ImageOps.resizeLanczos(img, width: 0, height: 5))
    }

    // MARK: 2. A1111 mask blur (cv2.GaussianBlur, bit-exact)

    func testMaskBlurMatchesCV2() throws {
        let cases = try XCTUnwrap(try F.manifest()["blur"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 11)
        for c in cases {
            let w = try XCTUnwrap(c["width"] as? Int), h = try XCTUnwrap(c["height"] as? Int)
            let mask = try F.image(try XCTUnwrap(c["input"] as? String), width: w, height: h, channels: 1)
            let sx = (c["sigma"] as? Double) ?? (c["sigmaX"] as? Double) ?? 0
            let sy = (c["sigma"] as? Double) ?? (c["sigmaY"] as? Double) ?? 0
            let out = try ImageOps.gaussianBlurA1111(mask: mask, radiusX: sx, radiusY: sy)
            let label = "\(c["input"] ?? "") sigma \(sx),\(sy)"
            XCTAssertEqual(F.fnv(out.pixels), c["expectedHash"] as? String, label)
            XCTAssertEqual(out.pixels.reduce(0) { $0 + Int($1) }, c["expectedSum"] as? Int, label)
        }
    }

    func testMaskBlurKernelAndFloat() throws {
        XCTAssertEqual(ImageOps.a1111BlurKernelSize(sigma: 4), 21)
        XCTAssertEqual(ImageOps.a1111BlurKernelSize(sigma: 1), 7)
        let mask = try PlanarImage(width: 9, height: 7, channels: 1, value: 1)
        // A constant mask stays constant (kernel sums to 256/256).
        XCTAssertEqual(try ImageOps.gaussianBlurA1111(mask: mask, radius: 4), mask)
        XCTAssertEqual(try ImageOps.gaussianBlurA1111(mask: mask.quantized, radius: 0), mask.quantized)
        XCTAssertThrowsError(try ImageOps.gaussianBlurA1111(mask: mask, radius: -1))
    }

    // MARK: 3. Crop regions (A1111 get_crop_region_v2 + expand_crop_region, diffusers get_crop_region)

    func testCropRegionsMatchPythonPorts() throws {
        let cases = try XCTUnwrap(try F.manifest()["crop"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 7 * 3 * 4)
        for c in cases {
            let w = try XCTUnwrap(c["width"] as? Int), h = try XCTUnwrap(c["height"] as? Int)
            let name = try XCTUnwrap(c["mask"] as? String)
            let bits = try F.bits(name, count: w * h)
            let mask = try PlanarImage8(width: w, height: h, channels: 1, pixels: bits.map { $0 * 255 })
            let pad = try XCTUnwrap(c["pad"] as? Int)
            let pw = try XCTUnwrap(c["procW"] as? Int), ph = try XCTUnwrap(c["procH"] as? Int)
            func box(_ v: Any?) -> CropBox? {
                guard let a = v as? [Int], a.count == 4 else { return nil }
                return CropBox(x1: a[0], y1: a[1], x2: a[2], y2: a[3])
            }
            let label = "\(name) pad \(pad) \(pw)x\(ph)"
            let raw = try ImageOps.cropRegion(mask: mask, padding: pad)
            XCTAssertEqual(raw, box(c["a1111Crop"]), label)
            XCTAssertEqual(try ImageOps.cropRegion(mask: mask.floatImage, padding: pad), raw, label)
            XCTAssertEqual(try ImageOps.a1111InpaintRegion(mask: mask, padding: pad, processingWidth: pw,
                                                           processingHeight: ph), box(c["a1111Expanded"]), label)
            XCTAssertEqual(try ImageOps.diffusersCropRegion(mask: mask, width: pw, height: ph, padding: pad),
                           box(c["diffusers"]), label)
        }
    }

    func testExpandCropRegionExamples() throws {
        // A1111's docstring example: a 128x32 region processed at 512x512 becomes 128x128.
        let e = try ImageOps.expandCropRegion(CropBox(x1: 100, y1: 200, x2: 228, y2: 232), processingWidth: 512,
                                              processingHeight: 512, imageWidth: 1024, imageHeight: 1024)
        XCTAssertEqual(e, CropBox(x1: 100, y1: 152, x2: 228, y2: 280))
        XCTAssertThrowsError(try ImageOps.expandCropRegion(CropBox(x1: 0, y1: 0, x2: 0, y2: 5), processingWidth: 1,
                                                           processingHeight: 1, imageWidth: 5, imageHeight: 5))
    }

    // MARK: 5. Defect mask (top-hats = skimage exactly; detection recall / false positives)

    func defectImage() throws -> (damaged: PlanarImage8, drawn: [UInt8], visible: [UInt8], d: [String: Any]) {
        let d = try XCTUnwrap(try F.manifest()["defects"] as? [String: Any])
        let w = try XCTUnwrap(d["width"] as? Int), h = try XCTUnwrap(d["height"] as? Int)
        var img = try F.image(try XCTUnwrap(d["clean"] as? String), width: w, height: h, channels: 1)
        let n = w * h
        let drawn = try F.bits(try XCTUnwrap(d["drawn"] as? String), count: n)
        let visible = try F.bits(try XCTUnwrap(d["visible"] as? String), count: n)
        let values = try F.bytes(try XCTUnwrap(d["values"] as? String))
        var k = 0
        for i in 0..<n where drawn[i] != 0 {
            img.pixels[i] = values[k]
            k += 1
        }
        XCTAssertEqual(k, values.count)
        return (img, drawn, visible, d)
    }

    func testTopHatsMatchSkimage() throws {
        let (img, _, _, d) = try defectImage()
        let lum = img.pixels.map { Float($0) / 255 }
        let size = try XCTUnwrap(d["footprint"] as? Int)
        let w = try ImageOps.whiteTopHat(lum, width: img.width, height: img.height, size: size)
        let b = try ImageOps.blackTopHat(lum, width: img.width, height: img.height, size: size)
        XCTAssertEqual(F.fnv(w), d["whiteTopHatHash"] as? String)
        XCTAssertEqual(F.fnv(b), d["blackTopHatHash"] as? String)
        XCTAssertEqual(w.reduce(0.0) { $0 + Double($1) }, try XCTUnwrap(d["whiteTopHatSum"] as? Double), accuracy: 1e-6)
        XCTAssertEqual(b.reduce(0.0) { $0 + Double($1) }, try XCTUnwrap(d["blackTopHatSum"] as? Double), accuracy: 1e-6)
    }

    func testDefectMaskDetectsScratchesAndDust() throws {
        let (img, drawn, visible, d) = try defectImage()
        let mask = try ImageOps.defectMask(image: img, threshold: 0.12, maxWidth: 5, dilation: 1)
        // Same pipeline in skimage (threshold, 3x3 dilation): identical mask.
        let expected = try F.bits(try XCTUnwrap(d["expectedMask"] as? String), count: img.planeSize)
        XCTAssertEqual(mask.pixels.map { UInt8($0) }, expected)
        // Recall over visibly drawn defect pixels; false positives over pixels > 1 px away from any drawn pixel.
        let w = img.width, h = img.height
        var near = [Bool](repeating: false, count: w * h)
        for y in 0..<h { for x in 0..<w where drawn[y * w + x] != 0 {
            for yy in max(0, y - 1)...min(h - 1, y + 1) { for xx in max(0, x - 1)...min(w - 1, x + 1) { near[yy * w + xx] = true } }
        } }
        var tp = 0, vis = 0, fp = 0, clean = 0, fpAll = 0, cleanAll = 0
        for i in 0..<(w * h) {
            let on = mask.pixels[i] != 0
            if visible[i] != 0 { vis += 1; if on { tp += 1 } }
            if drawn[i] == 0 { cleanAll += 1; if on { fpAll += 1 } }
            if !near[i] { clean += 1; if on { fp += 1 } }
        }
        let recall = Double(tp) / Double(vis), fpr = Double(fp) / Double(clean), fprAll = Double(fpAll) / Double(cleanAll)
        print(String(format: "defectMask: recall %.4f (%d/%d), FP %.4f (%d/%d) beyond the 1-px ring, %.4f counting the ring",
                     recall, tp, vis, fpr, fp, clean, fprAll))
        XCTAssertGreaterThanOrEqual(recall, 0.9)
        XCTAssertLessThanOrEqual(fpr, 0.02)
        // The float entry (float luminance of a grey image) gives the same mask.
        XCTAssertEqual(try ImageOps.defectMask(image: img.floatImage), mask)
    }

    // MARK: 6. Levels / grayscale

    func testPercentilesMatchNumpy() throws {
        let l = try XCTUnwrap(try F.manifest()["levels"] as? [String: Any])
        let qs = try XCTUnwrap(l["floatQuantiles"] as? [Double])
        let vals = try XCTUnwrap(l["floatValues"] as? [Double]).map { Float($0) }
        let fExp = try XCTUnwrap(l["floatPercentiles"] as? [Double])
        let uExp = try XCTUnwrap(l["u8Percentiles"] as? [Double])
        let faded = try F.image(try XCTUnwrap(l["input"] as? String), width: 64, height: 64, channels: 3)
        var hist = [Int](repeating: 0, count: 256)
        for v in faded.pixels[0..<faded.planeSize] { hist[Int(v)] += 1 }
        for (i, q) in qs.enumerated() {
            XCTAssertEqual(ImageOps.percentile(vals, q: q), Float(fExp[i]), "float32 q=\(q)")
            XCTAssertEqual(ImageOps.percentile(histogram: hist, q: q), uExp[i], "uint8 q=\(q)")
        }
    }

    func testAutoLevelsMatchNumpy() throws {
        let l = try XCTUnwrap(try F.manifest()["levels"] as? [String: Any])
        let faded = try F.image(try XCTUnwrap(l["input"] as? String), width: 64, height: 64, channels: 3)
        let per = try ImageOps.autoLevels(faded, low: 0.5, high: 99.5, mode: .perChannel)
        XCTAssertEqual(F.fnv(per.interleaved), l["perChannelHash"] as? String)
        let lum = try ImageOps.autoLevels(faded, mode: .luminance)
        XCTAssertEqual(F.fnv(lum.interleaved), l["luminanceHash"] as? String)
        // Float version: stretches to the full range.
        let f = try ImageOps.autoLevels(faded.floatImage)
        XCTAssertEqual(f.pixels.min(), 0)
        XCTAssertEqual(f.pixels.max(), 1)
    }

    func testGrayscale() throws {
        let l = try XCTUnwrap(try F.manifest()["levels"] as? [String: Any])
        let astro = try F.image("astro64.u8", width: 64, height: 64, channels: 3)
        let g = try ImageOps.toGrayscale(astro)
        XCTAssertEqual(g.pixels, try F.bytes(try XCTUnwrap(l["gray"] as? String)))
        XCTAssertFalse(ImageOps.isGrayscale(astro))
        var rgb = try PlanarImage8(width: 64, height: 64, channels: 3, pixels: g.pixels + g.pixels + g.pixels)
        XCTAssertTrue(ImageOps.isGrayscale(rgb))
        rgb.pixels[5] = rgb.pixels[5] < 255 ? rgb.pixels[5] + 1 : 254
        XCTAssertTrue(ImageOps.isGrayscale(rgb))
        rgb.pixels[5] = rgb.pixels[5] < 250 ? rgb.pixels[5] + 5 : 200
        XCTAssertFalse(ImageOps.isGrayscale(rgb))
        XCTAssertTrue(ImageOps.isGrayscale(g))
    }
}
