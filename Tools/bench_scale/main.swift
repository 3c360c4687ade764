// Scale benchmark for base choice and put cost (issue 14; SPEC §10 "Costs as the store grows").
//
// Every revision is a real put of a small generated model through `ModelStore.put` (the library's
// own path: plan, base choice, encode, pack, commit), never rows written around it.
//
//   bench-scale scale   [--revisions 10000] [--families 10] [--tensors 100] [--store DIR]
//   bench-scale tiny    [--puts 300] [--store DIR]
//   bench-scale quality [--siblings 0,4,16,64] [--elements 262144] [--store DIR]
//   bench-scale choose  --at STORE [--tensors 100] [--repeat 20]
//   bench-scale probe   --at STORE [--tensors 100] [--repeat 20]
//
// scale:   families of same-architecture models (each family one base and its fine-tunes, tensor
//          names per family, BF16), put round-robin; at 1, 10^2, 10^3, 10^4 stored revisions it
//          measures 10 probe puts into family 0 (each removed again, so the count stays), the
//          base-choice time alone (`explainBase`) and the base it chose for a fine-tune of family
//          0's base (among siblings: the quality at scale), the catalog's size, the process's memory
//          and gc's mark (the live-chunk query). With 10 families, family 0 holds 1,000
//          same-signature candidates at 10^4.
// choose:  base-choice time alone, repeated, in a store a `scale --store DIR` run left at DIR/store
//          (a fresh fine-tune of family 0's base; nothing is written to the store): for measuring a
//          change to base choice without refilling 10^4 revisions.
// probe:   the scale run's probe puts (fresh fine-tunes of family 0's base, each removed again) in
//          a store a `scale --store DIR` run left at DIR/store: wall time (median, min) and the
//          process's CPU time (user + system) per put, which other load on the machine disturbs
//          less than wall time. Compare `scale --revisions 1 --store A` with a 10^4 store.
// tiny:    Fixtures/models/tiny-base put N times under new names; median of the first and last 25.
// quality: a base, N sibling fine-tunes of it (AdamW-like, one seed each, put automatically as a
//          hub would), then a further fine-tune of the base put automatically: its stored bytes
//          over the bytes the same put costs against the true base (measured in a store holding
//          only the base: siblings share no chunk with it). BF16 and F32.
//
// Prints tables; timing is never asserted anywhere.
import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

