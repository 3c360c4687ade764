import Foundation
import TenPakCodecs
import TenPakFormat
import TenPakModelStore

/// Parsers of bytes the store wrote and reads back (a damaged disk or pack is outside input too):
/// every chunk decoder, frame headers, frame bundles, revision manifests, tombstones, safetensors
/// headers and base sketches.
func storedFormatTargets() throws -> [FuzzTarget] {
    let element = ElementType(width: 4, layout: .f32)
    var base = [UInt8](), target = [UInt8]()
    for i in 0 ..< 2048 {
        let f = Float(sin(Double(i)) * 0.05)
        withUnsafeBytes(of: f.bitPattern) { base.append(contentsOf: $0) }
        withUnsafeBytes(of: (f * 1.001).bitPattern) { target.append(contentsOf: $0) }
    }
    var output = [UInt8](repeating: 0, count: target.count)
    let id = target.withUnsafeBytes { ChunkID(of: $0) }
    var targets: [FuzzTarget] = Encoding.allCases.map { encoding in
        let payload = target.withUnsafeBytes { t in base.withUnsafeBytes { b in ChunkCodec.encodeForced(encoding, t, element: element, base: b) } }
        return FuzzTarget("chunk decoder \(encoding)", seeds: [payload]) { input in
            try input.withUnsafeBytes { p in
                try output.withUnsafeMutableBytes { o in
                    try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoding, element: element, base: $0, into: o) }
                }
            }
        }
    }
    // The context-delta payload alone, both lane counts (mode 2 as written now, mode 1 as older
    // stores hold it), over more elements than one 32-lane group and one 2048-element block, so the
    // vector kernel, the lane-by-lane groups and the bounds-checked tail all see mutated streams.
    var wideBase = [UInt8](), wideTarget = [UInt8]()
    for i in 0 ..< 5000 {
        let f = Float(sin(Double(i) * 0.37) * 0.05)
        withUnsafeBytes(of: f.bitPattern) { wideBase.append(contentsOf: $0) }
        withUnsafeBytes(of: (f * 1.0007 + 1e-6).bitPattern) { wideTarget.append(contentsOf: $0) }
    }
    var wideOutput = [UInt8](repeating: 0, count: wideTarget.count)
    let deltaSeeds = [32, 4].map { lanes in
        wideTarget.withUnsafeBytes { t in wideBase.withUnsafeBytes { b in
            ContextDeltaCodec._encode(target: t, base: b, layout: .f32, tableLog: 10, decay: true, lanes: lanes) } }
    }
    targets.append(FuzzTarget("context-delta payload", seeds: deltaSeeds) { input in
        try input.withUnsafeBytes { p in
            try wideOutput.withUnsafeMutableBytes { o in
                try wideBase.withUnsafeBytes { try ContextDeltaCodec.decode(payload: p, base: $0, layout: .f32, output: o) }
            }
        }
    })
    let frame = FrameHeader(kind: .chunk, encoding: 6, payloadLength: 100, rawLength: 8192, elementWidth: 4, floatLayout: .f32,
                            id: id, base: id, payloadChecksum: 42).encoded()
    targets.append(FuzzTarget("frame header", seeds: [frame]) { input in
        _ = try input.withUnsafeBytes { try FrameHeader.decode($0, where: "fuzz") }
    })
    let bundle: [UInt8] = FrameBundle.header(count: 2) + [Array(target.prefix(512)), Array(base.prefix(300))].flatMap { p in
        FrameHeader(kind: .chunk, encoding: 0, payloadLength: p.count, rawLength: p.count, elementWidth: 4, floatLayout: .f32,
                    id: p.withUnsafeBytes { ChunkID(of: $0) }, base: nil, payloadChecksum: Hashing.xxh3_64(p)).encoded() + p
    }
    targets.append(FuzzTarget("frame bundle", seeds: [bundle]) { input in
        _ = try input.withUnsafeBytes { try FrameBundle.parse($0, maxFrames: 16) }
    })
    let manifest = try RevisionManifest(model: "m", revision: "r", createdAt: 1, files: [
        .init(path: "a.safetensors", size: 8192, sha256: Hashing.sha256(target), kind: .safetensors, chunks: [.init(rawLength: 8192, id: id)]),
    ]).encoded()
    targets.append(FuzzTarget("revision manifest", seeds: [manifest]) { input in
        _ = try input.withUnsafeBytes { try RevisionManifest.decode($0) }
    })
    let tombstone = try RevisionTombstone(model: "m", revision: "r", manifest: id, removedAt: 5).encoded()
    targets.append(FuzzTarget("tombstone", seeds: [tombstone]) { input in
        _ = try input.withUnsafeBytes { try RevisionTombstone.decode($0) }
    })
    let safetensors = Array(#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}}"#.utf8)
    targets.append(FuzzTarget("safetensors header", seeds: [safetensors]) { json in
        _ = try json.withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: 8 + json.count + 32) }
    })
    targets.append(FuzzTarget("base sketch", seeds: [sketchSeed(base)], fixup: resealSketch) { input in
        _ = try BaseSketch.decode(input)
    })
    return targets
}

/// A version-1 sketch of two entries (SPEC §10 "Base choice", layout in BaseSketch.swift), written
/// byte by byte from the documented layout: the fuzzer's seed doubles as a check of that text.
private func sketchSeed(_ values: [UInt8]) -> [UInt8] {
    var body: [UInt8] = Array("TPSK".utf8) + [1, 2]
    for (signature, format, width) in [(Int64(7), UInt8(1), 4), (Int64(-3), UInt8(2), 2)] {
        withUnsafeBytes(of: signature.littleEndian) { body.append(contentsOf: $0) }
        body.append(format)
        withUnsafeBytes(of: UInt16(16).littleEndian) { body.append(contentsOf: $0) }
        body += values.prefix(16 * width)
    }
    return resealSketch(body + [UInt8](repeating: 0, count: 8))
}

/// Rewrites a sketch's trailing XXH3-64 over the bytes before it.
private func resealSketch(_ bytes: [UInt8]) -> [UInt8] {
    guard bytes.count >= 8 else { return bytes }
    var out = Array(bytes.dropLast(8))
    withUnsafeBytes(of: Hashing.xxh3_64(out).littleEndian) { out.append(contentsOf: $0) }
    return out
}
