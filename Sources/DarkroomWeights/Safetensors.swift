import DarkroomTensor
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's header entry, validated.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    /// Dimensions; `[]` is a scalar (one element), any 0 makes an empty tensor.
    public let shape: [Int]
    /// Absolute byte range of the tensor's data in the file (header offset included).
    public let dataRange: Range<Int>
    private let count: Int

    init(name: String, dtype: DType, shape: [Int], dataRange: Range<Int>, elementCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
        self.count = elementCount
    }

    /// product(shape); checked against overflow when the file was opened.
    public var elementCount: Int { count }
    /// `dataRange.count`, equal to `elementCount * dtype.byteSize`.
    public var byteCount: Int { dataRange.count }
}

/// A safetensors file, memory-mapped read-only and fully validated on open.
///
/// Validation policy (stricter-or-equal to the official Rust crate, so every file it
/// accepts we accept too, and vice versa for the checks listed):
/// - 8-byte little-endian header length N; N ≤ 100,000,000 and 8 + N ≤ file size; N > 0.
/// - The header is valid UTF-8 and a JSON object; `__metadata__` (optional, may be null) is
///   an object of strings; every other key is a tensor with a known `dtype` string, a
///   `shape` of non-negative integers and `data_offsets` of two non-negative integers
///   (JSON integers only: `1.0`, `1e3`, `true` are rejected).
/// - begin ≤ end ≤ data section size; end − begin == product(shape) × dtype size, with
///   overflow detected.
/// - **Tensors must tile the data section exactly**, like the Rust crate: sorted by offset,
///   each tensor starts where the previous one ended (overlap → `.overlappingTensors`,
///   hole → `.gapInDataSection`), the first starts at 0 and the last ends at the end of the
///   file (**trailing bytes are rejected** → `.trailingBytes`; the official loader refuses
///   such files too, so no legitimate writer produces them). Zero-byte tensors may sit at
///   any boundary.
///
/// Reading is thread-safe: the object is immutable after `init`, and the mapping lives
/// until `deinit`. Limitation of any mmap reader: if another process truncates the file
/// while it is open, touching the lost pages raises SIGBUS. Writers in this package never
/// modify a file in place (they rename a new file over it), which is safe.
public final class SafetensorsFile: @unchecked Sendable {
    /// The official library's header-size limit.
    public static let maxHeaderSize = 100_000_000

    public let url: URL
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let tensorNames: [String]
    /// Size of the whole file in bytes.
    public let fileSize: Int
    /// Header JSON length N (the data section starts at 8 + N).
    public let headerLength: Int

    /// Which file this mapping is: device, inode, size and modification time (`ScanRecord`'s key).
    public let identity: String
    /// The tensors known to hold no NaN/inf (`Checkpoint` scans each once, and records it for later processes).
    let scanRecord: ScanRecord
    /// The packed copies of this file's weights kept between processes (bf16 mode), opened on first use.
    let packedStore: LazyPackedWeightStore

    private let base: UnsafeRawPointer
    private let tensors: [String: TensorInfo]
    private let path: String

