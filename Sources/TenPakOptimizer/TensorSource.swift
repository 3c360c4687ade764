import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
import TenPakReader

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
    let files: [(reader: FileReader, tensors: [TensorRecord])]

    /// Reads through the virtual read API: each tensor decodes only the chunks it overlaps, through
    /// a small shared cache (tensors are read once each, so a large cache would only hold memory).
    public init(store: ModelStore, revision: RevisionRecord) throws {
        let reader = StoreReader(store: store, configuration: .init(cacheCapacity: 32 << 20, prefetchChunks: 0))
        var files: [(FileReader, [TensorRecord])] = []
        for file in try store.catalog.files(revision: revision) where file.kind == .safetensors {
            let opened = try reader.open(model: revision.model, revision: revision.revision, path: file.path)
            files.append((opened, try store.catalog.tensors(file: file)))
        }
        self.files = files
    }

    public func tensors() throws -> [SourceTensor] {
        files.flatMap { f in
            f.tensors.map { SourceTensor(file: f.reader.file.path, name: $0.name, dtype: $0.dtype, shape: $0.shape, byteCount: $0.end - $0.begin) }
        }
    }

    public func floats(_ tensor: SourceTensor) throws -> [Float] {
        guard let file = files.first(where: { $0.reader.file.path == tensor.file }),
              let record = file.tensors.first(where: { $0.name == tensor.name }) else {
            throw OptimizerError.invalidInput("no tensor \(tensor.name) in \(tensor.file)")
        }
        let bytes = try file.reader.tensorBytes(named: record.name)
        return try bytes.withUnsafeBytes { try FloatDecoding.decode($0, dtype: record.dtype) }
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
