import TenPakChunkStore
import TenPakFormat
import XCTest

/// The decoded-chunk cache: least-recently-used eviction by bytes, content keys checked by length.
final class ChunkCacheTests: XCTestCase {
    /// A chunk of `count` bytes and its id.
    func chunk(_ seed: UInt8, _ count: Int) -> (id: ChunkID, bytes: [UInt8]) {
        let bytes = (0 ..< count).map { UInt8(truncatingIfNeeded: $0) &+ seed }
        return (bytes.withUnsafeBytes { ChunkID(of: $0) }, bytes)
    }

    func testEvictsTheLeastRecentlyUsedFirst() {
        let cache = ChunkCache(capacity: 300)
        let (a, b, c, d) = (chunk(1, 100), chunk(2, 100), chunk(3, 100), chunk(4, 100))
        cache.put(a.id, a.bytes)
        cache.put(b.id, b.bytes)
        cache.put(c.id, c.bytes)
        XCTAssertEqual(cache.usedBytes, 300)
        // A use moves `a` to the front: `b` is now the oldest.
        XCTAssertEqual(cache.get(a.id, length: 100), a.bytes)
        cache.put(d.id, d.bytes)
        XCTAssertFalse(cache.contains(b.id))
        XCTAssertTrue(cache.contains(a.id) && cache.contains(c.id) && cache.contains(d.id))
        XCTAssertEqual(cache.usedBytes, 300)
        // `contains` is not a use: `c` stays the oldest and goes first.
        XCTAssertTrue(cache.contains(c.id))
        cache.put(b.id, b.bytes)
        XCTAssertFalse(cache.contains(c.id))
        XCTAssertEqual(cache.count, 3)
    }

    func testALargeEntryEvictsAsManyAsItNeedsAndAnOversizedOneIsNotKept() {
        let cache = ChunkCache(capacity: 300)
        let small = (1 ... 3).map { chunk($0, 100) }
        for c in small { cache.put(c.id, c.bytes) }
        let big = chunk(9, 250)
        cache.put(big.id, big.bytes)
        XCTAssertEqual(cache.count, 1, "three entries of 100 make room for one of 250")
        XCTAssertEqual(cache.usedBytes, 250)
        let oversized = chunk(10, 301)
        cache.put(oversized.id, oversized.bytes)
        XCTAssertFalse(cache.contains(oversized.id))
        XCTAssertTrue(cache.contains(big.id), "an entry too large to keep evicts nothing")
    }

    func testAWrongLengthIsNeverServedAndFreesItsEntry() {
        let cache = ChunkCache(capacity: 1000)
        let a = chunk(1, 100)
        cache.put(a.id, a.bytes)
        XCTAssertNil(cache.get(a.id, length: 99))
        XCTAssertFalse(cache.contains(a.id))
        XCTAssertEqual(cache.usedBytes, 0)
        // The freed slot is reused, and a second put of one id replaces its bytes.
        cache.put(a.id, a.bytes)
        cache.put(a.id, a.bytes)
        XCTAssertEqual(cache.count, 1)
        XCTAssertEqual(cache.usedBytes, 100)
        XCTAssertEqual(cache.get(a.id, length: 100), a.bytes)
    }

    /// Many puts, gets and evictions against a model of the same policy (an ordered list): the
    /// cache holds exactly the entries the model does, with the same byte total.
    func testAgreesWithAListModelOverManyOperations() {
        let capacity = 4096
        let cache = ChunkCache(capacity: capacity)
        let chunks = (0 ..< 64).map { chunk(UInt8($0), 64 + ($0 * 37) % 700) }
        var model: [Int] = []   // chunk indices, oldest use first
        var random = SplitMix64(seed: 7)
        for _ in 0 ..< 5000 {
            let k = Int(random.next() % UInt64(chunks.count))
            if random.next() % 3 == 0 {
                let hit = cache.get(chunks[k].id, length: chunks[k].bytes.count)
                XCTAssertEqual(hit != nil, model.contains(k))
                if let at = model.firstIndex(of: k) { model.remove(at: at); model.append(k) }
            } else {
                cache.put(chunks[k].id, chunks[k].bytes)
                model.removeAll { $0 == k }
                model.append(k)
                while model.reduce(0, { $0 + chunks[$1].bytes.count }) > capacity { model.removeFirst() }
            }
        }
        XCTAssertEqual(Set((0 ..< chunks.count).filter { cache.contains(chunks[$0].id) }), Set(model))
        XCTAssertEqual(cache.usedBytes, model.reduce(0) { $0 + chunks[$1].bytes.count })
    }
}