    public init(url: URL) throws {
        let path = url.path
        let (base, size, identity) = try SafetensorsFile.mapFile(path: path)
        let parsed: ParsedHeader
        do {
            parsed = try SafetensorsFile.parseAndValidate(UnsafeRawBufferPointer(start: base, count: size), path: path)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
            throw error
        }
        self.url = url
        self.path = path
        self.base = base
        self.fileSize = size
        self.headerLength = parsed.headerLength
        self.metadata = parsed.metadata
        self.tensors = parsed.tensors
        self.tensorNames = parsed.tensors.keys.sorted()
        self.identity = identity
        scanRecord = ScanRecord(file: path, identity: identity)
        packedStore = LazyPackedWeightStore(file: path, identity: identity)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), fileSize)
    }

    /// Whether a tensor of that name exists.
    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    /// All tensor infos in name order.
    public var tensorInfos: [TensorInfo] { tensorNames.compactMap { tensors[$0] } }

    public func info(_ name: String) throws -> TensorInfo {
        guard let info = tensors[name] else {
            throw WeightsError.tensorNotFound(path: path, tensor: name)
        }
        return info
    }

    /// The tensor's values as Float (F32, F16, BF16, F64, F8_E4M3, F8_E5M2).
    public func floats(_ name: String) throws -> [Float] {
        let info = try floatInfo(name)
        let n = info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            if let dst = buffer.baseAddress, n > 0 {
                decode(info, into: dst)
            }
            initialized = n
        }
    }

    /// Same as `floats(_:)` into caller-provided storage, whose count must equal the
    /// tensor's element count.
    public func floats(_ name: String, into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let info = try floatInfo(name)
        guard buffer.count == info.elementCount else {
            throw WeightsError.bufferSizeMismatch(path: path, tensor: name, expected: info.elementCount, actual: buffer.count)
        }
        if let dst = buffer.baseAddress, buffer.count > 0 {
            decode(info, into: dst)
        }
    }

    /// Calls `body` with the tensor's bytes, straight from the mapping (no copy; any
    /// alignment — use `loadUnaligned`). The pointer must not escape `body`.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(name)
        return try withExtendedLifetime(self) {
            try body(UnsafeRawBufferPointer(start: base + info.dataRange.lowerBound, count: info.dataRange.count))
        }
    }

    /// The tensor as a `Weight`: F16/BF16 and F32 borrowed from the mapping (no copy; the weight keeps this file
    /// mapped, and its pages can leave the resident set while unused, see `dropResidentPages`); other float types,
    /// and F32 data the header places at an address that is not a multiple of 4, converted to an owned tensor.
    public func weight(_ name: String) throws -> Weight {
        let info = try floatInfo(name)
        let start = base + info.dataRange.lowerBound
        switch info.dtype {
        case .f16, .bf16:
            return Weight(shape: info.shape, format: info.dtype == .f16 ? .float16 : .bfloat16, borrowing: start, owner: self)
        case .f32 where Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0 && 1.littleEndian == 1:
            return Weight(Tensor(shape: info.shape, borrowing: start.assumingMemoryBound(to: Float.self), owner: self))
        default:
            return Weight(try Tensor(shape: info.shape) { try floats(name, into: $0) })
        }
    }

    // MARK: - Private

    private func floatInfo(_ name: String) throws -> TensorInfo {
        let info = try info(name)
        guard info.dtype.isFloatingPoint else {
            throw WeightsError.notFloatingPoint(path: path, tensor: name, dtype: info.dtype)
        }
        return info
    }

    private func decode(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>) {
        let src = base + info.dataRange.lowerBound
        if info.byteCount >= SafetensorsFile.prefetchThreshold {
            prefetch(info.dataRange)
        }
        withExtendedLifetime(self) {
            FloatConversion.decode(info.dtype, from: src, into: dst, count: info.elementCount)
        }
    }

    static let prefetchThreshold = 4 << 20

    /// Asks the kernel to read ahead the pages of a large tensor. Purely advisory: errors
    /// are ignored.
    private func prefetch(_ range: Range<Int>) {
        let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
        let start = range.lowerBound / page * page
        let length = range.upperBound - start
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), length, MADV_WILLNEED)
    }

    /// Takes the whole pages inside `range` (bytes of the file) out of this process's resident set. The mapping is
    /// read-only, so nothing is lost: the next access maps them again from the page cache, or reads the disk.
    /// Advisory: errors are ignored.
    public func dropResidentPages(_ range: Range<Int>) {
        let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
        let start = (range.lowerBound + page - 1) / page * page, end = min(range.upperBound, fileSize) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// open + fstat + mmap(PROT_READ, MAP_PRIVATE). The descriptor is closed before return.
    private static func mapFile(path: String) throws -> (UnsafeRawPointer, Int, String) {
        // O_NONBLOCK so that opening a FIFO cannot hang; it has no effect on regular files.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let err = errno
            if err == ENOENT { throw WeightsError.fileNotFound(path: path) }
            throw WeightsError.cannotOpen(path: path, errno: err)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw WeightsError.cannotOpen(path: path, errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw WeightsError.notRegularFile(path: path)
        }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw WeightsError.fileTooShort(path: path, fileSize: size)
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw WeightsError.mapFailed(path: path, errno: errno)
        }
        let identity = "\(st.st_dev):\(st.st_ino):\(size):\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
        return (UnsafeRawPointer(mapped), size, identity)
    }

    // MARK: - Header parsing and validation

    struct ParsedHeader {
        var headerLength: Int
        var metadata: [String: String]
        var tensors: [String: TensorInfo]
    }

    /// Validates a complete safetensors image (`file` is the whole file).
    static func parseAndValidate(_ file: UnsafeRawBufferPointer, path: String) throws -> ParsedHeader {
        let size = file.count
        guard size >= 8 else { throw WeightsError.fileTooShort(path: path, fileSize: size) }
        let declared = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(maxHeaderSize) else {
            throw WeightsError.headerTooLarge(path: path, headerLength: declared, limit: maxHeaderSize)
        }
        let n = Int(declared)
        guard n <= size - 8 else {
            throw WeightsError.headerLengthPastEndOfFile(path: path, headerLength: declared, fileSize: size)
        }
        guard n > 0 else { throw WeightsError.headerEmpty(path: path) }
        let headerBytes = UnsafeRawBufferPointer(rebasing: file[8 ..< 8 + n])
        let dataStart = 8 + n
        let dataSize = size - dataStart

        let object = try parseJSONObject(headerBytes, path: path)

        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int, count: Int)] = []
        entries.reserveCapacity(object.count)
        for key in object.keys.sorted() {
            guard let value = object[key] else { continue }
            if key == "__metadata__" {
                metadata = try parseMetadata(value, path: path)
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw WeightsError.invalidTensorEntry(path: path, tensor: key, detail: "the entry is \(jsonKind(value)), not an object")
            }
            // dtype
            guard let dtypeValue = entry["dtype"] else {
                throw WeightsError.invalidTensorEntry(path: path, tensor: key, detail: "the \"dtype\" field is missing")
            }
            guard let dtypeString = dtypeValue as? String else {
                throw WeightsError.invalidTensorEntry(path: path, tensor: key, detail: "\"dtype\" is \(jsonKind(dtypeValue)), not a string")
            }
            guard let dtype = DType(rawValue: dtypeString) else {
                throw WeightsError.unknownDType(path: path, tensor: key, dtype: dtypeString)
            }
            // shape
            guard let shapeValue = entry["shape"] else {
                throw WeightsError.invalidShape(path: path, tensor: key, detail: "the \"shape\" field is missing")
            }
            guard let shapeArray = shapeValue as? [Any] else {
                throw WeightsError.invalidShape(path: path, tensor: key, detail: "\"shape\" is \(jsonKind(shapeValue)), not an array")
            }
            var shape: [Int] = []
            shape.reserveCapacity(shapeArray.count)
            for (i, d) in shapeArray.enumerated() {
                guard let dim = jsonInteger(d), dim >= 0 else {
                    throw WeightsError.invalidShape(path: path, tensor: key, detail: "dimension \(i) is \(jsonDescription(d)), not a non-negative integer")
                }
                shape.append(dim)
            }
            // data_offsets
            guard let offsetsValue = entry["data_offsets"] else {
                throw WeightsError.invalidDataOffsets(path: path, tensor: key, detail: "the \"data_offsets\" field is missing")
            }
            guard let offsets = offsetsValue as? [Any] else {
                throw WeightsError.invalidDataOffsets(path: path, tensor: key, detail: "\"data_offsets\" is \(jsonKind(offsetsValue)), not an array")
            }
            guard offsets.count == 2 else {
                throw WeightsError.invalidDataOffsets(path: path, tensor: key, detail: "expected 2 integers, found \(offsets.count) elements")
            }
            guard let begin = jsonInteger(offsets[0]), begin >= 0 else {
                throw WeightsError.invalidDataOffsets(path: path, tensor: key, detail: "begin is \(jsonDescription(offsets[0])), not a non-negative integer")
            }
            guard let end = jsonInteger(offsets[1]), end >= 0 else {
                throw WeightsError.invalidDataOffsets(path: path, tensor: key, detail: "end is \(jsonDescription(offsets[1])), not a non-negative integer")
            }
            guard begin <= end else {
                throw WeightsError.dataOffsetsReversed(path: path, tensor: key, begin: begin, end: end)
            }
            guard end <= dataSize else {
                throw WeightsError.dataOffsetsPastEnd(path: path, tensor: key, end: end, dataSectionSize: dataSize)
            }
            // size
            var count = 1
            var overflow = false
            for dim in shape where !overflow {
                (count, overflow) = count.multipliedReportingOverflow(by: dim)
            }
            var bytes = 0
            if !overflow { (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize) }
            guard !overflow else {
                throw WeightsError.tensorSizeOverflow(path: path, tensor: key, shape: shape, dtype: dtype)
            }
            guard end - begin == bytes else {
                throw WeightsError.byteCountMismatch(path: path, tensor: key, dtype: dtype, shape: shape, expectedBytes: bytes, actualBytes: end - begin)
            }
            entries.append((key, dtype, shape, begin, end, count))
        }

        // Coverage: the tensors must tile 0..<dataSize exactly.
        entries.sort { a, b in
            if a.begin != b.begin { return a.begin < b.begin }
            if a.end != b.end { return a.end < b.end }
            return a.name < b.name
        }
        var cursor = 0
        var previous: (name: String, begin: Int, end: Int)? = nil
        var tensors: [String: TensorInfo] = [:]
        tensors.reserveCapacity(entries.count)
        for e in entries {
            if e.begin < cursor, let p = previous {
                throw WeightsError.overlappingTensors(path: path, tensor: e.name, range: e.begin ..< e.end, other: p.name, otherRange: p.begin ..< p.end)
            }
            if e.begin > cursor {
                throw WeightsError.gapInDataSection(path: path, gap: cursor ..< e.begin, after: previous?.name, before: e.name)
            }
            if previous == nil || e.end > cursor {
                previous = (e.name, e.begin, e.end)
            }
            cursor = max(cursor, e.end)
            tensors[e.name] = TensorInfo(name: e.name, dtype: e.dtype, shape: e.shape,
                                         dataRange: dataStart + e.begin ..< dataStart + e.end, elementCount: e.count)
        }
        guard cursor == dataSize else {
            throw WeightsError.trailingBytes(path: path, dataEnd: cursor, dataSectionSize: dataSize)
        }
        return ParsedHeader(headerLength: n, metadata: metadata, tensors: tensors)
    }

    private static func parseJSONObject(_ bytes: UnsafeRawBufferPointer, path: String) throws -> [String: Any] {
        // Validate UTF-8 ourselves: JSONSerialization guesses encodings (UTF-16/32) from
        // the first bytes, which the format does not allow.
        let valid = bytes.withMemoryRebound(to: UInt8.self) { String(validating: $0, as: UTF8.self) != nil }
        guard valid else {
            throw WeightsError.headerNotUTF8(path: path, byteOffset: firstInvalidUTF8Offset(bytes))
        }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let ns = error as NSError
            let detail = (ns.userInfo[NSDebugDescriptionErrorKey] as? String) ?? ns.localizedDescription
            throw WeightsError.headerNotJSON(path: path, detail: detail)
        }
        guard let object = parsed as? [String: Any] else {
            throw WeightsError.headerNotObject(path: path, found: jsonKind(parsed))
        }
        return object
    }

    private static func parseMetadata(_ value: Any, path: String) throws -> [String: String] {
        if value is NSNull { return [:] }
        guard let dict = value as? [String: Any] else {
            throw WeightsError.invalidMetadata(path: path, detail: "it is \(jsonKind(value)), not an object")
        }
        var result: [String: String] = [:]
        result.reserveCapacity(dict.count)
        for (k, v) in dict {
            guard let s = v as? String else {
                throw WeightsError.invalidMetadata(path: path, detail: "the value of '\(k)' is \(jsonKind(v)), not a string")
            }
            result[k] = s
        }
        return result
    }
}

