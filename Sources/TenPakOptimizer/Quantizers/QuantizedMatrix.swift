/// A weight matrix in a quantized form, as a GPU kernel would hold it.
///
/// Each quantizer has its own type; all of them can be dequantized (to measure their error) and
/// packed to bytes and back (`serialized()` / `init(serialized:)`, little-endian, tested to round
/// trip). `storageBytes` counts what a GPU holds: codes plus scales, as the method's kernels store
/// them, which is what bits per weight and GPU sizing use.
public protocol QuantizedMatrix: Sendable {
    var rows: Int { get }
    var cols: Int { get }
    /// Bytes of codes and scales the method stores for this matrix.
    var storageBytes: Int { get }
    /// The matrix the codes stand for, row-major rows×cols.
    func dequantized() -> [Float]
    func serialized() -> [UInt8]
    init(serialized: [UInt8]) throws
}

extension QuantizedMatrix {
    public var bitsPerWeight: Double { rows * cols == 0 ? 0 : Double(storageBytes * 8) / Double(rows * cols) }
}

/// Little-endian writer and reader for the `serialized()` forms.
struct PackWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func f32s(_ v: [Float]) { u32(v.count); for x in v { f32(x) } }
    mutating func f16s(_ v: [Float16]) {
        u32(v.count)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
    }
    mutating func raw(_ v: [UInt8]) { u32(v.count); bytes.append(contentsOf: v) }
}

struct PackReader {
    let bytes: [UInt8]
    var at = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, at + n <= bytes.count else { throw OptimizerError.invalidInput("packed matrix truncated at byte \(at)") }
        defer { at += n }
        return bytes[at ..< at + n]
    }
    mutating func u8() throws -> UInt8 { try take(1).first! }
    mutating func u32() throws -> Int {
        let s = try take(4)
        return Int(s.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    }
    mutating func f32() throws -> Float { Float(bitPattern: UInt32(try u32())) }
    mutating func count(max: Int) throws -> Int {
        let n = try u32()
        guard n <= max else { throw OptimizerError.invalidInput("packed matrix declares \(n) entries, more than the \(max) it can hold") }
        return n
    }
    mutating func f32s() throws -> [Float] {
        let n = try count(max: (bytes.count - at) / 4)
        return try (0 ..< n).map { _ in try f32() }
    }
    mutating func f16s() throws -> [Float16] {
        let n = try count(max: (bytes.count - at) / 2)
        return try (0 ..< n).map { _ in
            let s = try take(2)
            return Float16(bitPattern: UInt16(s[s.startIndex]) | UInt16(s[s.startIndex + 1]) << 8)
        }
    }
    mutating func raw() throws -> [UInt8] { Array(try take(try count(max: bytes.count - at))) }
    func finish() throws {
        guard at == bytes.count else { throw OptimizerError.invalidInput("packed matrix has \(bytes.count - at) trailing bytes") }
    }
}

/// Two 4-bit codes per byte.
enum Nibbles {
    /// bitsandbytes order: element 2i in the high nibble, 2i+1 in the low one; an odd tail is
    /// padded with a zero nibble.
    static func packHighFirst(_ codes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (codes.count + 1) / 2)
        for i in 0 ..< codes.count {
            out[i / 2] |= i % 2 == 0 ? codes[i] << 4 : codes[i] & 0xF
        }
        return out
    }

    static func unpackHighFirst(_ packed: [UInt8], count: Int) -> [UInt8] {
        (0 ..< count).map { i in i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 0xF }
    }

    /// GPTQ/AWQ order (int32 words hold eight codes from the low bits up): element 2i in the low
    /// nibble of byte i.
    static func packLowFirst(_ codes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (codes.count + 1) / 2)
        for i in 0 ..< codes.count {
            out[i / 2] |= i % 2 == 0 ? codes[i] & 0xF : codes[i] << 4
        }
        return out
    }

    static func unpackLowFirst(_ packed: [UInt8], count: Int) -> [UInt8] {
        (0 ..< count).map { i in i % 2 == 0 ? packed[i / 2] & 0xF : packed[i / 2] >> 4 }
    }
}
