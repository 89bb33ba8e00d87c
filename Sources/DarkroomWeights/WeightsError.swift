import Foundation

/// Everything that can go wrong while opening, validating, reading or writing a
/// safetensors file. Every case carries the file path (where there is one), the tensor
/// name where relevant, and the offending values; `description` is one readable sentence.
public enum WeightsError: Error, Sendable, Equatable, CustomStringConvertible {
    // MARK: Opening the file
    /// The path does not exist.
    case fileNotFound(path: String)
    /// The path exists but could not be opened or inspected (permissions, I/O error...).
    case cannotOpen(path: String, errno: Int32)
    /// The path is a directory, FIFO, device, socket...
    case notRegularFile(path: String)
    /// `mmap` of the file failed.
    case mapFailed(path: String, errno: Int32)
    /// The file cannot even hold the 8-byte header length.
    case fileTooShort(path: String, fileSize: Int)

    // MARK: Header
    /// The header length exceeds `SafetensorsFile.maxHeaderSize` (100 MB, the official limit).
    case headerTooLarge(path: String, headerLength: UInt64, limit: Int)
    /// `8 + header length` is beyond the end of the file.
    case headerLengthPastEndOfFile(path: String, headerLength: UInt64, fileSize: Int)
    /// The header length is zero: there is no JSON at all.
    case headerEmpty(path: String)
    /// The header bytes are not valid UTF-8; `byteOffset` is relative to the header start.
    case headerNotUTF8(path: String, byteOffset: Int)
    /// The header is UTF-8 but not parseable JSON.
    case headerNotJSON(path: String, detail: String)
    /// The header is JSON but its top level is not an object (`found` names what it is).
    case headerNotObject(path: String, found: String)
    /// `__metadata__` is not an object of string → string.
    case invalidMetadata(path: String, detail: String)
    /// A tensor entry is not an object, or lacks `dtype`/`shape`/`data_offsets`, or `dtype`
    /// is not a string, or the name is empty.
    case invalidTensorEntry(path: String, tensor: String, detail: String)
    /// `dtype` is a string but not a known safetensors dtype.
    case unknownDType(path: String, tensor: String, dtype: String)
    /// `shape` is not an array of non-negative integers.
    case invalidShape(path: String, tensor: String, detail: String)
    /// `data_offsets` is not an array of exactly two non-negative integers.
    case invalidDataOffsets(path: String, tensor: String, detail: String)
    /// `data_offsets` has begin > end.
    case dataOffsetsReversed(path: String, tensor: String, begin: Int, end: Int)
    /// The tensor's end offset lies beyond the data section (also what a truncated file gives).
    case dataOffsetsPastEnd(path: String, tensor: String, end: Int, dataSectionSize: Int)
    /// product(shape) * dtype size overflows `Int`.
    case tensorSizeOverflow(path: String, tensor: String, shape: [Int], dtype: DType)
    /// `end - begin` differs from product(shape) * dtype size.
    case byteCountMismatch(path: String, tensor: String, dtype: DType, shape: [Int], expectedBytes: Int, actualBytes: Int)
    /// Two tensors' byte ranges overlap (offsets relative to the data section).
    case overlappingTensors(path: String, tensor: String, range: Range<Int>, other: String, otherRange: Range<Int>)
    /// Bytes of the data section between two tensors (or before the first) belong to no
    /// tensor. `after` is nil when the gap is at the very start of the data section.
    case gapInDataSection(path: String, gap: Range<Int>, after: String?, before: String)
    /// Bytes after the last tensor's end that belong to no tensor.
    case trailingBytes(path: String, dataEnd: Int, dataSectionSize: Int)

    // MARK: Reading tensors
    case tensorNotFound(path: String, tensor: String)
    /// `floats` was asked for a tensor whose dtype is not a floating-point type.
    case notFloatingPoint(path: String, tensor: String, dtype: DType)
    /// `floats(_:into:)` was given a buffer whose count differs from the element count.
    case bufferSizeMismatch(path: String, tensor: String, expected: Int, actual: Int)