// MARK: - JSON helpers

/// The value as Int if it is a JSON integer (not a float such as 1.0 or 1e3, not a boolean).
func jsonInteger(_ value: Any) -> Int? {
    guard let number = value as? NSNumber else { return nil }
    switch UInt8(bitPattern: number.objCType.pointee) {
    case UInt8(ascii: "c"), UInt8(ascii: "B"), UInt8(ascii: "d"), UInt8(ascii: "f"):
        return nil // booleans and floating-point literals
    case UInt8(ascii: "Q"), UInt8(ascii: "L"), UInt8(ascii: "I"), UInt8(ascii: "S"), UInt8(ascii: "C"):
        return Int(exactly: number.uint64Value)
    default:
        return Int(exactly: number.int64Value)
    }
}

private func isBooleanNumber(_ number: NSNumber) -> Bool {
    let t = UInt8(bitPattern: number.objCType.pointee)
    return t == UInt8(ascii: "c") || t == UInt8(ascii: "B")
}

/// "an array", "a string", ... for error messages.
func jsonKind(_ value: Any) -> String {
    switch value {
    case is NSNull: return "null"
    case is String: return "a string"
    case is [Any]: return "an array"
    case is [String: Any]: return "an object"
    case let n as NSNumber: return isBooleanNumber(n) ? "a boolean" : "a number"
    default: return "a \(type(of: value))"
    }
}

