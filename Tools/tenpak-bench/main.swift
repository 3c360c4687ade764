// Per-codec microbenchmark: encode and decode speed of every chunk encoding, on the chunks of a
// real base / fine-tune pair of safetensors files, one thread, in MB per CPU-second of that thread
// (MB = 1e6 bytes of raw chunk). Also the primitives put and get spend their time in.
//
// Usage: tenpak-bench BASE.safetensors FINETUNE.safetensors [--bf16] [--limit MB] [--repeat N] [--only NAME]
//                    [--kernels portable|avx2|avx512]
//        (swift run -c release tenpak-bench .corpus/minilm-base/model.safetensors .corpus/minilm-ft105/model.safetensors)
//
// The chunks are cut as put cuts them (1 MiB counted from each tensor's start) and each fine-tune
// chunk is paired with the base tensor's chunk of the same name and index. `--bf16` casts both
// files' F32 tensors to BF16 first (round to nearest even, as Tools/cast_safetensors.py does).
// `--only NAME` runs just the rows whose label starts with NAME (e.g. `--only context-delta`,
// for a profiler), and no primitives. `--kernels` caps the entropy coders' vector kernels
// (`VectorKernels.limit`; default: the widest this CPU has). Times are thread CPU time (CLOCK_THREAD_CPUTIME_ID), the best of `--repeat` runs: the machine
// is shared, and CPU time is what a busy core costs. Nothing here asserts a speed.
import Foundation
import TenPakCodecs
import TenPakFormat

struct Chunk {
    let raw: [UInt8]
    let base: [UInt8]?
    let element: ElementType
}

enum BenchError: Error, CustomStringConvertible {
    case usage(String)
    var description: String {
        switch self { case let .usage(m): return m }
    }
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Best (lowest) CPU time of `repeat` runs of `body`.
func measure(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0 ..< max(1, repeats) {
        let t0 = threadCPUSeconds()
        try body()
        best = min(best, threadCPUSeconds() - t0)
    }
    return best
}

/// Tensors of a safetensors file, with their bytes.
struct Tensor {
    let name: String
    let dtype: DType
    let shape: [Int]
    let bytes: [UInt8]
}

func loadTensors(_ path: String, bf16: Bool) throws -> [Tensor] {
    let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    let header: SafetensorsHeader = try data.withUnsafeBytes { raw in
        let length = try SafetensorsHeader.headerLength(prefix: UnsafeRawBufferPointer(rebasing: raw[0 ..< min(8, raw.count)]), fileSize: raw.count)
        return try SafetensorsHeader.parse(json: UnsafeRawBufferPointer(rebasing: raw[8 ..< 8 + length]), fileSize: raw.count)
    }
    return header.tensors.map { t in
        let bytes = Array(data[header.dataStart + t.dataRange.lowerBound ..< header.dataStart + t.dataRange.upperBound])
        guard bf16, t.dtype.name == "F32", let dtype = DType(name: "BF16") else {
            return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, bytes: bytes)
        }
        var out = [UInt8](repeating: 0, count: bytes.count / 2)
        for i in 0 ..< bytes.count / 4 {
            let v = UInt32(bytes[4 * i]) | UInt32(bytes[4 * i + 1]) << 8 | UInt32(bytes[4 * i + 2]) << 16 | UInt32(bytes[4 * i + 3]) << 24
            // Round to nearest even; NaN stays NaN (quieted).
            let isNaN = (v & 0x7FFF_FFFF) > 0x7F80_0000
            let r = isNaN ? (v >> 16) | 0x40 : (v &+ 0x7FFF &+ ((v >> 16) & 1)) >> 16
            out[2 * i] = UInt8(truncatingIfNeeded: r)
            out[2 * i + 1] = UInt8(truncatingIfNeeded: r >> 8)
        }
        return Tensor(name: t.name, dtype: dtype, shape: t.shape, bytes: out)
    }
}

