import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// One tensor a `TensorSource` can read: where it is and what it holds.
public struct SourceTensor: Hashable, Sendable {
    /// The file of the revision that holds it ("" for a source that is one file).
    public let file: String
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let byteCount: Int

    public init(file: String, name: String, dtype: String, shape: [Int], byteCount: Int) {
        self.file = file
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
    }

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Weights to measure, read one tensor at a time.
///
/// The seam between the optimizer and the store: `StoreTensorSource` reads a stored revision by
/// decoding only the chunks a tensor overlaps; `SafetensorsFileSource` reads a file on disk. A
/// random-access reader (TenPakReader) can replace the store adapter without touching the rest.
public protocol TensorSource: Sendable {
    func tensors() throws -> [SourceTensor]
    /// The tensor's elements as Float (F32, F16 and BF16 only), row-major.
    func floats(_ tensor: SourceTensor) throws -> [Float]
}

/// Errors of the optimizer layer.
public enum OptimizerError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .unsupported(m): return m
        case let .invalidInput(m): return m
        }
    }
}

/// Little-endian F32, F16 or BF16 bytes to Float.
public enum FloatDecoding {
    public static func decode(_ bytes: UnsafeRawBufferPointer, dtype: String) throws -> [Float] {
        switch dtype {
        case "F32":
            let n = bytes.count / 4
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0 ..< n { out[i] = Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
                count = n
            }
        case "F16":
            let n = bytes.count / 2
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0 ..< n { out[i] = Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
                count = n
            }
        case "BF16":
            let n = bytes.count / 2
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0 ..< n {
                    out[i] = Float(bitPattern: UInt32(bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
                }
                count = n
            }
        default:
            throw OptimizerError.unsupported("dtype \(dtype) is not a float type the optimizer reads (F32, F16, BF16)")
        }
    }
}

/// A stored revision's safetensors tensors, read through the chunk store.
///
/// A tensor's bytes are rebuilt from the chunks that overlap its byte range only (safetensors files
/// are chunked along tensors, so that is usually exactly the tensor's own chunks).
public struct StoreTensorSource: TensorSource {
    let store: ModelStore
    let files: [(record: FileRecord, chunks: [FileChunk], tensors: [TensorRecord])]

    public init(store: ModelStore, revision: RevisionRecord) throws {
        self.store = store
        var files: [(FileRecord, [FileChunk], [TensorRecord])] = []
        for file in try store.catalog.files(revision: revision) where file.kind == .safetensors {
            files.append((file, try store.catalog.fileChunks(file: file), try store.catalog.tensors(file: file)))
        }
        self.files = files
    }

    public func tensors() throws -> [SourceTensor] {
        files.flatMap { f in
            f.tensors.map { SourceTensor(file: f.record.path, name: $0.name, dtype: $0.dtype, shape: $0.shape, byteCount: $0.end - $0.begin) }
        }
    }

    public func floats(_ tensor: SourceTensor) throws -> [Float] {
        guard let file = files.first(where: { $0.record.path == tensor.file }),
              let record = file.tensors.first(where: { $0.name == tensor.name }) else {
            throw OptimizerError.invalidInput("no tensor \(tensor.name) in \(tensor.file)")
        }
        let bytes = try readRange(record.begin ..< record.end, chunks: file.chunks, path: tensor.file)
        return try bytes.withUnsafeBytes { try FloatDecoding.decode($0, dtype: record.dtype) }
    }

    /// Bytes `range` of a file, decoding only the chunks that overlap it.
    func readRange(_ range: Range<Int>, chunks: [FileChunk], path: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: range.count)
        // Chunks are in file order: binary search the first one that ends after range.lowerBound.
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid].offset + chunks[mid].location.rawLength <= range.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        var filled = 0
        var i = lo
        while i < chunks.count, chunks[i].offset < range.upperBound {
            let c = chunks[i]
            let raw = try store.chunks.rawBytes(of: c.location)
            let from = max(range.lowerBound, c.offset), to = min(range.upperBound, c.offset + raw.count)
            if to > from {
                out.withUnsafeMutableBytes { dst in
                    raw.withUnsafeBytes { src in
                        (dst.baseAddress! + (from - range.lowerBound)).copyMemory(from: src.baseAddress! + (from - c.offset), byteCount: to - from)
                    }
                }
                filled += to - from
            }
            i += 1
        }
        guard filled == range.count else {
            throw StoreError.corrupt("\(path): chunks cover \(filled) of the \(range.count) bytes at \(range.lowerBound)")
        }
        return out
    }
}

/// One safetensors file on disk (calibration files, benchmarks), read with positioned reads.
public struct SafetensorsFileSource: TensorSource {
    public let path: String
    public let header: SafetensorsHeader
    let file: OpenFile

    public init(path: String) throws {
        self.path = path
        file = try OpenFile(path: path, mode: .read)
        let size = try file.size()
        guard size >= 8 else { throw OptimizerError.invalidInput("\(path) is not a safetensors file (\(size) bytes)") }
        do {
            let prefix = try file.read(count: 8, at: 0)
            let n = try prefix.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: size) }
            let json = try file.read(count: n, at: 8)
            header = try json.withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: size) }
        } catch let error as FormatError {
            throw OptimizerError.invalidInput("\(path) is not a valid safetensors file: \(error)")
        }
    }

    public func tensors() throws -> [SourceTensor] {
        header.tensors.map { SourceTensor(file: "", name: $0.name, dtype: $0.dtype.name, shape: $0.shape, byteCount: $0.dataRange.count) }
    }

    public func info(_ name: String) -> TensorInfo? { header.tensors.first { $0.name == name } }

    public func floats(_ tensor: SourceTensor) throws -> [Float] {
        guard let info = info(tensor.name) else { throw OptimizerError.invalidInput("\(path) has no tensor \(tensor.name)") }
        let bytes = try file.read(count: info.dataRange.count, at: header.dataStart + info.dataRange.lowerBound)
        return try bytes.withUnsafeBytes { try FloatDecoding.decode($0, dtype: info.dtype.name) }
    }
}