/// Short rendering of a JSON scalar for error messages.
func jsonDescription(_ value: Any) -> String {
    switch value {
    case is NSNull: return "null"
    case let s as String: return "\"\(s.prefix(40))\""
    case let n as NSNumber: return isBooleanNumber(n) ? (n.boolValue ? "true" : "false") : n.stringValue
    default: return jsonKind(value)
    }
}

/// Offset of the first byte that breaks UTF-8 decoding (only called on invalid input).
func firstInvalidUTF8Offset(_ bytes: UnsafeRawBufferPointer) -> Int {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var offset = 0
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar): offset += UTF8.width(scalar)
        case .emptyInput: return offset
        case .error: return offset
        }
    }
}

extension SafetensorsFile: PackedWeightSource {
    /// The store of this file's packed copies (nil when `PackedWeightStore.folder` is not set).
    public var packedWeights: PackedWeightStore? { packedStore.value }

    /// This file's store of packed copies (bf16 mode), opened on first use when `PackedWeightStore.folder` is set.
    public func packedWeightStore(for pointer: UnsafeRawPointer) -> (store: PackedWeightStore, offset: Int)? {
        let offset = pointer - base
        guard offset >= 0, offset < fileSize, let store = packedStore.value else { return nil }
        return (store, offset)
    }
}

/// A `PackedWeightStore` opened the first time a weight asks for it (if `PackedWeightStore.folder` is set then).
final class LazyPackedWeightStore: @unchecked Sendable {
    private let file: String, identity: String
    private let lock = NSLock()
    private var opened = false
    private var store: PackedWeightStore?

    init(file: String, identity: String) { self.file = file; self.identity = identity }

    var value: PackedWeightStore? {
        lock.withLock {
            if !opened {
                opened = true
                store = PackedWeightStore.folder == nil ? nil : PackedWeightStore(file: file, identity: identity)
            }
            return store
        }
    }
}

extension SafetensorsFile: ReloadablePages {
    /// `dropResidentPages` for a pointer into the mapping (a borrowed weight's elements); others are ignored.
    public func releasePages(_ pointer: UnsafeRawPointer, byteCount: Int) {
        let offset = pointer - base
        guard offset >= 0, byteCount > 0, offset <= fileSize - byteCount else { return }
        dropResidentPages(offset..<(offset + byteCount))
    }
}
