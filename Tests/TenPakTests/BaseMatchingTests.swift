import Foundation
@testable import TenPakChunkStore
import TenPakFormat
@testable import TenPakModelStore
import TenPakTestSupport
import XCTest

/// How a fine-tune's tensors find their base: by name, dtype and shape across shards; vocabulary
/// growth; renames; dtype changes; unrelated models; forged chunk-id collisions.
final class BaseMatchingTests: XCTestCase {
    var store: ModelStore!
    var dir = ""

    override func setUpWithError() throws {
        dir = TestSupport.temporaryDirectory(self, "matching")
        store = try ModelStore.open(directory: dir + "/store", create: true)
    }

    func write(_ builder: SafetensorsBuilder, _ path: String) throws -> String {
        let full = dir + "/" + path
        try TestSupport.write(builder.bytes(), to: full)
        return full
    }

    func roundTrip(_ model: String, _ source: String) throws {
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: model, revision: nil, to: out)
        let name = (source as NSString).lastPathComponent
        XCTAssertEqual(try TestSupport.read(out + "/" + name), try TestSupport.read(source))
    }

    /// A base with a 1.2 MiB "vocabulary" matrix (two chunks) and a small layer.
    func base() -> (SafetensorsBuilder, embed: [UInt8], layer: [UInt8], bias: [UInt8]) {
        var b = SafetensorsBuilder()
        let embed = SafetensorsBuilder.f32(300 * 1024, seed: 1)
        let layer = SafetensorsBuilder.f32(256 * 256, seed: 2)
        let bias = SafetensorsBuilder.f32(512, seed: 3)
        b.add("embed.weight", "F32", [300, 1024], embed)
        b.add("layer.0.weight", "F32", [256, 256], layer)
        b.add("layer.0.bias", "F32", [512], bias)
        return (b, embed, layer, bias)
    }

    func testVocabularyGrowthPairsOnTheCommonPrefixAndRoundTrips() throws {
        let (b, embed, layer, bias) = base()
        _ = try store.put(model: "base", paths: [try write(b, "base/model.safetensors")])
        var ft = SafetensorsBuilder()
        // 24 new rows appended to the vocabulary, plus a small update everywhere.
        ft.add("embed.weight", "F32", [324, 1024], SafetensorsBuilder.nudge(embed, seed: 4) + SafetensorsBuilder.f32(24 * 1024, seed: 5))
        ft.add("layer.0.weight", "F32", [256, 256], SafetensorsBuilder.nudge(layer, seed: 6))
        ft.add("layer.0.bias", "F32", [512], bias)
        let path = try write(ft, "ft/model.safetensors")
        let report = try store.put(model: "ft", paths: [path])
        XCTAssertEqual(report.base?.revision.model, "base")
        let file = report.files[0]
        XCTAssertEqual(file.deltaChunks, 3, "both vocabulary chunks (the second longer than its base) and the layer are deltas")
        XCTAssertEqual(file.sharedChunks, 1, "the unchanged bias is shared")
        try roundTrip("ft", path)
    }

    func testRenamedTensorDedupesByContentAndDtypeChangeGetsNoDelta() throws {
        let (b, embed, layer, _) = base()
        _ = try store.put(model: "base", paths: [try write(b, "base/model.safetensors")])
        var ft = SafetensorsBuilder()
        ft.add("model.embed_tokens.weight", "F32", [300, 1024], embed)          // renamed, identical
        // Same name, now F16: no delta against the F32 base.
        var half = [UInt8]()
        for i in stride(from: 0, to: layer.count, by: 4) { half += [layer[i + 2], layer[i + 3]] }
        ft.add("layer.0.weight", "F16", [256, 256], half)
        let path = try write(ft, "ft/model.safetensors")
        let report = try store.put(model: "ft", paths: [path], base: .explicit(model: "base", revision: nil))
        let file = report.files[0]
        XCTAssertEqual(file.sharedChunks, 2, "the renamed 1.2 MiB tensor is two shared chunks")
        XCTAssertEqual(file.deltaChunks, 0, "a dtype change is never delta-coded")
        try roundTrip("ft", path)
    }

    func testShardedDifferentlyStillPairs() throws {
        let (b, embed, layer, bias) = base()
        _ = try store.put(model: "base", paths: [try write(b, "base/model.safetensors")])
        var shard1 = SafetensorsBuilder(), shard2 = SafetensorsBuilder()
        shard1.add("layer.0.bias", "F32", [512], SafetensorsBuilder.nudge(bias, seed: 7))
        shard1.add("layer.0.weight", "F32", [256, 256], SafetensorsBuilder.nudge(layer, seed: 8))
        shard2.add("embed.weight", "F32", [300, 1024], SafetensorsBuilder.nudge(embed, seed: 9))
        let p1 = try write(shard1, "ft/model-00001-of-00002.safetensors")
        _ = try write(shard2, "ft/model-00002-of-00002.safetensors")
        let report = try store.put(model: "ft", paths: [dir + "/ft"])
        XCTAssertEqual(report.base?.revision.model, "base")
        XCTAssertEqual(report.files.reduce(0) { $0 + $1.deltaChunks }, 4, "vocabulary (2), layer and bias chunks pair across shards")
        try roundTrip("ft", p1)
    }

    func testAnUnrelatedModelOfTheSameShapeGetsNoBase() throws {
        let (b, _, _, _) = base()
        _ = try store.put(model: "base", paths: [try write(b, "base/model.safetensors")])
        var other = SafetensorsBuilder()
        other.add("embed.weight", "F32", [300, 1024], SafetensorsBuilder.f32(300 * 1024, seed: 100))
        other.add("layer.0.weight", "F32", [256, 256], SafetensorsBuilder.f32(256 * 256, seed: 101))
        other.add("layer.0.bias", "F32", [512], SafetensorsBuilder.f32(512, seed: 102))
        let report = try store.put(model: "retrained", paths: [try write(other, "other/model.safetensors")])
        XCTAssertNil(report.base, "same shapes, unrelated values: a delta does not pay")
        XCTAssertTrue(report.warnings.contains { if case .noBase = $0 { return true } else { return false } }, "\(report.warnings)")
    }

    func testModelCardHintIsNotProof() throws {
        let (b, _, _, _) = base()
        _ = try store.put(model: "base", paths: [try write(b, "base/model.safetensors")])
        var other = SafetensorsBuilder()
        other.add("something.else", "F32", [64], SafetensorsBuilder.f32(64, seed: 1))
        _ = try write(other, "liar/model.safetensors")
        try TestSupport.write(Array("---\nbase_model: base\n---\n# a model\n".utf8), to: dir + "/liar/README.md")
        let report = try store.put(model: "liar", paths: [dir + "/liar"])
        XCTAssertNil(report.base, "a base_model line alone does not make a base")
    }

    /// A chunk whose XXH3-128 equals a stored chunk's but whose SHA-256 differs is a different chunk:
    /// it is never deduplicated against the stored one.
    func testForgedXXH3CollisionIsNotDeduplicated() throws {
        let path = dir + "/a.bin"
        try TestSupport.write(Array("the original bytes".utf8), to: path)
        _ = try store.put(model: "victim", paths: [path])
        let catalog = store.catalog
        let victim = try catalog.files(revision: try catalog.resolve(model: "victim", revision: nil))[0]
        let stored = try catalog.fileChunks(file: victim)[0].location
        let forged = ChunkID(xxh: stored.id.xxh, sha: Hashing.sha256(Array("different bytes".utf8)))
        XCTAssertTrue(try catalog.findChunks([forged]).isEmpty, "lookup needs both hashes to match")
        XCTAssertEqual(try catalog.findChunks([stored.id])[stored.id]?.rowID, stored.rowID)
    }
}

