/// A chunk frame: the self-describing unit of a pack file.
///
/// Every frame carries what is needed to verify it and to rebuild the catalog without the catalog:
/// its kind, its encoding, both lengths, the identity of its raw bytes, the base chunk it is a
/// delta against (if any), and two checksums. All integers little-endian.
///
///     off  size  field
///       0     4  magic "TPFR"
///       4     1  frame version (1)
///       5     1  kind (FrameKind)
///       6     1  encoding (codec id, see TenPakCodecs.Encoding)
///       7     1  flags: bit 0 = a base chunk id follows the fixed header
///       8     4  payload length P (encoded bytes)
///      12     4  raw length R (decoded bytes)
///      16     1  element width in bytes (1, 2, 4 or 8)
///      17     1  float layout (FloatLayout)
///      18     2  reserved, zero
///      20    16  XXH3-128 of the raw bytes (big-endian canonical form)
///      36    32  SHA-256 of the raw bytes
///      68    48  base chunk id (XXH3-128 then SHA-256), only when flags bit 0 is set
///    H-16     8  XXH3-64 of the P payload bytes
///     H-8     8  XXH3-64 of header bytes [0, H-8)
///       H     P  payload
///
/// H is 84, or 132 with a base. A reader checks the header checksum before trusting any length.
public struct FrameHeader: Hashable, Sendable {
    public static let magic: [UInt8] = Array("TPFR".utf8)
    public static let version: UInt8 = 1
    public static let fixedSize = 68
    public static let maxSize = fixedSize + ChunkID.encodedSize + 16
    /// Frames hold at most 64 MiB of raw or encoded bytes; larger declared lengths are damage.
    public static let maxLength = 64 << 20

    public var kind: FrameKind
    public var encoding: UInt8
    public var payloadLength: Int
    public var rawLength: Int
    public var elementWidth: UInt8
    public var floatLayout: FloatLayout
    public var id: ChunkID
    public var base: ChunkID?
    public var payloadChecksum: UInt64

    public init(kind: FrameKind, encoding: UInt8, payloadLength: Int, rawLength: Int, elementWidth: UInt8,
                floatLayout: FloatLayout, id: ChunkID, base: ChunkID?, payloadChecksum: UInt64) {
        self.kind = kind
        self.encoding = encoding
        self.payloadLength = payloadLength
        self.rawLength = rawLength
        self.elementWidth = elementWidth
        self.floatLayout = floatLayout
        self.id = id
        self.base = base
        self.payloadChecksum = payloadChecksum
    }