    // MARK: Writing
    case duplicateTensorName(tensor: String)
    /// Empty name, or the reserved `__metadata__`.
    case invalidTensorName(tensor: String)
    /// A dimension of `shape` is negative or the element count overflows.
    case invalidWriterShape(tensor: String, shape: [Int])
    /// `floats`/`bytes` count does not match `shape` (× dtype size for raw bytes).
    case writerCountMismatch(tensor: String, shape: [Int], expected: Int, actual: Int)
    /// `add(_:shape:floats:as:)` can only encode F64, F32, F16 and BF16.
    case unsupportedWriterDType(tensor: String, dtype: DType)
    /// A system call failed while writing `path` (`step` names it: open, write, fsync, rename...).
    case writeFailed(path: String, step: String, errno: Int32)

    // Checkpoints (single files and diffusers folders), by canonical (diffusers) key.
    /// A tensor the model needs is not in the checkpoint.
    case missingTensor(key: String, source: String)
    /// A tensor has another shape than the model's configuration implies.
    case unexpectedShape(key: String, expected: String, found: [Int], source: String)
    /// The checkpoint is not a Stable Diffusion 1.x/2.x model this program knows.
    case unknownModelFamily(path: String, detail: String)
    /// A pickled `.ckpt`/`.pt`/`.bin` file: refused, because unpickling can run arbitrary code.
    case pickleCheckpoint(path: String)
    /// A diffusers folder's or a YAML file's configuration cannot be read or makes no sense.
    case invalidConfig(path: String, detail: String)
    /// A tensor holds NaN or ±inf (`element`: the first one's index in the stored tensor), found at load.
    case nonFiniteWeights(key: String, source: String, element: Int)
    /// A single-file key under a component's prefix that no conversion rule matches (a malformed or foreign key).
    case unrecognizedKey(key: String, path: String)
    /// The components do not fit together (e.g. the text encoder's width is not the UNet's cross-attention
    /// width, or the UNet does not predict the VAE's latent channels); `detail` names both sides and keys.
    case incompatibleComponents(source: String, detail: String)
    /// A ControlNet that does not fit the checkpoint's UNet (another family, width or layout); `detail` names both
    /// sides and the tensors they were read from.
    case controlNetMismatch(path: String, model: String, detail: String)

    // Upscaler models (ESRGAN family, see `UpscalerKeyMap`).
    /// A pickled `.pth`/`.pt` upscaler: refused, with the conversion advice (Real-ESRGAN's files wrap the weights in `params_ema`).
    case pickleUpscaler(path: String)
    /// The file holds no upscaler Darkroom knows (`detail` says what was looked for, or what it looks like).
    case notAnUpscaler(path: String, detail: String)
    /// An upscaler of an architecture or variant Darkroom does not run (`detail` names it).
    case unsupportedUpscaler(path: String, detail: String)
    /// An upscaler file's key that no rule of its layout (`layout`) matches.
    case unrecognizedUpscalerKey(key: String, path: String, layout: String)

    // LoRA-family files (see `LoRA`).
    /// Modules of a LoRA that name no weight of the model (`model`: the checkpoint's path).
    case loraUnmatchedKeys(path: String, modules: [String], model: String)
    /// A module in a format Darkroom does not apply (`format` names it).
    case loraUnsupported(path: String, module: String, format: String)
    /// A key or module that cannot be read as a LoRA update (`detail` says why).
    case loraMalformed(path: String, key: String, detail: String)