func chunks(base: [Tensor], target: [Tensor], limit: Int) -> [Chunk] {
    let byName = Dictionary(base.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    var out: [Chunk] = []
    var total = 0
    for tensor in target {
        let bytes = tensor.bytes
        let element = ElementType(tensor.dtype)
        let paired = byName[tensor.name].flatMap { $0.dtype == tensor.dtype && $0.shape == tensor.shape ? $0.bytes : nil }
        var start = 0
        while start < bytes.count, total < limit {
            let end = min(start + (1 << 20), bytes.count)
            let b = paired.map { Array($0[start ..< min(end, $0.count)]) }
            out.append(Chunk(raw: Array(bytes[start ..< end]), base: b, element: element))
            total += end - start
            start = end
        }
    }
    return out
}

func rate(_ bytes: Int, _ seconds: Double) -> String {
    String(format: "%9.1f", Double(bytes) / max(seconds, 1e-9) / 1e6)
}

func run() throws {
    var args = Array(CommandLine.arguments.dropFirst())
    var bf16 = false, limitMB = 1 << 20, repeats = 3
    var only: String?
    var kernels = VectorKernels.Level.avx512
    var positional: [String] = []
    while !args.isEmpty {
        let a = args.removeFirst()
        switch a {
        case "--bf16": bf16 = true
        case "--limit": limitMB = Int(args.isEmpty ? "" : args.removeFirst()) ?? limitMB
        case "--repeat": repeats = Int(args.isEmpty ? "" : args.removeFirst()) ?? repeats
        case "--only": only = args.isEmpty ? nil : args.removeFirst()
        case "--kernels":
            let name = args.isEmpty ? "" : args.removeFirst()
            guard let level = ["portable": VectorKernels.Level.portable, "avx2": .avx2, "avx512": .avx512][name] else {
                throw BenchError.usage("--kernels takes portable, avx2 or avx512, not \(name)")
            }
            kernels = level
        default: positional.append(a)
        }
    }
    guard positional.count == 2 else {
        throw BenchError.usage("usage: tenpak-bench BASE.safetensors FINETUNE.safetensors [--bf16] [--limit MB] [--repeat N] [--only NAME] [--kernels portable|avx2|avx512]")
    }
    VectorKernels.limit = kernels
    let all = chunks(base: try loadTensors(positional[0], bf16: bf16), target: try loadTensors(positional[1], bf16: bf16),
                     limit: limitMB << 20)
    let paired = all.filter { $0.base != nil }
    let rawTotal = all.reduce(0) { $0 + $1.raw.count }
    let pairedTotal = paired.reduce(0) { $0 + $1.raw.count }
    print("tenpak-bench: \(all.count) chunks, \(rawTotal) bytes (\(paired.count) paired with a base chunk, \(pairedTotal) bytes)\(bf16 ? ", cast to BF16" : "")")
    print("MB per CPU-second of one thread (best of \(repeats)); ratio = payload / raw; vector kernels up to \(min(kernels, VectorKernels.cpuLevel))")
    print("encoding              chunks   ratio    encode MB/s  decode MB/s   payload digest")

    func bench(_ label: String, _ set: [Chunk], encode: (Chunk) -> (Encoding, [UInt8])) throws {
        if let only, !label.hasPrefix(only) { return }
        var encoded: [(Encoding, [UInt8])] = []
        let te = measure(repeats) { encoded = set.map(encode) }
        let bytes = set.reduce(0) { $0 + $1.raw.count }
        var outputs = set.map { [UInt8](repeating: 0, count: $0.raw.count) }
        let td = try measure(repeats) {
            for (k, chunk) in set.enumerated() {
                let (encoding, payload) = encoded[k]
                try payload.withUnsafeBytes { p in
                    try outputs[k].withUnsafeMutableBytes { out in
                        if let base = chunk.base, encoding.usesBase {
                            try base.withUnsafeBytes { try ChunkCodec.decode(p, encoding: encoding, element: chunk.element, base: $0, into: out) }
                        } else {
                            try ChunkCodec.decode(p, encoding: encoding, element: chunk.element, base: nil, into: out)
                        }
                    }
                }
            }
        }
        for (k, chunk) in set.enumerated() where outputs[k] != chunk.raw {
            throw BenchError.usage("\(label): chunk \(k) does not round-trip")
        }
        let stored = encoded.reduce(0) { $0 + $1.1.count }
        // A digest of every payload: equal digests before and after a codec change mean the
        // encoder's output did not change by a byte.
        var digest: UInt64 = 0
        for (encoding, payload) in encoded { digest = digest &* 31 &+ Hashing.xxh3_64(payload) &+ UInt64(encoding.rawValue) }
        print(label.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: " %7d  %6.4f", set.count, Double(stored) / Double(max(bytes, 1))) + "    " + rate(bytes, te) + "    "
            + rate(bytes, td) + "   " + String(digest, radix: 16))
    }

    for encoding in Encoding.allCases {
        // context-delta and float-planes apply to float chunks only (encodeForced traps otherwise).
        let floatsOnly = encoding == .contextDelta || encoding == .floatPlanes
        let set = (encoding.usesBase ? paired : all).filter { !floatsOnly || $0.element.layout != .none }
        try bench(encoding.description, set) { c in
            let b = c.base ?? []
            return (encoding, c.raw.withUnsafeBytes { r in b.withUnsafeBytes { ChunkCodec.encodeForced(encoding, r, element: c.element, base: $0) } })
        }
    }
    try bench("auto (with base)", paired) { c in
        let e = c.raw.withUnsafeBytes { r in c.base!.withUnsafeBytes { ChunkCodec.encode(r, element: c.element, base: $0) } }
        return (e.encoding, e.payload)
    }
    try bench("auto (no base)", all) { c in
        let e = c.raw.withUnsafeBytes { ChunkCodec.encode($0, element: c.element) }
        return (e.encoding, e.payload)
    }

    if only != nil { return }
    print("primitive            bytes                 MB/s")
    let sample = all.prefix(64)
    let sampleBytes = sample.reduce(0) { $0 + $1.raw.count }
    func primitive(_ label: String, _ body: ([UInt8]) -> Void) {
        let t = measure(repeats) { for c in sample { body(c.raw) } }
        print(label.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: " %9d        ", sampleBytes) + rate(sampleBytes, t))
    }
    var sink: UInt64 = 0
    primitive("sha256") { sink &+= UInt64($0.withUnsafeBytes { Hashing.sha256($0) }.bytes[0]) }
    // The put's pair: each byte into its chunk's id and the file's hash (MB/s of input, both done).
    var file = StreamingSHA256()
    primitive(StreamingSHA256.usesExtensions ? "sha256 x2 (SHA-NI)" : "sha256 x2 (portable)") { raw in
        var chunk = StreamingSHA256()
        raw.withUnsafeBytes { StreamingSHA256.update(&file, &chunk, with: $0) }
        sink &+= UInt64(chunk.finalize().bytes[0])
    }
    primitive("xxh3-128") { sink &+= $0.withUnsafeBytes { Hashing.xxh3_128($0) }.low }
    for width in [2, 4] {
        var scratch = [UInt8](repeating: 0, count: 1 << 20)
        primitive("split w=\(width)") { raw in
            scratch.withUnsafeMutableBytes { out in raw.withUnsafeBytes { BytePlanes.split($0, width: width, into: UnsafeMutableRawBufferPointer(rebasing: out[0 ..< raw.count])) } }
        }
        primitive("join w=\(width)") { raw in
            scratch.withUnsafeMutableBytes { out in raw.withUnsafeBytes { BytePlanes.join($0, width: width, into: UnsafeMutableRawBufferPointer(rebasing: out[0 ..< raw.count])) } }
        }
    }
    if sink == 42 { print("") }
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("tenpak-bench: \(error)\n".utf8))
    exit(1)
}
