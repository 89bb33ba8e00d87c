import Foundation

/// A value of a `torch.save` pickle, as far as `TorchZipFile` understands one.
public indirect enum TorchValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple([TorchValue])
    case list([TorchValue])
    /// A dict or `collections.OrderedDict`, in insertion order.
    case dict([(key: TorchValue, value: TorchValue)])
    case tensor(TorchTensor)
    /// Only as an argument: `torch.FloatStorage` etc. or a function named by `GLOBAL`.
    case global(String)
    /// A persistent id `('storage', type, key, location, numel)` resolved to the file's storage.
    case storage(TorchStorage)

    /// The value under a string key of a dict.
    public subscript(key: String) -> TorchValue? {
        guard case .dict(let items) = self else { return nil }
        return items.last { if case .string(key) = $0.key { return true } else { return false } }?.value
    }
}

/// One storage of the archive: `data/<key>`, elements of `dtype`.
public struct TorchStorage: Sendable {
    public let key: String
    public let dtype: DType
    public let count: Int
}

/// A tensor rebuilt from its storage (`torch._utils._rebuild_tensor_v2`), converted to Float.
public struct TorchTensor: Sendable {
    public let shape: [Int]
    public let dtype: DType
    public let values: [Float]
}

/// A restricted reader of the zip files `torch.save` writes (`.pt`, `.bin`, `.ckpt` since torch 1.6) that
/// only accepts what a dictionary of tensors needs. Python's unpickler runs any function a file names;
/// this one is a small stack machine over the protocol-2 opcodes `torch.save` emits that knows exactly
/// these globals, and nothing is ever called:
///
/// - `torch._utils._rebuild_tensor_v2` (and `_rebuild_parameter`, which wraps one), rebuilt here from
///   the storage bytes with its offset, size and stride, every index bounds-checked;
/// - `collections.OrderedDict` (an empty one, as torch passes for backward hooks);
/// - `torch.FloatStorage`, `torch.HalfStorage`, `torch.BFloat16Storage`, `torch.DoubleStorage` as the
///   storage type of a persistent id.
///
/// Any other global, opcode or shape is refused with its name and byte offset (`TorchZipFile.Error`).
/// The zip must be stored (uncompressed, as torch writes it); little-endian data only.
/// Format references: CPython `Lib/pickle.py` and `Lib/pickletools.py` (opcodes), PyTorch
/// `torch/serialization.py` (`_save`, `persistent_id`) and `torch/_utils.py` (`_rebuild_tensor_v2`).
public struct TorchZipFile {
    /// The largest file read (embeddings are kilobytes; checkpoints must be safetensors).
    public static let maxFileSize = 64 << 20
    static let maxRank = 8

    public struct Error: Swift.Error, Sendable, Equatable, CustomStringConvertible {
        public let path: String
        /// What part of the file: `zip`, `data.pkl at byte N`, `data/0`…
        public let field: String
        public let problem: String
        public var description: String { "'\(path)' (\(field)): \(problem)" }
    }

    public let path: String
    let bytes: [UInt8]
    /// name → byte range of the stored entry.
    let entries: [String: Range<Int>]
    let prefix: String
    /// The unpickled top-level object.
    public private(set) var root: TorchValue = .none