    public var description: String {
        switch self {
        case let .fileNotFound(path):
            return "Safetensors file '\(path)' does not exist."
        case let .cannotOpen(path, err):
            return "Cannot open safetensors file '\(path)': \(errnoText(err))."
        case let .notRegularFile(path):
            return "Safetensors path '\(path)' is not a regular file."
        case let .mapFailed(path, err):
            return "Cannot memory-map safetensors file '\(path)': \(errnoText(err))."
        case let .fileTooShort(path, size):
            return "Safetensors file '\(path)' is \(size) bytes long, too short to hold the 8-byte header length."
        case let .headerTooLarge(path, n, limit):
            return "Safetensors file '\(path)' declares a header of \(n) bytes, more than the \(limit)-byte limit."
        case let .headerLengthPastEndOfFile(path, n, size):
            return "Safetensors file '\(path)' declares a header of \(n) bytes but the file is only \(size) bytes long."
        case let .headerEmpty(path):
            return "Safetensors file '\(path)' declares an empty (0-byte) header."
        case let .headerNotUTF8(path, offset):
            return "The header of safetensors file '\(path)' is not valid UTF-8 (first bad byte at header offset \(offset))."
        case let .headerNotJSON(path, detail):
            return "The header of safetensors file '\(path)' is not valid JSON: \(detail)."
        case let .headerNotObject(path, found):
            return "The header of safetensors file '\(path)' is a JSON \(found), not a JSON object."
        case let .invalidMetadata(path, detail):
            return "The __metadata__ of safetensors file '\(path)' is invalid: \(detail)."
        case let .invalidTensorEntry(path, tensor, detail):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has an invalid header entry: \(detail)."
        case let .unknownDType(path, tensor, dtype):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has unknown dtype '\(dtype)'."
        case let .invalidShape(path, tensor, detail):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has an invalid shape: \(detail)."
        case let .invalidDataOffsets(path, tensor, detail):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has invalid data_offsets: \(detail)."
        case let .dataOffsetsReversed(path, tensor, begin, end):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has data_offsets [\(begin), \(end)] whose begin is after its end."
        case let .dataOffsetsPastEnd(path, tensor, end, size):
            return "Tensor '\(tensor)' in safetensors file '\(path)' ends at data offset \(end), beyond the \(size)-byte data section (is the file truncated?)."
        case let .tensorSizeOverflow(path, tensor, shape, dtype):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has shape \(shape) of \(dtype.rawValue) whose byte size overflows."
        case let .byteCountMismatch(path, tensor, dtype, shape, expected, actual):
            return "Tensor '\(tensor)' in safetensors file '\(path)' occupies \(actual) bytes but shape \(shape) of \(dtype.rawValue) needs \(expected) bytes."
        case let .overlappingTensors(path, tensor, range, other, otherRange):
            return "Tensor '\(tensor)' in safetensors file '\(path)' (data bytes \(range.lowerBound)..<\(range.upperBound)) overlaps tensor '\(other)' (data bytes \(otherRange.lowerBound)..<\(otherRange.upperBound))."
        case let .gapInDataSection(path, gap, after, before):
            let where_ = after.map { "between tensor '\($0)' and tensor '\(before)'" } ?? "before the first tensor '\(before)'"
            return "Safetensors file '\(path)' has \(gap.count) unused data bytes (\(gap.lowerBound)..<\(gap.upperBound)) \(where_); tensors must cover the data section contiguously."
        case let .trailingBytes(path, dataEnd, size):
            return "Safetensors file '\(path)' has \(size - dataEnd) unused bytes after the last tensor (tensors end at data offset \(dataEnd), data section is \(size) bytes)."
        case let .tensorNotFound(path, tensor):
            return "Tensor '\(tensor)' does not exist in safetensors file '\(path)'."
        case let .notFloatingPoint(path, tensor, dtype):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has dtype \(dtype.rawValue), which cannot be read as floats."
        case let .bufferSizeMismatch(path, tensor, expected, actual):
            return "Tensor '\(tensor)' in safetensors file '\(path)' has \(expected) elements but the destination buffer holds \(actual)."
        case let .duplicateTensorName(tensor):
            return "Tensor '\(tensor)' was already added to this safetensors writer."
        case let .invalidTensorName(tensor):
            return "'\(tensor)' cannot be used as a safetensors tensor name (empty or reserved)."
        case let .invalidWriterShape(tensor, shape):
            return "Tensor '\(tensor)' has invalid shape \(shape) (negative dimension or size overflow)."
        case let .writerCountMismatch(tensor, shape, expected, actual):
            return "Tensor '\(tensor)' with shape \(shape) needs \(expected) values but \(actual) were given."
        case let .unsupportedWriterDType(tensor, dtype):
            return "Tensor '\(tensor)' cannot be encoded from floats as \(dtype.rawValue); use F32, F16, BF16 or F64, or addRaw."
        case let .writeFailed(path, step, err):
            return "Writing safetensors file '\(path)' failed at \(step): \(errnoText(err))."
        case let .missingTensor(key, source):
            return "Checkpoint '\(source)' has no tensor '\(key)', which the model needs."
        case let .unexpectedShape(key, expected, found, source):
            return "Tensor '\(key)' in checkpoint '\(source)' has shape \(found); expected \(expected)."
        case let .unknownModelFamily(path, detail):
            return "'\(path)' is not a Stable Diffusion checkpoint Darkroom can run (SD 1.x, 2.x, SDXL): \(detail)."
        case let .pickleCheckpoint(path):
            return "'\(path)' is a pickled checkpoint, which Darkroom refuses to open because unpickling can run arbitrary code. Convert it to .safetensors first, e.g. with Python: `import torch, safetensors.torch; sd = torch.load(PATH, map_location='cpu', weights_only=True); safetensors.torch.save_file(sd.get('state_dict', sd), OUT)`."
        case let .invalidConfig(path, detail):
            return "Configuration '\(path)' cannot be used: \(detail)."
        case let .nonFiniteWeights(key, source, element):
            return "Tensor '\(key)' in checkpoint '\(source)' contains NaN or infinite values (the first at element \(element)); the checkpoint is corrupted or was saved from a diverged model. Re-download or re-convert it."
        case let .pickleUpscaler(path):
            return "'\(path)' is a pickled upscaler model, which Darkroom refuses to open because unpickling can run arbitrary code. Convert it to .safetensors first, e.g. with Python: `import torch, safetensors.torch; sd = torch.load(PATH, map_location='cpu', weights_only=True); sd = sd.get('params_ema', sd.get('params', sd)); safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, OUT)`."
        case let .notAnUpscaler(path, detail):
            return "'\(path)' is not an upscaler model Darkroom can run: \(detail)."
        case let .unsupportedUpscaler(path, detail):
            return "Upscaler '\(path)' is not supported: \(detail)."
        case let .unrecognizedUpscalerKey(key, path, layout):
            return "Tensor '\(key)' in upscaler '\(path)' does not belong to an \(layout); the file is malformed or a variant Darkroom does not run."
        case let .loraUnmatchedKeys(path, modules, model):
            let shown = modules.prefix(5).joined(separator: ", ") + (modules.count > 5 ? ", …" : "")
            return "LoRA '\(path)': \(modules.count) module(s) match no weight of the model '\(model)' (\(shown)); it is probably made for another model family or architecture."
        case let .loraUnsupported(path, module, format):
            return "LoRA '\(path)': module '\(module)' is \(format), which Darkroom does not apply."
        case let .loraMalformed(path, key, detail):
            return "LoRA '\(path)'" + (key.isEmpty ? "" : ", '\(key)'") + ": \(detail)."
        case let .unrecognizedKey(key, path):
            return "Tensor '\(key)' in checkpoint '\(path)' matches no known Stable Diffusion (1.x, 2.x, SDXL) key layout; the file is malformed or not a model Darkroom can run."
        case let .incompatibleComponents(source, detail):
            return "The components of checkpoint '\(source)' do not fit together: \(detail)."
        case let .controlNetMismatch(path, model, detail):
            return "ControlNet '\(path)' does not fit the model '\(model)': \(detail)."
        }
    }
}

extension WeightsError: LocalizedError {
    public var errorDescription: String? { description }
}

private func errnoText(_ err: Int32) -> String {
    "\(String(cString: strerror(err))) (errno \(err))"
}
