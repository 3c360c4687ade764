// Mutation fuzzer for everything that parses stored or uploaded bytes: the safetensors header
// parser, frame headers, manifests, tombstones and every chunk decoder. Each input is a valid
// encoding with random damage (bit flips, truncation, splices, random bytes); a decoder may throw
// but must not crash, hang or read out of bounds (run under a debug build for bounds checks).
//
// Usage: tenpak-fuzz [ITERATIONS] [SEED]    (default 1,000,000 and 1)
import Foundation
import TenPakCodecs
import TenPakFormat

extension SplitMix64 {
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0 ..< n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

let arguments = CommandLine.arguments
let iterations = arguments.count > 1 ? Int(arguments[1]) ?? 1_000_000 : 1_000_000
var rng = SplitMix64(seed: arguments.count > 2 ? UInt64(arguments[2]) ?? 1 : 1)

@MainActor func mutate(_ input: [UInt8]) -> [UInt8] {
    var b = input
    switch rng.below(6) {
    case 0 where !b.isEmpty: b[rng.below(b.count)] ^= UInt8(1 << rng.below(8))
    case 1 where !b.isEmpty: for _ in 0 ..< 1 + rng.below(8) { b[rng.below(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
    case 2: b = Array(b.prefix(rng.below(b.count + 1)))
    case 3: b.insert(contentsOf: rng.bytes(1 + rng.below(16)), at: rng.below(b.count + 1))
    case 4 where b.count > 8: let i = rng.below(b.count - 4); b.replaceSubrange(i ..< i + 4, with: [0xFF, 0xFF, 0xFF, 0x7F])
    default: b = rng.bytes(rng.below(256))
    }
    return b
}

// Seeds: valid inputs of every kind.
let element = ElementType(width: 4, layout: .f32)
var base = [UInt8](), target = [UInt8]()
for i in 0 ..< 2048 {
    let f = Float(sin(Double(i)) * 0.05)
    withUnsafeBytes(of: f.bitPattern) { base.append(contentsOf: $0) }
    withUnsafeBytes(of: (f * 1.001).bitPattern) { target.append(contentsOf: $0) }
}
var chunkSeeds: [(Encoding, [UInt8])] = []
for encoding in Encoding.allCases {
    let payload = target.withUnsafeBytes { t in base.withUnsafeBytes { b in ChunkCodec.encodeForced(encoding, t, element: element, base: b) } }
    chunkSeeds.append((encoding, payload))
}
let id = target.withUnsafeBytes { ChunkID(of: $0) }
let frameSeed = FrameHeader(kind: .chunk, encoding: 6, payloadLength: 100, rawLength: 8192, elementWidth: 4, floatLayout: .f32,
                            id: id, base: id, payloadChecksum: 42).encoded()
let manifestSeed = try! RevisionManifest(model: "m", revision: "r", createdAt: 1, files: [
    .init(path: "a.safetensors", size: 8192, sha256: Hashing.sha256(target), kind: .safetensors, chunks: [.init(rawLength: 8192, id: id)]),
]).encoded()
let tombstoneSeed = try! RevisionTombstone(model: "m", revision: "r", manifest: id, removedAt: 5).encoded()
let bundleSeed: [UInt8] = {
    let payloads = [Array(target.prefix(512)), Array(base.prefix(300))]
    return FrameBundle.header(count: payloads.count) + payloads.flatMap { p in
        FrameHeader(kind: .chunk, encoding: 0, payloadLength: p.count, rawLength: p.count, elementWidth: 4, floatLayout: .f32,
                    id: p.withUnsafeBytes { ChunkID(of: $0) }, base: nil, payloadChecksum: Hashing.xxh3_64(p)).encoded() + p
    }
}()
let safetensorsJSON = Array(#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}}"#.utf8)

var thrown = 0, accepted = 0
let started = Date()
var output = [UInt8](repeating: 0, count: target.count)
for i in 0 ..< iterations {
    let ok: Bool
    switch i % 6 {
    case 0:
        let (encoding, seed) = chunkSeeds[rng.below(chunkSeeds.count)]
        let input = mutate(seed)
        ok = (try? input.withUnsafeBytes { p in
            try output.withUnsafeMutableBytes { o in
                try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoding, element: element, base: $0, into: o) }
            }
        }) != nil
    case 1:
        let input = mutate(frameSeed)
        ok = (try? input.withUnsafeBytes { try FrameHeader.decode($0, where: "fuzz") }) != nil
    case 2:
        let input = mutate(manifestSeed)
        ok = (try? input.withUnsafeBytes { try RevisionManifest.decode($0) }) != nil
    case 3:
        let input = mutate(tombstoneSeed)
        ok = (try? input.withUnsafeBytes { try RevisionTombstone.decode($0) }) != nil
    case 4:
        let input = mutate(bundleSeed)
        ok = (try? input.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 16) }) != nil
    default:
        let json = mutate(safetensorsJSON)
        ok = (try? json.withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: 8 + json.count + 32) }) != nil
    }
    if ok { accepted += 1 } else { thrown += 1 }
    if (i + 1) % 200_000 == 0 {
        print("\(i + 1) inputs: \(thrown) rejected, \(accepted) accepted, \(Int(Date().timeIntervalSince(started))) s")
    }
}
print("fuzzed \(iterations) inputs in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: \(thrown) rejected with an error, \(accepted) accepted, no crash")
