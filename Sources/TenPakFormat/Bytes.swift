// Little-endian byte writing and bounds-checked reading, the only way the format layer touches bytes.

/// Appends little-endian integers and byte runs to a growing buffer.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func append(bytes other: some Sequence<UInt8>) {
        bytes.append(contentsOf: other)
    }

    public mutating func append(_ raw: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: raw)
    }

    /// A string as a u16 byte length followed by its UTF-8 bytes.
    public mutating func appendString(_ string: String) throws {
        let utf8 = Array(string.utf8)
        guard utf8.count <= Int(UInt16.max) else {
            throw FormatError.invalid("string of \(utf8.count) bytes is longer than the format's limit of \(UInt16.max)")
        }
        append(UInt16(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Overwrites a little-endian integer already written at `offset`.
    public mutating func patch<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, b) in raw.enumerated() { bytes[offset + i] = b }
        }
    }
}

/// Reads little-endian integers and byte runs from a buffer; every read is bounds-checked and
/// throws `FormatError.truncated` instead of reading past the end.
public struct ByteReader {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var offset: Int
    private let what: String

    /// `what` names the structure being read, for error messages.
    public init(_ buffer: UnsafeRawBufferPointer, what: String, offset: Int = 0) {
        self.buffer = buffer
        self.offset = offset
        self.what = what
    }

    public var remaining: Int { buffer.count - offset }
    public var isAtEnd: Bool { offset == buffer.count }

    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw FormatError.truncated(what: what, needed: size, available: remaining) }
        // Safe: the bounds check above covers [offset, offset + size).
        let value = buffer.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return T(littleEndian: value)
    }

    public mutating func readBytes(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, remaining >= count else {
            throw FormatError.truncated(what: what, needed: count, available: remaining)
        }
        let slice = UnsafeRawBufferPointer(rebasing: buffer[offset ..< offset + count])
        offset += count
        return slice
    }

    public mutating func readArray(_ count: Int) throws -> [UInt8] {
        Array(try readBytes(count))
    }

    public mutating func readString() throws -> String {
        let length = Int(try read(UInt16.self))
        let raw = try readBytes(length)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw FormatError.invalid("\(what): a string is not valid UTF-8")
        }
        return string
    }
}

extension Array where Element == UInt8 {
    /// Lowercase hexadecimal.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses lowercase or uppercase hexadecimal; nil on any other character or an odd length.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        self = out
    }
}