/// Base choice at hub scale (SPEC §10): the candidate index, content sketches, their fallbacks,
/// the in-place upgrade of a version-1 catalog and the rebuild by repair.
final class BaseChoiceTests: XCTestCase {
    var dir = ""
    var storeDir: String { dir + "/store" }

    override func setUpWithError() throws {
        dir = TestSupport.temporaryDirectory(self, "choice")
    }

    /// A small model: a two-chunk matrix, a layer and a bias (F32), as in BaseMatchingTests.
    func model(_ name: String, _ tensors: (embed: [UInt8], layer: [UInt8], bias: [UInt8])) throws -> String {
        var b = SafetensorsBuilder()
        b.add("embed.weight", "F32", [300, 1024], tensors.embed)
        b.add("layer.0.weight", "F32", [256, 256], tensors.layer)
        b.add("layer.0.bias", "F32", [512], tensors.bias)
        let path = dir + "/" + name + "/model.safetensors"
        try TestSupport.write(b.bytes(), to: path)
        return dir + "/" + name
    }

    func baseTensors(seed: UInt64 = 1) -> (embed: [UInt8], layer: [UInt8], bias: [UInt8]) {
        (SafetensorsBuilder.f32(300 * 1024, seed: seed), SafetensorsBuilder.f32(256 * 256, seed: seed + 1),
         SafetensorsBuilder.f32(512, seed: seed + 2))
    }

