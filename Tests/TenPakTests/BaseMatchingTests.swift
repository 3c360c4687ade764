import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore
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
        XCTAssertTrue(report.warnings.contains { $0.contains("no base") }, "\(report.warnings)")
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
