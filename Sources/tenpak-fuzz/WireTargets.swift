import Foundation
import TenPakFormat
import TenPakHTTP
import TenPakLFS
import TenPakModelStore
import TenPakReader

/// Parsers of bytes that arrive from other programs: the transfer protocol's manifest and id
/// lists, the hub API's router, commit bodies and `Range` headers, uploaded tar streams, git-lfs
/// agent requests, byte ranges on the command line and the server's token file.
func wireTargets(scratch: String) -> [FuzzTarget] {
    let chunk = [UInt8](repeating: 7, count: 100), manifestChunk = [UInt8](repeating: 9, count: 60)
    let chunkID = chunk.withUnsafeBytes { ChunkID(of: $0) }.hex
    let manifestID = manifestChunk.withUnsafeBytes { ChunkID(of: $0) }.hex
    let sha = Hashing.sha256(chunk).hex
    let transferManifest = """
        {"version":1,"model":"org/m","revision":"r1","manifest":"\(manifestID)",\
        "files":[{"path":"a.safetensors","size":100,"sha256":"\(sha)","chunks":[0]}],\
        "chunks":[{"id":"\(chunkID)","length":100,"frame":140,"encoding":0},\
        {"id":"\(manifestID)","length":60,"frame":100,"encoding":1,"base":"\(chunkID)"}]}
        """
    let lfsLines = [
        #"{"event":"init","operation":"download","remote":"origin","concurrent":true,"concurrenttransfers":3}"#,
        #"{"event":"upload","oid":"\#(sha)","size":100,"path":"/tmp/x","action":null}"#,
        #"{"event":"download","oid":"\#(sha)","size":100,"action":null}"#,
        #"{"event":"terminate"}"#,
    ]
    let commit = """
        {"key":"header","value":{"summary":"Upload","description":"","parentCommit":"\(String(repeating: "ab", count: 20))"}}
        {"key":"file","value":{"content":"aGVsbG8=","path":"README.md","encoding":"base64"}}
        {"key":"lfsFile","value":{"path":"model.safetensors","algo":"sha256","oid":"\(sha)","size":100}}
        {"key":"deletedFile","value":{"path":"old.txt"}}
        {"key":"deletedFolder","value":{"path":"logs/"}}
        """
    let routes = [
        "GET /org/m/resolve/main/model.safetensors", "GET /m/resolve/0123456789abcdef0123456789abcdef01234567/dir/a%20b.json",
        "GET /api/models/org/m/revision/main", "GET /api/models/m/tree/main/sub/dir", "POST /api/models/org/m/commit/main",
        "POST /org/m.git/info/lfs/objects/batch", "PUT /m.git/info/lfs/objects/\(sha)/100",
        "GET /api/tenpak/v1/org/m/manifest/r1", "POST /api/tenpak/v1/m/missing", "POST /api/tenpak/v1/org/m/objects/\(sha)/commit",
        "GET /api/models/org/m/xet-write-token/main", "POST /api/xet-cas/v1/xorbs/default/\(sha)", "POST /api/xet-cas/v1/shards",
    ]
    var tarTargetCount = 0
    return [
        FuzzTarget("transfer manifest", seeds: [Array(transferManifest.utf8)]) { _ = try TransferManifest.decode($0) },
        FuzzTarget("transfer ids", seeds: [Array(#"{"ids":["\#(chunkID)","\#(manifestID)"]}"#.utf8)]) { try RequestParsers.chunkIDs($0) },
        FuzzTarget("git-lfs agent request", seeds: lfsLines.map { Array($0.utf8) }) { _ = try LFSRequest.parse(String(decoding: $0, as: UTF8.self)) },
        FuzzTarget("hub commit body", seeds: [Array(commit.utf8)]) { try RequestParsers.commit($0) },
        FuzzTarget("router", seeds: routes.map { Array($0.utf8) }) { input in
            let line = String(decoding: input, as: UTF8.self)
            let parts = line.split(separator: " ", maxSplits: 1)
            try RequestParsers.route(method: String(parts.first ?? ""), path: parts.count > 1 ? String(parts[1]) : "/")
        },
        FuzzTarget("xet xorb", seeds: [XetSeed.xorb]) { try RequestParsers.xorb($0) },
        FuzzTarget("xet shard", seeds: [XetSeed.shard]) { try RequestParsers.shard($0) },
        FuzzTarget("Range header", seeds: ["bytes=0-99", "bytes=-5", "bytes=10-", "bytes=0-1,5-9"].map { Array($0.utf8) }) { input in
            guard RequestParsers.range(String(decoding: input, as: UTF8.self), size: 1000) else { throw Refused() }
        },
        FuzzTarget("byte range", seeds: ["0-99", "-5", "10-"].map { Array($0.utf8) }) { input in
            _ = try ByteRange(parsing: String(decoding: input, as: UTF8.self))
        },
        FuzzTarget("token file", seeds: [Array(#"{"tokens":[{"token":"tp-fuzz-token-1","read":["org/*"],"write":["org/m"],"name":"a"}],"anonymous":{"read":["*"]}}"#.utf8)]) {
            _ = try AccessPolicy.parse($0, source: "fuzz")
        },
        FuzzTarget("tar upload", seeds: [TarSeed.plain, TarSeed.pax], fixup: TarSeed.resealFirstHeader) { input in
            // A fresh directory per archive (entries are created exclusively); emptied now and then.
            tarTargetCount += 1
            if tarTargetCount % 256 == 0 { try? FileManager.default.removeItem(atPath: scratch) }
            let directory = scratch + "/\(tarTargetCount)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let extractor = TarExtractor(directory: directory)
            // Fed in three pieces: the state machine must not care where the network cut the stream.
            let cuts = [0, input.count / 3, input.count * 2 / 3, input.count]
            try input.withUnsafeBytes { all in
                for k in 0 ..< 3 { try extractor.feed(UnsafeRawBufferPointer(rebasing: all[cuts[k] ..< cuts[k + 1]])) }
            }
            _ = try extractor.finish()
        },
    ]
}

/// A xorb (a stored chunk, an LZ4 one with an overlapping match, a byte-grouped one of stored
/// LZ4 blocks, then a footer) and a shard of two files using it, written byte by byte (SPEC 14.9).
enum XetSeed {
    static func le(_ value: Int, _ count: Int) -> [UInt8] { (0 ..< count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
    static func frame(_ block: [UInt8], stored: Bool) -> [UInt8] {
        [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x00] + le(block.count | (stored ? 1 << 31 : 0), 4) + block + le(0, 4)
    }
    static func chunk(_ scheme: UInt8, _ payload: [UInt8], length: Int) -> [UInt8] { [0] + le(payload.count, 3) + [scheme] + le(length, 3) + payload }
    static let xorb: [UInt8] = chunk(0, Array("stored chunk\n".utf8), length: 13)
        + chunk(1, frame([0x8F] + Array("abcdefgh".utf8) + [8, 0, 255, 46, 0x50] + Array("XYZ12".utf8), stored: false), length: 333)
        + chunk(2, frame(Array(0 ..< 30), stored: true), length: 30)
        + Array("XETBLOB".utf8) + [UInt8](repeating: 0, count: 9) + le(16, 4)
    static let shard: [UInt8] = {
        var out = Array("HFRepoMetaData".utf8) + [0, 85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169] + le(2, 8) + le(200, 8)
        for (flags, segments) in [(1 << 30, 1), (1 << 31, 2)] {
            out += [UInt8](repeating: 0x11, count: 32) + le(flags, 4) + le(segments, 4) + le(0, 8)
            for _ in 0 ..< segments { out += [UInt8](repeating: 0xA1, count: 32) + le(0, 4) + le(384, 4) + le(0, 4) + le(3, 4) }
            out += [UInt8](repeating: 0x22, count: 48 * (flags == 1 << 31 ? segments : 1))
        }
        return out + [UInt8](repeating: 0xFF, count: 32) + le(0, 16)
    }()
}

/// A parser's answer that is a refusal without an error of its own.
struct Refused: Error {}

/// ustar archives written byte by byte (POSIX.1-1988 header layout), for the tar seeds.
enum TarSeed {
    static let block = 512

    static func header(name: String, size: Int, type: UInt8) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { h[offset + i] = b } }
        put(name, at: 0)
        put("0000644", at: 100)
        put("0000000", at: 108)
        put("0000000", at: 116)
        let octal = String(size, radix: 8)
        put(String(repeating: "0", count: max(0, 11 - octal.count)) + octal, at: 124)
        put("00000000000", at: 136)
        h[156] = type
        put("ustar", at: 257)
        put("00", at: 263)
        return seal(h)
    }

    /// The checksum field: the sum of the header's bytes with the field itself read as spaces.
    static func seal(_ header: [UInt8]) -> [UInt8] {
        var h = header
        for i in 148 ..< 156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let digits = Array(String(sum, radix: 8).utf8)
        let field = [UInt8](repeating: UInt8(ascii: "0"), count: max(0, 6 - digits.count)) + digits.suffix(6) + [0, 0x20]
        for (i, b) in field.enumerated() { h[148 + i] = b }
        return h
    }

    static func entry(name: String, data: [UInt8], type: UInt8 = UInt8(ascii: "0")) -> [UInt8] {
        header(name: name, size: data.count, type: type) + data + [UInt8](repeating: 0, count: (block - data.count % block) % block)
    }

    static let end = [UInt8](repeating: 0, count: 2 * block)
    static let plain = entry(name: "README.md", data: Array("hello\n".utf8)) + entry(name: "sub/model.safetensors", data: [UInt8](repeating: 3, count: 700)) + end
    static let pax: [UInt8] = {
        let record = "path=" + String(repeating: "d/", count: 60) + "long.bin\n"
        let line = "\(record.utf8.count + 4) \(record)"   // the length counts its own 3 digits and the space
        return entry(name: "PaxHeader", data: Array(line.utf8), type: UInt8(ascii: "x")) + entry(name: "short", data: [1, 2, 3]) + end
    }()

    /// Recomputes the first header's checksum, so damage past it reaches the entry logic.
    static func resealFirstHeader(_ bytes: [UInt8]) -> [UInt8] {
        guard bytes.count >= block else { return bytes }
        return seal(Array(bytes[0 ..< block])) + bytes[block...]
    }
}
