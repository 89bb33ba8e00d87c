// libFuzzer target: the image decoders (tools/fuzz image): `ImageDecoder.decode` with the service's default
// limits — format sniffing, PNG (libpng, all bit depths/colour types, interlacing, tRNS, text chunks) and JPEG
// (libjpeg, gray/RGB/CMYK/YCCK, progressive), EXIF orientation parsing and the transpose.
// The input is the file's bytes.
import DarkroomImageIO
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    if let decoded = try? ImageDecoder.decode(data: bytes, name: "fuzz", limits: .default) {
        let image = decoded.image
        precondition(image.samples.count == image.width * image.height * image.layout.channels)
    }
    return 0
}