    public init(url: URL) throws {
        var info = stat()
        guard stat(url.path, &info) == 0 else {
            throw Error(path: url.path, field: "file", problem: "cannot be read: \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Error(path: url.path, field: "file", problem: "is not a regular file") }
        guard Int(info.st_size) <= Self.maxFileSize else {
            throw Error(path: url.path, field: "file", problem: "is \(info.st_size) bytes; at most \(Self.maxFileSize) are read")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw Error(path: url.path, field: "file", problem: "cannot be read: \(error.localizedDescription)")
        }
        try self.init(bytes: [UInt8](data), path: url.path)
    }

    public init(bytes: [UInt8], path: String) throws {
        self.path = path
        self.bytes = bytes
        if bytes.count >= 2, bytes[0] == 0x80 {
            throw Error(path: path, field: "file", problem: "is a legacy (torch < 1.6) pickle, not a torch zip file; load it with torch and save it again, or convert it to .safetensors")
        }
        entries = try Self.readCentralDirectory(bytes, path: path)
        let pickles = entries.keys.filter { $0 == "data.pkl" || $0.hasSuffix("/data.pkl") }
        guard pickles.count == 1, let pickle = pickles.first, let range = entries[pickle] else {
            throw Error(path: path, field: "zip", problem: "holds \(pickles.count) data.pkl entries; a torch.save file holds one")
        }
        prefix = String(pickle.dropLast("data.pkl".count))
        if let order = entries[prefix + "byteorder"], String(decoding: bytes[order], as: UTF8.self) != "little" {
            throw Error(path: path, field: "byteorder", problem: "is '\(String(decoding: bytes[order], as: UTF8.self))'; only little-endian files are read")
        }
        var machine = Unpickler(bytes: bytes, range: range, file: self)
        root = try machine.run()
    }

    // MARK: Zip

    static func readCentralDirectory(_ b: [UInt8], path: String) throws -> [String: Range<Int>] {
        func fail(_ problem: String) -> Error { Error(path: path, field: "zip", problem: problem) }
        func u16(_ at: Int) throws -> Int {
            guard at >= 0, at + 2 <= b.count else { throw fail("truncated (a record at byte \(at) runs past the end)") }
            return Int(b[at]) | Int(b[at + 1]) << 8
        }
        func u32(_ at: Int) throws -> Int { let low = try u16(at), high = try u16(at + 2); return low | high << 16 }
        func u64(_ at: Int) throws -> Int {
            let low = try u32(at), high = try u32(at + 4)
            guard high < 1 << 30 else { throw fail("a 64-bit field at byte \(at) is absurdly large") }
            return low | high << 32
        }
        // End of central directory: the last "PK\5\6" within the final 64 KiB + 22 bytes.
        var eocd = -1
        var i = b.count - 22
        while i >= max(0, b.count - 22 - 65535) {
            if b[i] == 0x50, b[i + 1] == 0x4b, b[i + 2] == 5, b[i + 3] == 6 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw fail("no end-of-central-directory record: not a zip file, or truncated") }
        var count = try u16(eocd + 10), size = try u32(eocd + 12), offset = try u32(eocd + 16)
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // Zip64: the locator sits just before the record and points at the zip64 record.
            guard eocd >= 20, try u32(eocd - 20) == 0x0706_4b50 else { throw fail("zip64 sizes without a zip64 locator") }
            let record = try u64(eocd - 20 + 8)
            guard try u32(record) == 0x0606_4b50 else { throw fail("the zip64 locator points at byte \(record), which holds no zip64 record") }
            count = try u64(record + 32); size = try u64(record + 40); offset = try u64(record + 48)
        }
        guard offset <= b.count, size <= b.count - offset, count <= size / 46 + 1 else {
            throw fail("the central directory (\(count) entries, \(size) bytes at \(offset)) lies outside the file: truncated")
        }
        var entries: [String: Range<Int>] = [:]
        var at = offset
        for _ in 0..<count {
            guard try u32(at) == 0x0201_4b50 else { throw fail("central directory entry at byte \(at) has a bad signature") }
            let method = try u16(at + 10)
            let compressed = try u32(at + 20), stored = try u32(at + 24)
            let nameLength = try u16(at + 28), extra = try u16(at + 30), comment = try u16(at + 32)
            let local = try u32(at + 42)
            guard at + 46 + nameLength <= b.count else { throw fail("an entry name at byte \(at + 46) runs past the end") }
            let name = String(decoding: b[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            guard method == 0, compressed == stored, compressed != 0xFFFF_FFFF else {
                throw fail("entry '\(name)' is compressed (method \(method)); torch.save stores entries uncompressed")
            }
            guard try u32(local) == 0x0403_4b50 else { throw fail("entry '\(name)': no local header at byte \(local)") }
            let localName = try u16(local + 26), localExtra = try u16(local + 28)
            let start = local + 30 + localName + localExtra
            guard start <= b.count, stored <= b.count - start else {
                throw fail("entry '\(name)' (\(stored) bytes at \(start)) runs past the end of the file: truncated")
            }
            entries[name] = start..<(start + stored)
            at += 46 + nameLength + extra + comment
        }
        return entries
    }

    /// A storage's elements as Float, with `_rebuild_tensor_v2`'s offset, size and stride.
    func tensor(storage: TorchStorage, offset: Int, shape: [Int], stride: [Int]) throws -> TorchTensor {
        let name = prefix + "data/" + storage.key
        guard let range = entries[name] else { throw Error(path: path, field: name, problem: "the storage the pickle names is missing") }
        let size = storage.dtype.byteSize
        guard storage.count >= 0, storage.count <= range.count / size else {
            throw Error(path: path, field: name, problem: "holds \(range.count) bytes, fewer than \(storage.count) \(storage.dtype.rawValue) elements")
        }
        guard shape.count == stride.count, shape.count <= Self.maxRank, offset >= 0, offset <= storage.count,
              shape.allSatisfy({ $0 >= 0 && $0 <= storage.count }), stride.allSatisfy({ $0 >= 0 && $0 <= storage.count }) else {
            throw Error(path: path, field: name, problem: "size \(shape), stride \(stride), offset \(offset) do not describe a tensor of this storage")
        }
        var elements = 1
        for d in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, product <= storage.count else {
                throw Error(path: path, field: name, problem: "size \(shape) has more elements than the storage's \(storage.count)")
            }
            elements = product
        }
        if elements > 0 {
            let last = offset + zip(shape, stride).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
            guard last < storage.count else {
                throw Error(path: path, field: name, problem: "size \(shape), stride \(stride), offset \(offset) reach element \(last) of a storage of \(storage.count)")
            }
        }
        var values = [Float](repeating: 0, count: elements)
        let base = range.lowerBound
        var index = [Int](repeating: 0, count: shape.count)
        for n in 0..<elements {
            let element = offset + zip(index, stride).reduce(0) { $0 + $1.0 * $1.1 }
            let at = base + element * size
            switch storage.dtype {
            case .f32: values[n] = Float(bitPattern: UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24)
            case .f16: values[n] = FloatConversion.float(fromFloat16Bits: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
            case .bf16: values[n] = FloatConversion.float(fromBFloat16Bits: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
            default:
                var bits: UInt64 = 0
                for k in 0..<8 { bits |= UInt64(bytes[at + k]) << (8 * k) }
                values[n] = Float(Double(bitPattern: bits))
            }
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return TorchTensor(shape: shape, dtype: storage.dtype, values: values)
    }
}

/// The restricted stack machine (see `TorchZipFile`).
struct Unpickler {
    let bytes: [UInt8]
    let range: Range<Int>
    let file: TorchZipFile
    var at: Int
    var stack: [TorchValue] = []
    var marks: [[TorchValue]] = []
    var memo: [Int: TorchValue] = [:]
    static let storageTypes: [String: DType] = ["torch.FloatStorage": .f32, "torch.HalfStorage": .f16,
                                                "torch.BFloat16Storage": .bf16, "torch.DoubleStorage": .f64]
    static let functions: Set<String> = ["torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "collections.OrderedDict"]

    init(bytes: [UInt8], range: Range<Int>, file: TorchZipFile) {
        (self.bytes, self.range, self.file, self.at) = (bytes, range, file, range.lowerBound)
    }

    func fail(_ problem: String, at offset: Int? = nil) -> TorchZipFile.Error {
        TorchZipFile.Error(path: file.path, field: "data.pkl at byte \((offset ?? at) - range.lowerBound)", problem: problem)
    }

    mutating func read(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= range.upperBound - at else { throw fail("truncated: \(n) more bytes needed") }
        defer { at += n }
        return bytes[at..<(at + n)]
    }

    mutating func uint(_ n: Int) throws -> Int {
        try read(n).reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    mutating func pop() throws -> TorchValue {
        guard let value = stack.popLast() else { throw fail("stack underflow") }
        return value
    }

    mutating func popMark() throws -> [TorchValue] {
        guard let saved = marks.popLast() else { throw fail("no MARK on the stack") }
        let items = stack
        stack = saved
        return items
    }

    mutating func run() throws -> TorchValue {
        while true {
            let start = at
            let op = try read(1).first ?? 0
            switch op {
            case 0x80: _ = try read(1)                                         // PROTO
            case 0x95: _ = try read(8)                                         // FRAME
            case 0x2e:                                                         // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) values on the stack", at: start) }
                return stack[0]
            case 0x7d: stack.append(.dict([]))                                 // EMPTY_DICT
            case 0x5d: stack.append(.list([]))                                 // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                                // EMPTY_TUPLE
            case 0x4e: stack.append(.none)                                     // NONE
            case 0x88: stack.append(.bool(true))                               // NEWTRUE
            case 0x89: stack.append(.bool(false))                              // NEWFALSE
            case 0x4b: stack.append(.int(try uint(1)))                         // BININT1
            case 0x4d: stack.append(.int(try uint(2)))                         // BININT2
            case 0x4a: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))  // BININT
            case 0x8a:                                                         // LONG1
                let n = try uint(1)
                guard n <= 8 else { throw fail("a LONG1 of \(n) bytes is larger than any size or index here", at: start) }
                let raw = try read(n)
                var value: UInt64 = 0
                for (k, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(k)) }
                if n > 0, n < 8, raw.last ?? 0 >= 0x80 { value |= ~0 << (8 * UInt64(n)) }
                stack.append(.int(Int(truncatingIfNeeded: value)))
            case 0x47:                                                         // BINFLOAT (big-endian)
                let raw = try read(8)
                stack.append(.float(Double(bitPattern: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
            case 0x58, 0x8c:                                                   // BINUNICODE, SHORT_BINUNICODE
                let n = try uint(op == 0x58 ? 4 : 1)
                guard let text = String(validating: try read(n), as: UTF8.self) else { throw fail("a string is not UTF-8", at: start) }
                stack.append(.string(text))
            case 0x28: marks.append(stack); stack = []                         // MARK
            case 0x74: stack.append(.tuple(try popMark()))                     // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                       // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))   // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
            case 0x73, 0x75:                                                   // SETITEM, SETITEMS
                let items: [TorchValue]
                if op == 0x73 { let v = try pop(), k = try pop(); items = [k, v] } else { items = try popMark() }
                guard items.count % 2 == 0, case .dict(var pairs) = try pop() else { throw fail("SETITEM(S) without a dict", at: start) }
                for k in stride(from: 0, to: items.count, by: 2) { pairs.append((items[k], items[k + 1])) }
                stack.append(.dict(pairs))
            case 0x61, 0x65:                                                   // APPEND, APPENDS
                let items = op == 0x61 ? [try pop()] : try popMark()
                guard case .list(let list) = try pop() else { throw fail("APPEND(S) without a list", at: start) }
                stack.append(.list(list + items))
            case 0x71, 0x72, 0x94:                                             // BINPUT, LONG_BINPUT, MEMOIZE
                let key = op == 0x94 ? memo.count : try uint(op == 0x71 ? 1 : 4)
                guard let top = stack.last else { throw fail("PUT on an empty stack", at: start) }
                memo[key] = top
            case 0x68, 0x6a:                                                   // BINGET, LONG_BINGET
                let key = try uint(op == 0x68 ? 1 : 4)
                guard let value = memo[key] else { throw fail("GET of memo \(key), which was never set", at: start) }
                stack.append(value)
            case 0x63:                                                         // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                let qualified = module + "." + name
                guard Self.functions.contains(qualified) || Self.storageTypes[qualified] != nil else {
                    throw fail("names '\(qualified)', which is refused: only tensors, storages and OrderedDict are read, and nothing in the file is ever run", at: start)
                }
                stack.append(.global(qualified))
            case 0x51:                                                         // BINPERSID
                stack.append(try persistent(try pop(), at: start))
            case 0x52:                                                         // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args, at: start))
            default:
                throw fail(String(format: "opcode 0x%02x is not one torch.save uses for a dictionary of tensors; refused", op), at: start)
            }
        }
    }

    mutating func line() throws -> String {
        var text: [UInt8] = []
        while true {
            let byte = try read(1).first ?? 0
            if byte == 0x0a { break }
            guard text.count < 256 else { throw fail("a GLOBAL name is too long") }
            text.append(byte)
        }
        return String(decoding: text, as: UTF8.self)
    }

    func persistent(_ id: TorchValue, at start: Int) throws -> TorchValue {
        guard case .tuple(let t) = id, t.count == 5, case .string("storage") = t[0], case .global(let type) = t[1],
              case .string(let key) = t[2], case .int(let count) = t[4], let dtype = Self.storageTypes[type] else {
            throw fail("a persistent id that is not ('storage', FloatStorage|HalfStorage|BFloat16Storage|DoubleStorage, key, location, numel)", at: start)
        }
        return .storage(TorchStorage(key: key, dtype: dtype, count: count))
    }

    func reduce(_ callable: TorchValue, _ args: TorchValue, at start: Int) throws -> TorchValue {
        guard case .global(let function) = callable, case .tuple(let a) = args else { throw fail("REDUCE of something not callable", at: start) }
        switch function {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw fail("OrderedDict with arguments", at: start) }
            return .dict([])
        case "torch._utils._rebuild_parameter":
            guard a.count == 3, case .tensor = a[0] else { throw fail("_rebuild_parameter without a tensor", at: start) }
            return a[0]
        case "torch._utils._rebuild_tensor_v2":
            func ints(_ v: TorchValue) -> [Int]? {
                guard case .tuple(let items) = v else { return nil }
                return items.compactMap { if case .int(let i) = $0 { return i } else { return nil } }.count == items.count
                    ? items.compactMap { if case .int(let i) = $0 { return i } else { return nil } } : nil
            }
            guard a.count >= 4, case .storage(let storage) = a[0], case .int(let offset) = a[1],
                  let shape = ints(a[2]), let stride = ints(a[3]) else {
                throw fail("_rebuild_tensor_v2 without (storage, offset, size, stride, …)", at: start)
            }
            return .tensor(try file.tensor(storage: storage, offset: offset, shape: shape, stride: stride))
        default:
            throw fail("'\(function)' cannot be called", at: start)
        }
    }
}
