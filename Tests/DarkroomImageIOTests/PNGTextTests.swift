import DarkroomImageIO
import XCTest

final class PNGTextTests: XCTestCase {
    var image: Image!

    override func setUpWithError() throws {
        // 2x2 RGB, values 0...11: arbitrary, only the text matters here.
        image = try Image(width: 2, height: 2, layout: .rgb, bitDepth: 8, samples: [UInt16](0..<12))
    }

    /// An A1111-style "parameters" value with non-Latin-1 characters forces iTXt,
    /// a Latin-1 value with an accent stays tEXt (PIL's PngInfo.add_text rule).
    func testTEXtAndITXtRoundTrip() throws {
        let parameters = "a photo of a cat \u{732B}, \u{1F408}\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7"
        let text: [(key: String, value: String)] = [
            (key: "parameters", value: parameters),
            (key: "Title", value: "caf\u{e9}"),
            (key: "Caf\u{e9}", value: "Latin-1 key"),
        ]
        let png = try PNGEncoder.encode(image, text: text)
        let chunks = pngChunks(png).filter { $0.type == "tEXt" || $0.type == "iTXt" }
        XCTAssertEqual(chunks.map(\.type), ["iTXt", "tEXt", "tEXt"])
        // iTXt layout as PIL's add_itxt writes it uncompressed:
        // keyword NUL, compression flag 0, method 0, empty language NUL, empty translated keyword NUL, UTF-8 text.
        XCTAssertEqual(chunks.first?.data, Array("parameters".utf8) + [0, 0, 0, 0, 0] + Array(parameters.utf8))
        // tEXt: Latin-1 keyword NUL Latin-1 text (0xE9 is e-acute in Latin-1).
        XCTAssertEqual(chunks.dropFirst().first?.data, Array("Title".utf8) + [0] + [0x63, 0x61, 0x66, 0xE9])

        let decoded = try ImageDecoder.decode(data: png, name: "text.png")
        XCTAssertEqual(decoded.textChunks, ["parameters": parameters, "Title": "caf\u{e9}", "Caf\u{e9}": "Latin-1 key"])
        XCTAssertEqual(decoded.image, image)
    }

    func testKeyLengthLimits() throws {
        // PNG spec: keywords are 1-79 bytes.
        let key79 = String(repeating: "k", count: 79)
        XCTAssertEqual(try ImageDecoder.decode(data: try PNGEncoder.encode(image, text: [(key: key79, value: "v")]),
                                               name: "k79.png").textChunks, [key79: "v"])
        for bad in ["", String(repeating: "k", count: 80)] {
            let error = assertImageIOError(try PNGEncoder.encode(image, text: [(key: bad, value: "v")]))
            guard case .invalidTextChunk(_, let key, _)? = error else { return XCTFail("got \(String(describing: error))") }
            XCTAssertEqual(key, bad)
        }
    }

    func testInvalidKeysAndValuesAreRejected() {
        let cases: [(String, String)] = [
            ("\u{732B}", "v"),          // not Latin-1
            (" lead", "v"),             // leading space
            ("trail ", "v"),            // trailing space
            ("two  spaces", "v"),       // consecutive spaces
            ("tab\tkey", "v"),          // control character
            ("ok", "nul\u{0}inside"),   // NUL cannot be stored in tEXt/iTXt text
        ]
        for (key, value) in cases {
            let error = assertImageIOError(try PNGEncoder.encode(image, text: [(key: key, value: value)]))
            guard case .invalidTextChunk? = error else { return XCTFail("\(key): got \(String(describing: error))") }
        }
    }
}
