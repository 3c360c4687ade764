import Foundation

/// A safetensors element type. Sizes follow the safetensors specification.
public struct DType: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    /// Bytes per element.
    public let size: Int
    /// Where the exponent sits, for codecs that model floating-point bit patterns.
    public let floatLayout: FloatLayout

    public var description: String { name }

    static let known: [String: DType] = {
        let table: [(String, Int, FloatLayout)] = [
            ("F64", 8, .none), ("F32", 4, .f32), ("F16", 2, .f16), ("BF16", 2, .bf16),
            ("I64", 8, .none), ("I32", 4, .none), ("I16", 2, .none), ("I8", 1, .none),
            ("U64", 8, .none), ("U32", 4, .none), ("U16", 2, .none), ("U8", 1, .none),
            ("BOOL", 1, .none), ("F8_E4M3", 1, .none), ("F8_E5M2", 1, .none), ("F8_E8M0", 1, .none),
            ("C64", 8, .none),
        ]
        return Dictionary(uniqueKeysWithValues: table.map { ($0.0, DType(name: $0.0, size: $0.1, floatLayout: $0.2)) })
    }()

    public init?(name: String) {
        guard let known = DType.known[name] else { return nil }
        self = known
    }

    private init(name: String, size: Int, floatLayout: FloatLayout) {
        self.name = name
        self.size = size
        self.floatLayout = floatLayout
    }
}

/// The bit layout of a floating-point element, as codecs need it. Stored in chunk frames.
public enum FloatLayout: UInt8, Sendable {
    case none = 0, f32 = 1, bf16 = 2, f16 = 3
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Hashable, Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range of the tensor's data, relative to the start of the data region.
    public let dataRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A parsed and validated safetensors header.
///
/// Layout of a safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
/// then the data region. Validation is strict (the Python `safetensors` package's rules): a file
/// that fails it is still stored, bit-exact, as an opaque file.
public struct SafetensorsHeader: Sendable {
    /// 8 + N: where the data region starts in the file.
    public let dataStart: Int
    /// Tensors in the order their data appears in the file.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]

    /// The safetensors reference implementation refuses headers above 100 MB.
    public static let maxHeaderLength = 100_000_000

    /// Reads the 8-byte length prefix; returns the header JSON length or throws when it cannot fit.
    public static func headerLength(prefix: UnsafeRawBufferPointer, fileSize: Int) throws -> Int {
        var r = ByteReader(prefix, what: "safetensors length prefix")
        let n = try r.read(UInt64.self)
        guard n <= UInt64(maxHeaderLength) else {
            throw FormatError.invalid("safetensors header length \(n) exceeds the limit of \(maxHeaderLength) bytes")
        }
        guard 8 + Int(n) <= fileSize else {
            throw FormatError.invalid("safetensors header length \(n) runs past the end of the \(fileSize)-byte file")
        }
        return Int(n)
    }

    /// Parses `json` (the N header bytes) for a file of `fileSize` bytes.
    public static func parse(json: UnsafeRawBufferPointer, fileSize: Int) throws -> SafetensorsHeader {
        let dataStart = 8 + json.count
        let dataLength = fileSize - dataStart
        guard dataLength >= 0 else { throw FormatError.invalid("safetensors header runs past the end of the file") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json), options: [])
        } catch {
            throw FormatError.invalid("safetensors header is not valid JSON")
        }
        guard let dict = object as? [String: Any] else {
            throw FormatError.invalid("safetensors header is not a JSON object")
        }
        var tensors: [TensorInfo] = []
        var metadata: [String: String] = [:]
        for (name, value) in dict {
            if name == "__metadata__" {
                guard let meta = value as? [String: Any] else { throw FormatError.invalid("__metadata__ is not an object") }
                for (k, v) in meta {
                    guard let s = v as? String else { throw FormatError.invalid("__metadata__ value for \(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            tensors.append(try parseTensor(name: name, value))
        }
        tensors.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound, $0.name) < ($1.dataRange.lowerBound, $1.dataRange.upperBound, $1.name) }
        // The data region must be covered exactly: no overlap, no hole, nothing past its end.
        var cursor = 0
        for t in tensors {
            guard t.dataRange.upperBound <= dataLength else {
                throw FormatError.invalid("tensor \(t.name) data_offsets \(t.dataRange) run past the \(dataLength)-byte data region")
            }
            if t.dataRange.lowerBound < cursor {
                throw FormatError.invalid("tensor \(t.name) data_offsets \(t.dataRange) overlap the previous tensor")
            }
            if t.dataRange.lowerBound > cursor {
                throw FormatError.invalid("safetensors data region has a hole at \(cursor)..<\(t.dataRange.lowerBound)")
            }
            cursor = t.dataRange.upperBound
        }
        guard cursor == dataLength else {
            throw FormatError.invalid("safetensors data region has \(dataLength - cursor) bytes after the last tensor")
        }
        return SafetensorsHeader(dataStart: dataStart, tensors: tensors, metadata: metadata)
    }

    private static func parseTensor(name: String, _ value: Any) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else { throw FormatError.invalid("tensor \(name): entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw FormatError.invalid("tensor \(name): missing dtype") }
        guard let dtype = DType(name: dtypeName) else { throw FormatError.invalid("tensor \(name): unknown dtype \(dtypeName)") }
        guard let shapeAny = entry["shape"] as? [Any], let offsetsAny = entry["data_offsets"] as? [Any],
              offsetsAny.count == 2
        else { throw FormatError.invalid("tensor \(name): shape or data_offsets missing or malformed") }
        var shape: [Int] = []
        var elements = 1
        for d in shapeAny {
            guard let dim = exactInt(d), dim >= 0 else { throw FormatError.invalid("tensor \(name): bad dimension in shape") }
            shape.append(dim)
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw FormatError.invalid("tensor \(name): shape overflows") }
            elements = product
        }
        guard let begin = exactInt(offsetsAny[0]), let end = exactInt(offsetsAny[1]), begin >= 0, end >= begin else {
            throw FormatError.invalid("tensor \(name): data_offsets are not an increasing pair of non-negative integers")
        }
        let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, bytes == end - begin else {
            throw FormatError.invalid("tensor \(name): \(dtype) shape \(shape) needs \(bytes) bytes but data_offsets span \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin ..< end)
    }

    /// JSON numbers arrive as NSNumber; accept only exact non-fractional integers.
    private static func exactInt(_ value: Any) -> Int? {
        guard let number = value as? NSNumber else { return nil }
        // JSON true/false arrive as NSNumber too (objCType "c"); `is Bool` cannot tell them apart.
        if String(cString: number.objCType) == "c" { return nil }
        let d = number.doubleValue
        guard d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }
}
