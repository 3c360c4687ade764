// Mutation fuzzer for every parser of outside bytes: what the store reads back from disk (chunk
// decoders, frame headers and bundles, manifests, tombstones, safetensors headers, sketches) and
// what arrives from other programs (transfer manifests and id lists, the HTTP router, hub commit
// bodies, Range headers, tar uploads, git-lfs agent requests, byte ranges, the token file). Each
// input is a valid seed with random damage (bit flips, truncation, splices, hostile tokens, random
// bytes); a parser may refuse it with an error but must not trap, hang or read out of bounds
// (a debug build checks bounds and overflow). Every seed must parse undamaged, so a seed that went
// stale with its format fails the run instead of fuzzing only the refusal path.
//
// Usage: tenpak-fuzz [ITERATIONS] [SEED]    (default 1,000,000 and 1; targets take turns)
import Foundation
import TenPakFormat

let arguments = CommandLine.arguments
let iterations = arguments.count > 1 ? Int(arguments[1]) ?? 1_000_000 : 1_000_000
let seed = arguments.count > 2 ? UInt64(arguments[2]) ?? 1 : 1
// The tar target creates thousands of small files: in memory where Linux offers it (/dev/shm), as
// on a busy disk each creation can wait on the journal (measured: 20 ms per archive instead of 0.7).
let scratchRoot = FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm" : FileManager.default.temporaryDirectory.path
let scratch = scratchRoot + "/tenpak-fuzz-\(getpid())"
defer { try? FileManager.default.removeItem(atPath: scratch) }

let targets: [FuzzTarget]
do {
    targets = try storedFormatTargets() + wireTargets(scratch: scratch)
} catch {
    FileHandle.standardError.write(Data("tenpak-fuzz: could not make the seeds: \(error)\n".utf8))
    exit(1)
}
for target in targets {
    for (k, input) in target.seeds.enumerated() {
        do {
            try target.parse(input)
        } catch {
            FileHandle.standardError.write(Data("tenpak-fuzz: seed \(k) of \(target.name) no longer parses (\(error)); update it with its format\n".utf8))
            exit(1)
        }
    }
}

var mutator = Mutator(rng: SplitMix64(seed: seed))
var accepted = [Int](repeating: 0, count: targets.count), refused = accepted
var seconds = [Double](repeating: 0, count: targets.count)
let started = Date()
for i in 0 ..< iterations {
    let t = i % targets.count
    let target = targets[t]
    var input = mutator.mutate(target.seeds[mutator.below(target.seeds.count)])
    if let fixup = target.fixup, mutator.below(2) == 0 { input = fixup(input) }
    let before = Date()
    defer { seconds[t] += Date().timeIntervalSince(before) }
    do {
        try target.parse(input)
        accepted[t] += 1
    } catch {
        refused[t] += 1
    }
    if (i + 1) % 200_000 == 0 { print("\(i + 1) inputs, \(Int(Date().timeIntervalSince(started))) s") }
}
for (t, target) in targets.enumerated() {
    print("  \(target.name.padding(toLength: 28, withPad: " ", startingAt: 0)) \(accepted[t] + refused[t]) inputs: \(refused[t]) refused, \(accepted[t]) accepted, \(String(format: "%.2f", seconds[t])) s")
}
print("fuzzed \(iterations) inputs (seed \(seed)) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s: no crash")
