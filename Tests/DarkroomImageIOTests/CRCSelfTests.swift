import XCTest

final class CRCSelfTests: XCTestCase {
    /// 0xCBF43926 is the published CRC-32/ISO-HDLC check value for "123456789".
    func testCRC32CheckValue() {
        XCTAssertEqual(crc32(Array("123456789".utf8)), 0xCBF4_3926)
    }
}