extension SplitMix64 {
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    /// Normal(0, 1) by Box–Muller.
    mutating func normal() -> Double {
        let u = max(uniform(), 1e-300), v = uniform()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

// MARK: models

struct Tensor {
    let name: String
    let dtype: String   // "F32" or "BF16"
    let shape: [Int]
    var values: [Float]
}

func bf16(_ x: Float) -> UInt16 {
    // Round to nearest even, as numpy/torch do.
    let bits = x.bitPattern
    let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

func safetensors(_ tensors: [Tensor]) -> [UInt8] {
    var entries: [String] = []
    var offset = 0
    for t in tensors {
        let size = t.values.count * (t.dtype == "F32" ? 4 : 2)
        entries.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
        offset += size
    }
    var json = Array("{\(entries.joined(separator: ","))}".utf8)
    while json.count % 8 != 0 { json.append(0x20) }
    var out: [UInt8] = []
    out.reserveCapacity(8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out += json
    for t in tensors {
        if t.dtype == "F32" {
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        } else {
            for v in t.values { withUnsafeBytes(of: bf16(v).littleEndian) { out.append(contentsOf: $0) } }
        }
    }
    return out
}

/// A base model: weight-like values (normal, std 0.02), then rounded to the dtype.
func baseModel(prefix: String, tensors: Int, elements: Int, dtype: String, seed: UInt64) -> [Tensor] {
    var r = SplitMix64(seed: seed)
    return (0 ..< tensors).map { i in
        let rows = max(1, elements / 64)
        var values = (0 ..< rows * 64).map { _ in Float(r.normal() * 0.02) }
        if dtype == "BF16" { values = values.map { Float(bitPattern: UInt32(bf16($0)) << 16) } }
        return Tensor(name: "\(prefix).layers.\(i).weight", dtype: dtype, shape: [rows, 64], values: values)
    }
}

/// An AdamW-like fine-tune: every element moves by ±step·u (u uniform in [0.5, 1.5], random sign),
/// step chosen for a relative L2 change of `relative` per tensor, plus a little weight decay;
/// computed in float and rounded to the dtype (in BF16 most elements then stay bit-identical).
func fineTune(_ base: [Tensor], seed: UInt64, relative: Double = 1e-3) -> [Tensor] {
    var r = SplitMix64(seed: seed)
    return base.map { t in
        let rms = (t.values.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(1, t.values.count))).squareRoot()
        let step = relative * rms / (13.0 / 12.0).squareRoot()
        var out = t
        for i in out.values.indices {
            let delta = step * (0.5 + r.uniform()) * (r.next() & 1 == 0 ? 1 : -1)
            var v = Float(Double(t.values[i]) * (1 - 1e-5) + delta)
            if t.dtype == "BF16" { v = Float(bitPattern: UInt32(bf16(v)) << 16) }
            out.values[i] = v
        }
        return out
    }
}

func write(_ tensors: [Tensor], to dir: String) throws -> String {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(safetensors(tensors)).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
    return dir
}

/// Elements per tensor of the scale run's models (and of choose's and probe's, which must match the
/// store a scale run left): 4 KiB of BF16, the smallest piece base choice confirms a base with by
/// sampled encodes (`BaseMatcher.minimumSampledBytes`), so that every put really chooses its base
/// among the candidates; small enough that the catalog and base choice, not the codecs, are under test.
/// (Until 2026-12-04 it was 1,024: no piece could be sampled, so no put got a base.)
let scaleTensorElements = 2048

// MARK: measuring

func now() -> Double { Date().timeIntervalSince1970 }

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

/// Resident and peak memory of this process, from /proc (MiB).
func memoryMiB() -> (rss: Double, peak: Double) {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Double {
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            return Double(line.split(separator: " ").dropFirst().first { Double($0) != nil }.flatMap { Double($0) } ?? 0) / 1024
        }
        return 0
    }
    return (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) this process has used, in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// `count` probe puts of fresh fine-tunes of `base` into family 0, each removed again (so the
/// store's size stays): (wall, CPU) seconds of each put. Every put is a fine-tune no earlier put
/// stored (seeds from a random start): a removed probe's chunks stay until gc, and a put that
/// finds them all stored costs less, which made the median of a run depend on the runs before it.
func probePuts(_ store: ModelStore, base: [Tensor], work: String, count: Int) throws -> [(wall: Double, cpu: Double)] {
    var measured: [(wall: Double, cpu: Double)] = []
    let first = UInt64.random(in: 1 << 32 ..< 1 << 62)
    for p in 0 ..< count {
        let dir = try write(fineTune(base, seed: first + UInt64(p)), to: work + "/probe")
        let started = now(), cpu = cpuSeconds()
        let report = try store.put(model: "probe/p\(p)", revision: "v1", paths: [dir])
        measured.append((now() - started, cpuSeconds() - cpu))
        try store.remove(model: "probe/p\(p)", revision: report.revision.revision)
    }
    return measured
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
}

/// A line to standard output at once (unbuffered: a long run shows its rows as they come).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func ms(_ s: Double) -> String { String(format: "%.1f", s * 1000) }

func pad(_ x: Any, _ width: Int) -> String {
    let text = "\(x)"
    return String(repeating: " ", count: max(0, width - text.count)) + text
}

struct Options {
    var mode = "scale"
    var revisions = 10_000
    var families = 10
    var tensors = 100
    var puts = 300
    var siblings = [0, 4, 16, 64]
    var elements = 1 << 18
    var store: String?
    var at: String?
    var repeats = 20

    init(_ args: [String]) {
        var i = 0
        if let first = args.first, !first.hasPrefix("--") { mode = first; i = 1 }
        while i < args.count {
            let value = i + 1 < args.count ? args[i + 1] : ""
            switch args[i] {
            case "--revisions": revisions = Int(value) ?? revisions
            case "--families": families = Int(value) ?? families
            case "--tensors": tensors = Int(value) ?? tensors
            case "--puts": puts = Int(value) ?? puts
            case "--siblings": siblings = value.split(separator: ",").compactMap { Int($0) }
            case "--elements": elements = Int(value) ?? elements
            case "--store": store = value
            case "--at": at = value
            case "--repeat": repeats = Int(value) ?? repeats
            default: FileHandle.standardError.write(Data("unknown option \(args[i])\n".utf8)); exit(2)
            }
            i += 2
        }
    }
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let scratch = options.store ?? NSTemporaryDirectory() + "tenpak-bench-scale-\(getpid())"
try? FileManager.default.removeItem(atPath: scratch)
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
defer { if options.store == nil { try? FileManager.default.removeItem(atPath: scratch) } }

switch options.mode {
case "scale":
    let storeDir = scratch + "/store"
    let store = try ModelStore.open(directory: storeDir, create: true)
    let tensorElements = scaleTensorElements
    let bases = (0 ..< options.families).map { f in
        baseModel(prefix: "family\(f)", tensors: options.tensors, elements: tensorElements, dtype: "BF16", seed: 1000 + UInt64(f))
    }
    let checkpoints = [1, 100, 1000, 10_000].filter { $0 <= options.revisions }
    say("scale: \(options.families) families of \(options.tensors) BF16 tensors × \(tensorElements) elements; real puts through ModelStore.put")
    say("revisions | family-0 candidates | put median ms (10 probes) | base choice ms | catalog MiB | RSS MiB (peak) | gc mark ms | fill puts/s | probe's base (the true one: family0/m0)")
    var stored = 0
    var fillStarted = now(), fillPuts = 0
    var member = [Int](repeating: 0, count: options.families)
    let work = scratch + "/models"
    for checkpoint in checkpoints {
        while stored < checkpoint {
            // Family bases first (in family order), then fine-tunes round-robin.
            let f = stored % options.families
            let tensors = member[f] == 0 ? bases[f] : fineTune(bases[f], seed: UInt64(f) << 32 | UInt64(member[f]))
            let dir = try write(tensors, to: work + "/fill")
            _ = try store.put(model: "family\(f)/m\(member[f])", revision: "v1", paths: [dir])
            member[f] += 1
            stored += 1
            fillPuts += 1
        }
        let fillRate = Double(fillPuts) / max(1e-9, now() - fillStarted)
        // Probe puts: fresh fine-tunes of family 0's base, each removed again afterwards.
        let latencies = try probePuts(store, base: bases[0], work: work, count: 10).map(\.wall)
        let probe = try write(fineTune(bases[0], seed: 0xBEEF), to: work + "/probe")
        var choices: [Double] = []
        var chosen = "none"
        for _ in 0 ..< 5 {
            let choice = try store.explainBase(paths: [probe])
            choices.append(choice.seconds)
            chosen = choice.decision?.revision.model ?? "none"
        }
        let started = now()
        let live = try store.catalog.liveChunkRowIDs()
        let mark = now() - started
        let catalogBytes = fileSize(storeDir + "/catalog.db") + fileSize(storeDir + "/catalog.db-wal")
        let memory = memoryMiB()
        say("\(pad(stored, 9)) | \(pad(member[0], 19)) | \(pad(ms(median(latencies)), 25)) | \(pad(ms(median(choices)), 14)) | "
              + "\(pad(String(format: "%.1f", Double(catalogBytes) / 1048576), 11)) | \(pad(String(format: "%.0f (%.0f)", memory.rss, memory.peak), 14)) | "
              + "\(pad(ms(mark), 10)) | \(pad(String(format: "%.1f", fillRate), 11)) | \(chosen)")
        _ = live
        fillStarted = now()
        fillPuts = 0
    }

case "choose":
    guard let at = options.at else { FileHandle.standardError.write(Data("choose needs --at STORE\n".utf8)); exit(2) }
    let store = try ModelStore.open(directory: at, create: false)
    let base = baseModel(prefix: "family0", tensors: options.tensors, elements: scaleTensorElements, dtype: "BF16", seed: 1000)
    let probe = try write(fineTune(base, seed: 0xBEEF), to: scratch + "/probe")
    var choices: [Double] = []
    var note = ""
    for _ in 0 ..< options.repeats {
        let choice = try store.explainBase(paths: [probe])
        choices.append(choice.seconds)
        note = choice.note
    }
    say("choose: \(options.repeats) base choices in \(at): median \(ms(median(choices))) ms, min \(ms(choices.min() ?? 0)) ms")
    say(note)

case "probe":
    guard let at = options.at else { FileHandle.standardError.write(Data("probe needs --at STORE\n".utf8)); exit(2) }
    let store = try ModelStore.open(directory: at, create: false)
    let base = baseModel(prefix: "family0", tensors: options.tensors, elements: scaleTensorElements, dtype: "BF16", seed: 1000)
    let measured = try probePuts(store, base: base, work: scratch, count: options.repeats)
    let revisions = try store.revisions().count
    say("probe: \(options.repeats) puts into \(at) (\(revisions) revisions): wall median \(ms(median(measured.map(\.wall)))) ms, "
        + "min \(ms(measured.map(\.wall).min() ?? 0)) ms; CPU median \(ms(median(measured.map(\.cpu)))) ms, min \(ms(measured.map(\.cpu).min() ?? 0)) ms")

case "tiny":
    let store = try ModelStore.open(directory: scratch + "/store", create: true)
    let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        + "/Fixtures/models/tiny-base"
    var latencies: [Double] = []
    for i in 0 ..< options.puts {
        let started = now()
        _ = try store.put(model: "tiny/m\(i)", revision: "v1", paths: [source])
        latencies.append(now() - started)
    }
    let first = median(Array(latencies.prefix(25))), last = median(Array(latencies.suffix(25)))
    say("tiny: \(options.puts) puts of Fixtures/models/tiny-base under new names")
    say("median of first 25: \(ms(first)) ms; median of last 25: \(ms(last)) ms; ratio \(String(format: "%.2f", last / first)) (target <= 1.3)")

case "quality":
    say("quality: automatic put of a fine-tune with N sibling fine-tunes stored; bytes over bytes against the true base")
    say("dtype | siblings | chosen base | stored bytes | against true base | ratio | base choice ms")
    for dtype in ["BF16", "F32"] {
        let elements = dtype == "F32" ? options.elements / 2 : options.elements
        let base = baseModel(prefix: "model", tensors: 16, elements: elements, dtype: dtype, seed: 7)
        let target = try write(fineTune(base, seed: 424_242), to: scratch + "/\(dtype)/target")
        // Reference: the same put against the true base, in a store holding only the base.
        let reference: Int
        do {
            let alone = try ModelStore.open(directory: scratch + "/\(dtype)/reference", create: true)
            _ = try alone.put(model: "base", revision: "v1", paths: [try write(base, to: scratch + "/\(dtype)/base")])
            reference = try alone.put(model: "target", revision: "v1", paths: [target], base: .explicit(model: "base", revision: "v1")).storedBytes
        }
        let store = try ModelStore.open(directory: scratch + "/\(dtype)/store", create: true)
        _ = try store.put(model: "base", revision: "v1", paths: [scratch + "/\(dtype)/base"])
        var siblings = 0
        for n in options.siblings.sorted() {
            while siblings < n {
                _ = try store.put(model: "sibling\(siblings)", revision: "v1",
                                  paths: [try write(fineTune(base, seed: 77 + UInt64(siblings)), to: scratch + "/\(dtype)/sibling")])
                siblings += 1
            }
            let choice = try store.explainBase(paths: [target])
            let report = try store.put(model: "target\(n)", revision: "v1", paths: [target])
            let chosen = report.base.map { "\($0.revision.model)@\($0.revision.revision)" } ?? "none"
            say("\(pad(dtype, 5)) | \(pad(n, 8)) | \(pad(chosen, 11)) | \(pad(report.storedBytes, 12)) | \(pad(reference, 17)) | "
                  + "\(String(format: "%.3f", Double(report.storedBytes) / Double(reference))) | \(ms(choice.seconds))")
            if ProcessInfo.processInfo.environment["BENCH_VERBOSE"] != nil { say("      reason: " + (report.base?.reason ?? choice.note)) }
            // Out again, with its chunks (gc), so the next measurement does not deduplicate against it.
            try store.remove(model: "target\(n)", revision: "v1")
            _ = try Collector(store: store).run(dryRun: false)
        }
    }

default:
    FileHandle.standardError.write(Data("usage: bench-scale scale|tiny|quality [options]\n".utf8))
    exit(2)
}