    func nudged(_ t: (embed: [UInt8], layer: [UInt8], bias: [UInt8]), seed: UInt64) -> (embed: [UInt8], layer: [UInt8], bias: [UInt8]) {
        (SafetensorsBuilder.nudge(t.embed, seed: seed), SafetensorsBuilder.nudge(t.layer, seed: seed + 1),
         SafetensorsBuilder.nudge(t.bias, seed: seed + 2))
    }

    func assertRoundTrip(_ store: ModelStore, _ model: String, _ source: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = TestSupport.temporaryDirectory(self, "out")
        try store.get(model: model, revision: nil, to: out)
        XCTAssertEqual(try TestSupport.read(out + "/model.safetensors"), try TestSupport.read(source + "/model.safetensors"), file: file, line: line)
    }

    func testFineTuneOfAFineTunePicksItsParentAndTheReasonSaysHow() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = baseTensors()
        let ft1 = nudged(base, seed: 10), ft2 = nudged(ft1, seed: 20)
        _ = try store.put(model: "base", paths: [try model("base", base)])
        let first = try store.put(model: "ft1", paths: [try model("ft1", ft1)])
        XCTAssertEqual(first.base?.revision.model, "base")
        let second = try store.put(model: "ft2", paths: [try model("ft2", ft2)])
        XCTAssertEqual(second.base?.revision.model, "ft1", second.base?.reason ?? "\(second.warnings)")
        let reason = try XCTUnwrap(second.base?.reason)
        XCTAssertTrue(reason.contains("compared by content sketch"), reason)
        XCTAssertTrue(reason.contains("sampled delta"), reason)
        // The reason is the one stored with the revision.
        XCTAssertEqual(try store.catalog.resolve(model: "ft2", revision: nil).baseReason, reason)
        try assertRoundTrip(store, "ft2", dir + "/ft2")
    }

    /// The case of the issue: siblings (the same base, other seeds) are newer than the base, and
    /// used to win because only the newest candidates were sampled.
    func testSiblingFineTunesDoNotHideTheTrueBase() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = baseTensors()
        _ = try store.put(model: "base", paths: [try model("base", base)])
        for i in 0 ..< 6 {
            let sibling = try store.put(model: "sibling-\(i)", paths: [try model("sibling-\(i)", nudged(base, seed: 100 + 10 * UInt64(i)))])
            XCTAssertEqual(sibling.base?.revision.model, "base", "sibling \(i): \(sibling.base?.reason ?? "no base")")
        }
        let target = try store.put(model: "target", paths: [try model("target", nudged(base, seed: 999))])
        XCTAssertEqual(target.base?.revision.model, "base", target.base?.reason ?? "\(target.warnings)")
        XCTAssertTrue(try XCTUnwrap(target.base?.reason).contains("7 candidates by tensor signature"), target.base?.reason ?? "")
        try assertRoundTrip(store, "target", dir + "/target")
    }

    /// The confirmation encodes a sampled piece without a base once per choice: no-base sizes carried
    /// from one candidate to the next give the gain computed afresh, and are used as carried.
    func testNoBaseSizesAreCarriedBetweenCandidates() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = baseTensors()
        _ = try store.put(model: "base", paths: [try model("base", base)])
        let planned = try ModelStore.collectInputs([try model("ft", nudged(base, seed: 7))]).map { input in
            let file = try OpenFile(path: input.source, mode: .read)
            return (input, try ChunkPlan.make(file: file, size: try file.size(), looksLikeSafetensors: true))
        }
        let index = try BaseIndex.load(store.chunks, revision: store.catalog.resolve(model: "base", revision: nil))
        var sizes: [BaseMatcher.SampledPiece: Int] = [:]
        let fresh = try BaseMatcher.sampledGain(store: store.chunks, uploads: planned, index: index, noBaseSizes: &sizes)
        XCTAssertGreaterThan(fresh, BaseMatcher.requiredGain)
        XCTAssertFalse(sizes.isEmpty)
        var carried = sizes
        XCTAssertEqual(try BaseMatcher.sampledGain(store: store.chunks, uploads: planned, index: index, noBaseSizes: &carried), fresh)
        XCTAssertEqual(carried, sizes)
        // Carried sizes are not encoded again: doubled ones raise the gain.
        var doubled = sizes.mapValues { $0 * 2 }
        XCTAssertGreaterThan(try BaseMatcher.sampledGain(store: store.chunks, uploads: planned, index: index, noBaseSizes: &doubled), fresh)
    }

    func testUnrelatedModelOfTheSameShapeGetsNoBaseWithAReason() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        _ = try store.put(model: "base", paths: [try model("base", baseTensors())])
        let other = try store.put(model: "retrained", paths: [try model("retrained", baseTensors(seed: 500))])
        XCTAssertNil(other.base)
        let note = other.warnings.compactMap { warning -> String? in
            if case let .noBase(reason) = warning { return reason }
            return nil
        }.first ?? ""
        XCTAssertTrue(note.contains("a delta does not pay") && note.contains("compared by content sketch"), note)
    }

    /// The bases the nearest candidates were stored against join the full comparison: each once,
    /// never one of the given ids, and not a base removed since.
    func testParentsOfTheNearestAreTheirBasesEachOnce() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = baseTensors()
        let b = try store.put(model: "base", paths: [try model("base", base)]).revision.rowID
        var siblings: [Int64] = [], firstRevision = ""
        for i in 0 ..< 3 {
            let put = try store.put(model: "sibling-\(i)", paths: [try model("sibling-\(i)", nudged(base, seed: 40 + 10 * UInt64(i)))])
            XCTAssertEqual(put.base?.revision.model, "base")
            siblings.append(put.revision.rowID)
            if i == 0 { firstRevision = put.revision.revision }
        }
        let alone = try store.put(model: "alone", paths: [try model("alone", baseTensors(seed: 700))])
        XCTAssertNil(alone.base)
        XCTAssertEqual(try BaseMatcher.parents(of: siblings + [alone.revision.rowID], catalog: store.catalog), [b])
        XCTAssertEqual(try BaseMatcher.parents(of: siblings + [b], catalog: store.catalog), [], "a base among the ids is not added again")
        // A sibling's sibling stored against sibling-0: two distinct bases, newest first.
        let nephew = try store.put(model: "nephew", paths: [try model("nephew", nudged(base, seed: 40))],
                                   base: .explicit(model: "sibling-0", revision: nil))
        XCTAssertEqual(try BaseMatcher.parents(of: [nephew.revision.rowID, siblings[1]], catalog: store.catalog), [siblings[0], b])
        try store.remove(model: "sibling-0", revision: firstRevision)
        XCTAssertEqual(try BaseMatcher.parents(of: [nephew.revision.rowID], catalog: store.catalog), [], "a removed base is left out")
    }

    /// An upload whose tensors are all smaller than a sampled piece gets no base without a search
    /// (every candidate would fail its confirmation, which has nothing to encode), says so, and
    /// `--base` still stores it against the base it names.
    func testAnUploadWithNothingToSampleIsToldSoWithoutASearch() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        func small(_ name: String, seed: UInt64, nudge: UInt64?) throws -> String {
            var b = SafetensorsBuilder()
            for (i, count) in [512, 1023, 1].enumerated() {   // 2 KiB, 4,092 bytes, 4 bytes: below 4,096
                let values = SafetensorsBuilder.f32(count, seed: seed + UInt64(i))
                b.add("t\(i)", "F32", [count], nudge.map { SafetensorsBuilder.nudge(values, seed: $0 + UInt64(i)) } ?? values)
            }
            try TestSupport.write(b.bytes(), to: dir + "/" + name + "/model.safetensors")
            return dir + "/" + name
        }
        _ = try store.put(model: "small", paths: [try small("small", seed: 1, nudge: nil)])
        let path = try small("small-ft", seed: 1, nudge: 50)
        let automatic = try store.put(model: "small-ft", paths: [path])
        XCTAssertNil(automatic.base)
        let note = automatic.warnings.compactMap { warning -> String? in
            if case let .noBase(reason) = warning { return reason }
            return nil
        }.first ?? ""
        XCTAssertTrue(note.contains("no tensor piece of at least 4096 bytes"), note)
        XCTAssertFalse(note.contains("candidate"), "no candidate was looked at: \(note)")
        try assertRoundTrip(store, "small-ft", path)
        let named = try store.put(model: "small-ft2", paths: [path], base: .explicit(model: "small", revision: nil))
        XCTAssertEqual(named.base?.revision.model, "small")
        try assertRoundTrip(store, "small-ft2", path)
    }

    /// A damaged sketch is ignored (never trusted), the candidate's sketch is made again from its
    /// chunks, and the choice and the bytes are right.
    /// The vectorized RMS against a plain Double loop: F32, BF16 and F16, lengths with and without
    /// a tail of fewer than eight, identical runs, and non-finite values.
    func testSketchRMSDifferenceMatchesAPlainLoop() {
        var random = SplitMix64(seed: 11)
        func reference(_ a: [UInt8], _ b: [UInt8], _ format: UInt8) -> Double {
            let w = format == 1 ? 4 : 2, n = min(a.count, b.count) / w
            var total = 0.0
            for i in 0 ..< n {
                let x = a.withUnsafeBytes { BaseSketch.value($0, i, format: format) }
                let y = b.withUnsafeBytes { BaseSketch.value($0, i, format: format) }
                total += (x - y) * (x - y)
            }
            return n == 0 ? 0 : (total / Double(n)).squareRoot()
        }
        for format: UInt8 in [1, 2, 3] {
            let w = format == 1 ? 4 : 2
            for n in [0, 1, 7, 8, 9, 128, 131] {
                var a = [UInt8](), b = [UInt8]()
                for _ in 0 ..< n {
                    // Values near 0.01 and a small difference, as a fine-tune's weights.
                    let x = Float(Int64(random.next() % 2001) - 1000) * 1e-5
                    let y = x + Float(Int64(random.next() % 21) - 10) * 1e-7
                    for (v, out) in [(x, 0), (y, 1)] {
                        let bits: [UInt8]
                        switch format {
                        case 1: bits = withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) }
                        case 2: bits = withUnsafeBytes(of: UInt16(truncatingIfNeeded: v.bitPattern >> 16).littleEndian) { Array($0) }
                        default: bits = withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { Array($0) }
                        }
                        if out == 0 { a += bits } else { b += bits }
                    }
                }
                let got = BaseSketch.rmsDifference(a, b, format: format), want = reference(a, b, format)
                XCTAssertEqual(got, want, accuracy: max(1e-12, want * 1e-4), "format \(format), \(n) values")
                XCTAssertEqual(BaseSketch.rmsDifference(a, a, format: format), 0, "format \(format), \(n) values against themselves")
                if n > 0 {
                    var nan = a
                    for k in 0 ..< w { nan[(n / 2) * w + k] = 0xFF }
                    XCTAssertEqual(BaseSketch.rmsDifference(nan, b, format: format), 1e30, "a NaN reads as far")
                }
            }
        }
    }

    func testDamagedSketchIsRemadeFromChunks() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = baseTensors()
        let stored = try store.put(model: "base", paths: [try model("base", base)])
        let good = try XCTUnwrap(try store.catalog.sketches(revisionRowIDs: [stored.revision.rowID])[stored.revision.rowID])
        XCTAssertNoThrow(try BaseSketch.decode(good))
        var flipped = good
        flipped[20] ^= 0x40
        XCTAssertThrowsError(try BaseSketch.decode(flipped)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        XCTAssertThrowsError(try BaseSketch.decode([1, 2, 3]))
        try store.catalog.putSketch(revisionRowID: stored.revision.rowID, sketch: flipped)

        let ft = try store.put(model: "ft", paths: [try model("ft", nudged(base, seed: 10))])
        XCTAssertEqual(ft.base?.revision.model, "base")
        let reason = try XCTUnwrap(ft.base?.reason)
        XCTAssertTrue(reason.contains("1 damaged sketch ignored") && reason.contains("1 sketch made from stored chunks"), reason)
        let remade = try XCTUnwrap(try store.catalog.sketches(revisionRowIDs: [stored.revision.rowID])[stored.revision.rowID])
        XCTAssertEqual(remade, good, "made again from the chunks, it equals the one made from the upload")
        try assertRoundTrip(store, "ft", dir + "/ft")
    }

    /// The sketch of an upload and the one made later from its stored chunks agree byte for byte,
    /// and a sketch is closer to a fine-tune's than to an unrelated model's.
    func testSketchDistanceOrdersParentSiblingAndUnrelated() throws {
        let base = baseTensors()
        func sketch(_ t: (embed: [UInt8], layer: [UInt8], bias: [UInt8]), _ name: String) throws -> BaseSketch {
            let path = try model(name, t) + "/model.safetensors"
            let file = try OpenFile(path: path, mode: .read)
            let plan = try ChunkPlan.make(file: file, size: try file.size(), looksLikeSafetensors: true)
            return try XCTUnwrap(try BaseSketch.make(uploads: [(PutInput(source: path, path: "model.safetensors"), plan)]))
        }
        let b = try sketch(base, "b"), ft = try sketch(nudged(base, seed: 10), "ft")
        let sibling = try sketch(nudged(base, seed: 30), "s"), other = try sketch(baseTensors(seed: 77), "o")
        XCTAssertEqual(try BaseSketch.decode(b.encoded()), b)
        let toBase = try XCTUnwrap(ft.distance(to: b)), toSibling = try XCTUnwrap(ft.distance(to: sibling))
        let toOther = try XCTUnwrap(ft.distance(to: other))
        XCTAssertEqual(toBase.samples, 3 * 128)
        // A sibling's difference is two updates: about √2 the spread, half a bit (log2) farther.
        XCTAssertGreaterThan(toSibling.log2RMS - toBase.log2RMS, 0.3)
        XCTAssertGreaterThan(toOther.log2RMS - toSibling.log2RMS, 3, "an unrelated model is many bits farther")
        XCTAssertEqual(b.distance(to: b)?.log2RMS, -100, "identical values: as near as it gets")
        // Read in place from the bytes (base choice's coarse comparison): the same figures, and
        // damaged bytes refused as `decode` refuses them.
        for other in [b, sibling, other, b.coarse(), sibling.coarse()] {
            XCTAssertEqual(try ft.distance(toEncoded: other.encoded())?.log2RMS, ft.distance(to: other)?.log2RMS)
            XCTAssertEqual(try ft.coarse().distance(toEncoded: other.encoded())?.samples, ft.coarse().distance(to: other)?.samples)
        }
        var flipped = b.encoded()
        flipped[20] ^= 0x40
        XCTAssertThrowsError(try ft.distance(toEncoded: flipped)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        XCTAssertThrowsError(try ft.distance(toEncoded: [1, 2, 3]))
        XCTAssertNil(try ft.distance(toEncoded: BaseSketch(entries: [BaseSketch.Entry(signature: 1, format: 2, values: [0, 0])]).encoded()),
                     "no tensor in common")
    }

    /// A catalog written before schema version 2 (no index, no sketches) opens, is upgraded in
    /// place to version 3, and its revisions are found as candidates; their sketches are made when
    /// first needed.
    /// A new store at `storeDir` holding `base` and `ft1`, a fine-tune of it, put automatically and
    /// closed again (for tests that then change the catalog underneath); ft1's tensors.
    func storeBaseAndFineTune() throws -> (embed: [UInt8], layer: [UInt8], bias: [UInt8]) {
        let base = baseTensors()
        let ft1 = nudged(base, seed: 10)
        let store = try ModelStore.open(directory: storeDir, create: true)
        _ = try store.put(model: "base", paths: [try model("base", base)])
        _ = try store.put(model: "ft1", paths: [try model("ft1", ft1)])
        return ft1
    }

    func testVersion1CatalogIsUpgradedInPlace() throws {
        let base = baseTensors()
        do {
            let store = try ModelStore.open(directory: storeDir, create: true)
            _ = try store.put(model: "base", paths: [try model("base", base)])
            _ = try store.put(model: "misc", paths: [TestSupport.fixtures + "/misc"])
        }
        // Back to exactly the version-1 schema: versions 2 and 3 only added these objects.
        do {
            let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
            try db.execute("""
                DROP TABLE architecture_index; DROP TABLE revision_architectures; DROP TABLE revision_sketches;
                DROP INDEX revisions_by_model; UPDATE meta SET value = '1' WHERE key = 'schema_version';
                """)
        }
        let store = try ModelStore.open(directory: storeDir)
        do {
            let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
            XCTAssertEqual(try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").firstRow { $0.text(0) }, "3")
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM architecture_index").firstRow { $0.int(0) }, 3)
            // The model with safetensors is indexed; `misc` (no tensors) is no one's candidate.
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM revision_architectures WHERE coarse_sketch IS NULL").firstRow { $0.int(0) }, 1)
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM revision_sketches").firstRow { $0.int(0) }, 0)
        }
        let ft = try store.put(model: "ft", paths: [try model("ft", nudged(base, seed: 10))])
        XCTAssertEqual(ft.base?.revision.model, "base")
        XCTAssertTrue(try XCTUnwrap(ft.base?.reason).contains("1 sketch made from stored chunks"), ft.base?.reason ?? "")
        let baseRow = try store.catalog.resolve(model: "base", revision: nil).rowID
        XCTAssertNotNil(try store.catalog.sketches(revisionRowIDs: [baseRow])[baseRow])
        try assertRoundTrip(store, "ft", dir + "/ft")
        XCTAssertTrue(try Checker(store: store, readData: true).run().isHealthy)

        // A catalog from a newer tpstore is refused, not half understood.
        do {
            let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
            try db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
        }
        XCTAssertThrowsError(try ModelStore.open(directory: storeDir)) { XCTAssertTrue("\($0)".contains("upgrade tpstore"), "\($0)") }
    }

    /// A version-2 catalog (the candidate index as 32 rows per revision in `tensor_index`, sketches
    /// stored) is upgraded in place: one index row per revision with its coarse sketch, the
    /// architectures' rows once, `tensor_index` dropped; base choice then needs no sketch made.
    func testVersion2CatalogIsUpgradedInPlace() throws {
        let ft1 = try storeBaseAndFineTune()
        // Back to the version-2 schema: version 3 replaced tensor_index by these two tables.
        do {
            let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
            try db.execute("""
                DROP TABLE architecture_index; DROP TABLE revision_architectures;
                CREATE TABLE tensor_index (signature INTEGER NOT NULL,
                    revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
                    bytes INTEGER NOT NULL, PRIMARY KEY (signature, revision_id)) WITHOUT ROWID;
                CREATE INDEX tensor_index_by_revision ON tensor_index(revision_id);
                INSERT INTO tensor_index SELECT 7, id, 100 FROM revisions;
                UPDATE meta SET value = '2' WHERE key = 'schema_version';
                """)
        }
        let store = try ModelStore.open(directory: storeDir)
        do {
            let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
            XCTAssertEqual(try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").firstRow { $0.text(0) }, "3")
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM sqlite_master WHERE tbl_name = 'tensor_index'").firstRow { $0.int(0) }, 0)
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM architecture_index").firstRow { $0.int(0) }, 3, "one architecture, its rows once")
            XCTAssertEqual(try db.prepare("SELECT count(*) FROM revision_architectures WHERE coarse_sketch IS NOT NULL").firstRow { $0.int(0) }, 2)
        }
        let ft2 = try store.put(model: "ft2", paths: [try model("ft2", nudged(ft1, seed: 20))])
        XCTAssertEqual(ft2.base?.revision.model, "ft1")
        let reason = try XCTUnwrap(ft2.base?.reason)
        XCTAssertTrue(reason.contains("2 compared by content sketch (2 in full)") && !reason.contains("made from stored chunks"), reason)
        try assertRoundTrip(store, "ft2", dir + "/ft2")
    }

    /// `fsck --repair` rebuilds the index (through its commits) and every sketch.
    func testRepairRebuildsTheIndexAndTheSketches() throws {
        let ft1 = try storeBaseAndFineTune()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: storeDir + "/catalog.db" + suffix) }
        let report = try Repairer(directory: storeDir).run()
        XCTAssertTrue(report.lines.contains("candidate index rebuilt for 2 revisions, 2 content sketches made"), report.lines.joined(separator: "\n"))
        let store = try ModelStore.open(directory: storeDir)
        let rows = try store.revisions().map(\.rowID)
        XCTAssertEqual(try store.catalog.sketches(revisionRowIDs: rows).count, 2)
        let ft2 = try store.put(model: "ft2", paths: [try model("ft2", nudged(ft1, seed: 20))])
        XCTAssertEqual(ft2.base?.revision.model, "ft1")
        let reason = try XCTUnwrap(ft2.base?.reason)
        XCTAssertTrue(reason.contains("2 compared by content sketch") && !reason.contains("made from stored chunks"), reason)
    }

    /// The index answers by signature share: another architecture is not a candidate, and the
    /// threshold is on the upload's bytes.
    func testCandidateIndexFindsOnlySharingRevisions() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        let base = try store.put(model: "base", paths: [try model("base", baseTensors())])
        var other = SafetensorsBuilder()
        other.add("encoder.weight", "F32", [300, 1024], SafetensorsBuilder.f32(300 * 1024, seed: 9))
        try TestSupport.write(other.bytes(), to: dir + "/other/model.safetensors")
        _ = try store.put(model: "other", paths: [dir + "/other"])
        let wanted = TensorSignature.indexRows([
            TensorRecord(name: "embed.weight", dtype: "F32", shape: [310, 1024], begin: 0, end: 310 * 4096),  // rows added: still pairs
            TensorRecord(name: "layer.0.weight", dtype: "F32", shape: [256, 256], begin: 0, end: 262_144),
        ])
        let found = try store.catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10)
        XCTAssertEqual(found.map(\.revisionRowID), [base.revision.rowID])
        XCTAssertEqual(found.first?.matchedBytes, 310 * 4096 + 262_144)
        XCTAssertTrue(try store.catalog.baseCandidates(wanted, minimumBytes: 310 * 4096 + 262_145, limit: 10).isEmpty)
        // Removing a revision removes its index rows and sketch (ON DELETE CASCADE).
        try store.remove(model: "base", revision: base.revision.revision)
        XCTAssertTrue(try store.catalog.baseCandidates(wanted, minimumBytes: 1, limit: 10).isEmpty)
        XCTAssertTrue(try store.catalog.sketches(revisionRowIDs: [base.revision.rowID]).isEmpty)
    }

    /// The put path's catalog queries are index lookups: SQLite's plan reads no store table by a
    /// full scan (only the upload's own signature list `w` and the architectures matching it, `a`,
    /// made from index lookups), so their cost does not grow with the store.
    func testPutPathQueriesUseIndexes() throws {
        let store = try ModelStore.open(directory: storeDir, create: true)
        _ = try store.put(model: "base", paths: [try model("base", baseTensors())])
        _ = try store.put(model: "ft", paths: [try model("ft", nudged(baseTensors(), seed: 10))])
        let db = try SQLiteDatabase(path: storeDir + "/catalog.db")
        // No ANALYZE: tpstore never runs it, so these are the plans a store of any size gets (with
        // statistics of this two-revision store the planner would rightly scan it).
        let revision = SQLCatalog.revisionSelect
        let queries: [(String, [SQLValue])] = [
            ("WITH want(signature, bytes) AS (VALUES \(SQLCatalog.tuples(2, width: 2))) " + CatalogSQL.baseCandidates(threshold: "?", limit: "?"),
             [.int(1), .int(2), .int(3), .int(4), .int(1), .int(10)]),
            ("SELECT revision_id, sketch FROM revision_sketches WHERE revision_id IN (\(SQLCatalog.list(2)))", [.int(1), .int(2)]),
            (revision + " WHERE m.name = ? ORDER BY r.id DESC LIMIT 1", [.text("base")]),
            (revision + " WHERE m.name = ? AND r.name = ?", [.text("base"), .text("v1")]),
            (revision + " WHERE r.id IN (\(SQLCatalog.list(2)))", [.int(1), .int(2)]),
            (SQLCatalog.chunksByID(2), [.blob([1]), .blob([2]), .blob([3]), .blob([4])]),
            ("SELECT id, path, size, sha256, kind FROM files WHERE revision_id = ? ORDER BY path", [.int(1)]),
            ("SELECT name, dtype, shape, begin_offset, end_offset FROM tensors WHERE file_id = ? ORDER BY begin_offset, name", [.int(1)]),
        ]
        for (sql, values) in queries {
            let plan = try db.prepare("EXPLAIN QUERY PLAN " + sql).bind(values).rows { $0.text(3) }
            let scans = plan.filter { $0.hasPrefix("SCAN") && !$0.contains("CONSTANT ROW") && !["SCAN w", "SCAN a"].contains($0) }
            XCTAssertTrue(scans.isEmpty, "\(sql)\n\(plan.joined(separator: "\n"))")
        }
    }
}