    /// Header length H for this frame.
    public var size: Int { FrameHeader.fixedSize + (base == nil ? 0 : ChunkID.encodedSize) + 16 }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: size)
        w.append(bytes: FrameHeader.magic)
        w.append(FrameHeader.version)
        w.append(kind.rawValue)
        w.append(encoding)
        w.append(UInt8(base == nil ? 0 : 1))
        w.append(UInt32(payloadLength))
        w.append(UInt32(rawLength))
        w.append(elementWidth)
        w.append(floatLayout.rawValue)
        w.append(UInt16(0))
        id.write(to: &w)
        base?.write(to: &w)
        w.append(payloadChecksum)
        let headerSum = w.bytes.withUnsafeBytes { Hashing.xxh3_64($0) }
        w.append(headerSum)
        return w.bytes
    }

    /// Parses a header from the start of `bytes`, which must hold at least `size` bytes
    /// (`maxSize` is always enough). `where` names the location for error messages.
    public static func decode(_ bytes: UnsafeRawBufferPointer, where location: String) throws -> FrameHeader {
        var r = ByteReader(bytes, what: "frame header at \(location)")
        let magic = try r.readBytes(4)
        guard magic.elementsEqual(FrameHeader.magic) else {
            throw FormatError.invalid("no frame at \(location): bad magic \(Array(magic).hex)")
        }
        let version = try r.read(UInt8.self)
        guard version == FrameHeader.version else {
            throw FormatError.unsupportedVersion(what: "frame at \(location)", version: Int(version), supported: Int(FrameHeader.version))
        }
        let kindRaw = try r.read(UInt8.self)
        let encoding = try r.read(UInt8.self)
        let flags = try r.read(UInt8.self)
        let payloadLength = Int(try r.read(UInt32.self))
        let rawLength = Int(try r.read(UInt32.self))
        let width = try r.read(UInt8.self)
        let layoutRaw = try r.read(UInt8.self)
        _ = try r.read(UInt16.self)
        let id = try ChunkID.read(from: &r)
        let base = flags & 1 == 1 ? try ChunkID.read(from: &r) : nil
        let payloadChecksum = try r.read(UInt64.self)
        let checkedLength = r.offset
        let headerSum = try r.read(UInt64.self)
        let actual = Hashing.xxh3_64(UnsafeRawBufferPointer(rebasing: bytes[0 ..< checkedLength]))
        guard actual == headerSum else {
            throw FormatError.checksumMismatch(what: "frame header at \(location)", expected: String(headerSum, radix: 16), actual: String(actual, radix: 16))
        }
        // The checksum matched, so these fields were written by a tpstore; unknown values mean a newer one.
        guard let kind = FrameKind(rawValue: kindRaw), let layout = FloatLayout(rawValue: layoutRaw),
              [1, 2, 4, 8].contains(width), flags & ~1 == 0
        else { throw FormatError.invalid("frame at \(location) has fields this tpstore does not know (kind \(kindRaw), layout \(layoutRaw), width \(width), flags \(flags))") }
        guard payloadLength <= maxLength, rawLength <= maxLength else {
            throw FormatError.invalid("frame at \(location) declares \(max(payloadLength, rawLength)) bytes, over the \(maxLength)-byte limit")
        }
        return FrameHeader(kind: kind, encoding: encoding, payloadLength: payloadLength, rawLength: rawLength,
                           elementWidth: width, floatLayout: layout, id: id, base: base, payloadChecksum: payloadChecksum)
    }

    /// Throws unless `payload` is the payload this header describes.
    public func verifyPayload(_ payload: UnsafeRawBufferPointer, where location: String) throws {
        guard payload.count == payloadLength else {
            throw FormatError.truncated(what: "frame payload at \(location)", needed: payloadLength, available: payload.count)
        }
        let sum = Hashing.xxh3_64(payload)
        guard sum == payloadChecksum else {
            throw FormatError.checksumMismatch(what: "frame payload at \(location)", expected: String(payloadChecksum, radix: 16), actual: String(sum, radix: 16))
        }
    }
}

/// What a frame holds.
public enum FrameKind: UInt8, Sendable {
    /// A chunk of some stored file.
    case chunk = 1
    /// A revision manifest (RevisionManifest), so the catalog can be rebuilt from packs alone.
    case manifest = 2
    /// A record that a revision was removed (RevisionTombstone).
    case tombstone = 3
}

/// The header at the start of every pack file.
///
///     off  size  field
///       0     8  magic "TPPACK\0\0"
///       8     4  pack format version (1)
///      12     4  reserved, zero
///
/// Frames follow back to back until the end of the file.
public enum PackHeader {
    public static let magic: [UInt8] = Array("TPPACK".utf8) + [0, 0]
    public static let version: UInt32 = 1
    public static let size = 16

    public static func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: size)
        w.append(bytes: magic)
        w.append(version)
        w.append(UInt32(0))
        return w.bytes
    }

    public static func validate(_ bytes: UnsafeRawBufferPointer, pack: String) throws {
        var r = ByteReader(bytes, what: "pack header of \(pack)")
        guard try r.readBytes(8).elementsEqual(magic) else { throw FormatError.invalid("\(pack) is not a TenPak pack (bad magic)") }
        let version = try r.read(UInt32.self)
        guard version == PackHeader.version else {
            throw FormatError.unsupportedVersion(what: "pack \(pack)", version: Int(version), supported: Int(PackHeader.version))
        }
    }
}
