// The bytes of Xet uploads that `tpstore serve` reads (SPEC section 14.9): xorbs (chunks, each a
// header and LZ4-frame or byte-grouped LZ4-frame or raw bytes, then an optional footer), shards
// (the file reconstruction section), and the hash strings of the CAS API. Written from the
// protocol's description (huggingface.co/docs/xet); every length is checked against the bytes
// actually there, and every failure is a typed `XetFormatError`, never a trap.

/// Why Xet bytes were refused.
struct XetFormatError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Little-endian reads from a byte array with every offset checked.
struct XetCursor {
    let bytes: [UInt8]
    var offset: Int
    let end: Int

    init(_ bytes: [UInt8], from offset: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    var remaining: Int { max(0, end - offset) }

    mutating func take(_ count: Int, _ what: String) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else {
            throw XetFormatError("\(what): needs \(count) bytes at offset \(offset), only \(remaining) remain")
        }
        defer { offset += count }
        return bytes[offset ..< offset + count]
    }

    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what).first ?? 0 }

    mutating func u32(_ what: String) throws -> UInt32 {
        try take(4, what).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    mutating func u64(_ what: String) throws -> UInt64 {
        try take(8, what).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

enum XetHash {
    /// The CAS API's string of a 32-byte hash: each 8-byte word read little-endian, printed as 16
    /// hex digits, the four words in order.
    static func string(_ raw: ArraySlice<UInt8>) -> String {
        let bytes = Array(raw)
        guard bytes.count == 32 else { return "" }
        var out = ""
        for word in 0 ..< 4 {
            for i in (0 ..< 8).reversed() {
                let byte = bytes[word * 8 + i]
                out += String(byte >> 4, radix: 16) + String(byte & 15, radix: 16)
            }
        }
        return out
    }

    /// Whether `text` is a hash string as the CAS API writes them (64 lowercase hex digits).
    static func isHashString(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}

/// LZ4 frames (the LZ4 frame format, version 01) as xorb chunks carry them. Content, block and
/// header checksums are skipped (the file's SHA-256 is the check); dictionaries are refused.
enum LZ4Frame {
    static let magic: UInt32 = 0x184D_2204

    /// Decodes one or more concatenated frames; the result must be exactly `expected` bytes.
    static func decode(_ input: ArraySlice<UInt8>, expected: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(expected)
        var cursor = XetCursor(Array(input))
        repeat {
            guard try cursor.u32("LZ4 frame magic") == magic else { throw XetFormatError("LZ4: not an LZ4 frame (bad magic number)") }
            let flags = try cursor.u8("LZ4 frame flags")
            let blockDescriptor = try cursor.u8("LZ4 block descriptor")
            guard flags >> 6 == 1 else { throw XetFormatError("LZ4: frame version \(flags >> 6) is not 1") }
            guard flags & 0x02 == 0, blockDescriptor & 0x8F == 0 else { throw XetFormatError("LZ4: reserved frame bits are set") }
            guard flags & 0x01 == 0 else { throw XetFormatError("LZ4: frames with a dictionary are not accepted") }
            let independent = flags & 0x20 != 0
            let blockChecksum = flags & 0x10 != 0
            let contentChecksum = flags & 0x04 != 0
            let sizeCode = Int(blockDescriptor >> 4 & 7)
            guard sizeCode >= 4 else { throw XetFormatError("LZ4: block size code \(sizeCode) is not 4 to 7") }
            let blockMax = 1 << (8 + 2 * sizeCode)
            if flags & 0x08 != 0 {
                let size = try cursor.u64("LZ4 content size")
                guard size <= UInt64(expected) else { throw XetFormatError("LZ4: frame declares \(size) bytes, more than the chunk's \(expected)") }
            }
            _ = try cursor.u8("LZ4 header checksum")
            let frameStart = out.count
            while true {
                let word = try cursor.u32("LZ4 block size")
                if word == 0 { break }
                let size = Int(word & 0x7FFF_FFFF)
                guard size <= blockMax else { throw XetFormatError("LZ4: a block of \(size) bytes exceeds the frame's block size \(blockMax)") }
                let block = try cursor.take(size, "LZ4 block")
                if word & 0x8000_0000 != 0 {
                    guard out.count + size <= expected else { throw XetFormatError("LZ4: decodes to more than the chunk's \(expected) bytes") }
                    out.append(contentsOf: block)
                } else {
                    try decodeBlock(block, into: &out, limit: expected, window: independent ? out.count : frameStart)
                }
                if blockChecksum { _ = try cursor.take(4, "LZ4 block checksum") }
            }
            if contentChecksum { _ = try cursor.take(4, "LZ4 content checksum") }
        } while cursor.remaining > 0
        guard out.count == expected else { throw XetFormatError("LZ4: decodes to \(out.count) bytes, the chunk header says \(expected)") }
        return out
    }

    /// One LZ4 block appended to `out`: matches may reach back to `window` (the start of the
    /// block for independent blocks, of the frame for linked ones), never before it.
    static func decodeBlock(_ block: ArraySlice<UInt8>, into out: inout [UInt8], limit: Int, window: Int) throws {
        var i = block.startIndex
        let end = block.endIndex
        func length(_ base: Int) throws -> Int {
            var total = base
            guard base == 15 else { return total }
            while true {
                guard i < end else { throw XetFormatError("LZ4: a length runs past the end of the block") }
                let byte = block[i]
                i += 1
                total += Int(byte)
                guard total <= limit else { throw XetFormatError("LZ4: a length exceeds the chunk's size") }
                if byte != 255 { return total }
            }
        }
        while i < end {
            let token = block[i]
            i += 1
            let literals = try length(Int(token >> 4))
            guard literals <= end - i else { throw XetFormatError("LZ4: literals run past the end of the block") }
            guard out.count + literals <= limit else { throw XetFormatError("LZ4: decodes to more than the chunk's \(limit) bytes") }
            out.append(contentsOf: block[i ..< i + literals])
            i += literals
            if i == end { return }  // the last sequence has literals only
            guard end - i >= 2 else { throw XetFormatError("LZ4: a match offset is cut off") }
            let offset = Int(block[i]) | Int(block[i + 1]) << 8
            i += 2
            guard offset > 0, offset <= out.count - window else { throw XetFormatError("LZ4: a match reaches back \(offset) bytes, before the data") }
            let count = try length(Int(token & 15)) + 4
            guard out.count + count <= limit else { throw XetFormatError("LZ4: decodes to more than the chunk's \(limit) bytes") }
            // A match that overlaps what it writes repeats its last `offset` bytes: copied as
            // whole pieces (the piece first, so `out` is not appended from a view of itself).
            let piece = Array(out[(out.count - offset) ..< (out.count - offset + min(offset, count))])
            var left = count
            while left > 0 {
                let n = min(left, piece.count)
                out.append(contentsOf: piece[0 ..< n])
                left -= n
            }
        }
    }
}

/// One xorb as uploaded: its chunks (where each starts, and its header), in order.
struct Xorb {
    struct Chunk {
        let scheme: UInt8
        let dataStart: Int
        let compressedLength: Int
        let length: Int
    }

    /// xet-core's limits: a xorb is closed before its chunks' data passes 64 MiB or it holds 8192
    /// chunks. Stored (incompressible) chunks keep their bytes, plus an 8-byte header each, plus a
    /// footer of under 64 bytes per chunk: the serialized bound allows for all of that.
    static let maxChunks = 8192
    static let maxBytes = (64 << 20) + maxChunks * (8 + 64) + (64 << 10)
    static let maxChunk = 128 << 10
    static let footerIdent = Array("XETBLOB".utf8)

    let bytes: [UInt8]
    let chunks: [Chunk]

    /// Parses every chunk header (lengths against the bytes there); decodes nothing yet.
    init(_ bytes: [UInt8]) throws {
        guard bytes.count <= Xorb.maxBytes else { throw XetFormatError("xorb: \(bytes.count) bytes, more than the limit of \(Xorb.maxBytes)") }
        self.bytes = bytes
        var cursor = XetCursor(bytes)
        var chunks: [Chunk] = []
        while cursor.remaining > 0 {
            if cursor.remaining >= 7, Array(bytes[cursor.offset ..< cursor.offset + 7]) == Xorb.footerIdent {
                // The footer (hashes and boundaries), then its length: it must span the rest exactly.
                let footer = cursor.remaining
                guard footer >= 4 else { throw XetFormatError("xorb: the footer is cut off") }
                var tail = XetCursor(bytes, from: bytes.count - 4)
                let info = Int(try tail.u32("xorb footer length"))
                guard info + 4 == footer else { throw XetFormatError("xorb: the footer says \(info) bytes, \(footer - 4) are there") }
                break
            }
            let version = try cursor.u8("xorb chunk header")
            let compressed = try cursor.take(3, "xorb chunk header").reversed().reduce(0) { $0 << 8 | Int($1) }
            let scheme = try cursor.u8("xorb chunk header")
            let length = try cursor.take(3, "xorb chunk header").reversed().reduce(0) { $0 << 8 | Int($1) }
            let n = chunks.count
            guard n < Xorb.maxChunks else { throw XetFormatError("xorb: more than \(Xorb.maxChunks) chunks") }
            guard version == 0 else { throw XetFormatError("xorb: chunk \(n) has header version \(version), not 0") }
            guard scheme <= 2 else { throw XetFormatError("xorb: chunk \(n) has compression scheme \(scheme) (0 none, 1 LZ4, 2 byte-grouped LZ4)") }
            // An empty chunk holds nothing and costs a loop turn per use: none are made, none are taken.
            guard length > 0, compressed > 0 else { throw XetFormatError("xorb: chunk \(n) is empty") }
            guard length <= Xorb.maxChunk else { throw XetFormatError("xorb: chunk \(n) is \(length) bytes, more than \(Xorb.maxChunk)") }
            guard scheme != 0 || compressed == length else { throw XetFormatError("xorb: uncompressed chunk \(n) has two lengths (\(compressed), \(length))") }
            let start = cursor.offset
            _ = try cursor.take(compressed, "xorb chunk \(n)")
            chunks.append(Chunk(scheme: scheme, dataStart: start, compressedLength: compressed, length: length))
        }
        guard !chunks.isEmpty else { throw XetFormatError("xorb: no chunks") }
        self.chunks = chunks
    }

    /// Chunk `index`, decoded and checked against its header's length.
    func chunk(_ index: Int) throws -> [UInt8] {
        guard chunks.indices.contains(index) else { throw XetFormatError("xorb: no chunk \(index) (it has \(chunks.count))") }
        let chunk = chunks[index]
        let data = bytes[chunk.dataStart ..< chunk.dataStart + chunk.compressedLength]
        switch chunk.scheme {
        case 0: return Array(data)
        case 1: return try LZ4Frame.decode(data, expected: chunk.length)
        default: return Xorb.ungroup4(try LZ4Frame.decode(data, expected: chunk.length))
        }
    }

    /// Byte grouping 4 undone: the data is four groups (bytes 0, 1, 2, 3 mod 4 of the original),
    /// the first `count % 4` groups one byte longer.
    static func ungroup4(_ grouped: [UInt8]) -> [UInt8] {
        let n = grouped.count, split = n / 4, rem = n % 4
        var starts = [0, 0, 0, 0]
        for g in 1 ..< 4 { starts[g] = starts[g - 1] + split + (g - 1 < rem ? 1 : 0) }
        var out = [UInt8](repeating: 0, count: n)
        for j in 0 ..< n { out[j] = grouped[starts[j & 3] + j >> 2] }
        return out
    }
}

/// The file section of a shard: each file's segments (xorb, chunk range, bytes) and, when the
/// client sent it, the file's SHA-256.
struct XetShard {
    struct Segment {
        let xorb: String
        let chunkStart: Int
        let chunkEnd: Int
        let bytes: Int
    }

    struct File {
        let hash: String
        let segments: [Segment]
        let sha256: String?
        var size: Int { segments.reduce(0) { $0 + $1.bytes } }
    }

    static let maxBytes = 64 << 20
    static let maxFiles = 100_000
    static let tag: [UInt8] = Array("HFRepoMetaData".utf8) + [0, 85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
    static let entry = 48

    let files: [File]

    init(_ bytes: [UInt8]) throws {
        guard bytes.count <= XetShard.maxBytes else { throw XetFormatError("shard: \(bytes.count) bytes, more than the limit of \(XetShard.maxBytes)") }
        var cursor = XetCursor(bytes)
        guard Array(try cursor.take(32, "shard header")) == XetShard.tag else { throw XetFormatError("shard: not a shard (bad header tag)") }
        let version = try cursor.u64("shard header version")
        guard version == 2 else { throw XetFormatError("shard: header version \(version), not 2") }
        _ = try cursor.u64("shard footer size")
        var files: [File] = []
        while true {
            let hash = try cursor.take(32, "shard file entry")
            let flags = try cursor.u32("shard file entry")
            let count = Int(try cursor.u32("shard file entry"))
            _ = try cursor.take(8, "shard file entry")
            if hash.allSatisfy({ $0 == 0xFF }) { break }  // the bookend: the file section ends
            let n = files.count
            guard n < XetShard.maxFiles else { throw XetFormatError("shard: more than \(XetShard.maxFiles) files") }
            // Every entry that follows is 48 bytes: bound the count by the bytes there first.
            let verification = flags & (1 << 31) != 0
            let metadata = flags & (1 << 30) != 0
            guard count <= cursor.remaining / XetShard.entry else {
                throw XetFormatError("shard: file \(n) declares \(count) segments, the shard cannot hold them")
            }
            var segments: [Segment] = []
            for s in 0 ..< count {
                let xorb = XetHash.string(try cursor.take(32, "shard segment"))
                _ = try cursor.u32("shard segment flags")
                let bytes = Int(try cursor.u32("shard segment"))
                let start = Int(try cursor.u32("shard segment"))
                let end = Int(try cursor.u32("shard segment"))
                guard start < end, bytes > 0 else { throw XetFormatError("shard: file \(n) segment \(s) has an empty chunk range [\(start), \(end)) or no bytes") }
                segments.append(Segment(xorb: xorb, chunkStart: start, chunkEnd: end, bytes: bytes))
            }
            if verification { _ = try cursor.take(count * XetShard.entry, "shard verification entries") }
            var sha256: String?
            if metadata {
                let digest = try cursor.take(32, "shard file metadata")
                _ = try cursor.take(16, "shard file metadata")
                // Stored as the hash type's four little-endian words, as the hash strings are.
                sha256 = XetHash.string(digest)
            }
            files.append(File(hash: XetHash.string(hash), segments: segments, sha256: sha256))
        }
        self.files = files
    }
}
