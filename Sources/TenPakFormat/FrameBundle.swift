/// A frame bundle: many chunk frames in one body of the transfer protocol (SPEC §19), as they are
/// stored in packs (header and payload, verbatim), behind a small header of its own.
///
///     off  size  field
///       0     4  magic "TPXB"
///       4     1  bundle version (1)
///       5     3  reserved, zero
///       8     4  frame count N
///      12   ...  N frames back to back (SPEC §5), nothing after the last
///
/// Parsing trusts nothing: each frame's header checksum is checked before its lengths are used,
/// each payload must lie inside the bundle and match its checksum, N is bounded by the caller and
/// by the bytes present (a frame is at least 84 bytes), and a bundle that ends early or has bytes
/// after its last frame is refused.
public enum FrameBundle {
    public static let magic: [UInt8] = Array("TPXB".utf8)
    public static let version: UInt8 = 1
    public static let headerSize = 12

    /// One frame of a parsed bundle: its header and where its payload lies in the bundle.
    public struct Entry: Sendable {
        public let header: FrameHeader
        /// Offset of the frame (its header) in the bundle, and of its payload.
        public let frameOffset: Int
        public let payloadOffset: Int
        public var frameLength: Int { header.size + header.payloadLength }
    }

    /// The bundle header for `count` frames; the frames follow it.
    public static func header(count: Int) -> [UInt8] {
        var w = ByteWriter(capacity: headerSize)
        w.append(bytes: magic)
        w.append(version)
        w.append(UInt8(0))
        w.append(UInt16(0))
        w.append(UInt32(count))
        return w.bytes
    }

    /// Parses and checks a bundle of at most `maxFrames` frames (see the type's doc).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxFrames: Int) throws -> [Entry] {
        var r = ByteReader(bytes, what: "frame bundle")
        guard try r.readBytes(4).elementsEqual(magic) else {
            throw FormatError.invalid("not a frame bundle (bad magic)")
        }
        let version = try r.read(UInt8.self)
        guard version == FrameBundle.version else {
            throw FormatError.unsupportedVersion(what: "frame bundle", version: Int(version), supported: Int(FrameBundle.version))
        }
        guard try r.read(UInt8.self) == 0, try r.read(UInt16.self) == 0 else {
            throw FormatError.invalid("frame bundle: reserved bytes are not zero")
        }
        let count = Int(try r.read(UInt32.self))
        let smallestFrame = FrameHeader.fixedSize + 16
        guard count <= maxFrames, count <= (bytes.count - headerSize) / smallestFrame else {
            throw FormatError.invalid("frame bundle declares \(count) frames; at most \(min(maxFrames, (bytes.count - headerSize) / smallestFrame)) fit here")
        }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var offset = headerSize
        for i in 0 ..< count {
            let place = "frame \(i) of the bundle (offset \(offset))"
            guard bytes.count - offset >= smallestFrame else {
                throw FormatError.truncated(what: place, needed: smallestFrame, available: bytes.count - offset)
            }
            // Safe: offset ≤ bytes.count (checked above); the header decoder reads inside this slice only.
            let header = try FrameHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[offset...]), where: place)
            let payloadOffset = offset + header.size
            guard header.payloadLength <= bytes.count - payloadOffset else {
                throw FormatError.truncated(what: "payload of \(place)", needed: header.payloadLength, available: bytes.count - payloadOffset)
            }
            // Safe: payloadOffset + payloadLength ≤ bytes.count (checked above).
            try header.verifyPayload(UnsafeRawBufferPointer(rebasing: bytes[payloadOffset ..< payloadOffset + header.payloadLength]), where: place)
            entries.append(Entry(header: header, frameOffset: offset, payloadOffset: payloadOffset))
            offset = payloadOffset + header.payloadLength
        }
        guard offset == bytes.count else {
            throw FormatError.invalid("frame bundle: \(bytes.count - offset) bytes after its last frame")
        }
        return entries
    }
}
