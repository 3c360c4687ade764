import Foundation
@testable import TenPakChunkStore
import TenPakCodecs
import TenPakFormat
import TenPakTestSupport
import XCTest

/// Packs in memory, with faults on demand: a seal or an append can be made to fail.
final class InMemoryPacks: PackStorage, @unchecked Sendable {
    struct InjectedFault: Error {}

    // Safe: all state is touched inside `lock`.
    private let lock = NSLock()
    private var sealedPacks: [String: [UInt8]] = [:]
    private var counter = 0
    /// Called before each seal with the number of seals so far; throwing fails that seal.
    var beforeSeal: (Int) throws -> Void = { _ in }
    private var seals = 0

    final class Writer: PackWriting {
        let name: String
        let owner: InMemoryPacks
        var bytes: [UInt8] = []
        var broken = false
        init(name: String, owner: InMemoryPacks) {
            self.name = name
            self.owner = owner
        }
        var size: Int { bytes.count }
        func append(_ more: UnsafeRawBufferPointer) throws -> Int {
            if broken { throw InjectedFault() }
            defer { bytes.append(contentsOf: more) }
            return bytes.count
        }
        func seal() throws {
            if broken { throw InjectedFault() }
            try owner.seal(self)
        }
        func abandon() { broken = true }
    }

    var names: [String] { lock.withLock { sealedPacks.keys.sorted() } }

    func createPack() throws -> any PackWriting {
        lock.withLock {
            counter += 1
            return Writer(name: String(format: "%032x", counter), owner: self)
        }
    }

    fileprivate func seal(_ writer: Writer) throws {
        let count = lock.withLock { () -> Int in
            seals += 1
            return seals
        }
        do {
            try beforeSeal(count)
        } catch {
            writer.broken = true
            throw error
        }
        lock.withLock { sealedPacks[writer.name] = writer.bytes }
    }

    func read(pack: String, offset: Int, length: Int) throws -> [UInt8] {
        try lock.withLock {
            guard let bytes = sealedPacks[pack], offset >= 0, length >= 0, offset + length <= bytes.count else {
                throw StoreError.notFound("pack \(pack)")
            }
            return Array(bytes[offset ..< offset + length])
        }
    }

    func packNames() throws -> [String] { names }

    func size(pack: String) throws -> Int {
        try lock.withLock {
            guard let bytes = sealedPacks[pack] else { throw StoreError.notFound("pack \(pack)") }
            return bytes.count
        }
    }

    func delete(pack: String) throws {
        _ = lock.withLock { sealedPacks.removeValue(forKey: pack) }
    }
}

/// The one frame writer: roll-over, and what becomes of its packs on every way out.
final class FrameWriterTests: XCTestCase {
    func frame(_ payload: [UInt8]) -> FrameHeader {
        let id = payload.withUnsafeBytes { ChunkID(of: $0) }
        return FrameHeader(kind: .chunk, encoding: Encoding.stored.rawValue, payloadLength: payload.count, rawLength: payload.count,
                           elementWidth: 1, floatLayout: .none, id: id, base: nil, payloadChecksum: Hashing.xxh3_64(payload))
    }

    /// Appends `count` frames of 1,000 bytes each to `writer`.
    func fill(_ writer: FrameWriter, _ count: Int) throws -> [NewChunk] {
        try (0 ..< count).map { i in
            let payload = [UInt8](repeating: UInt8(i & 0xFF), count: 1_000)
            return try writer.append(header: frame(payload), payload: payload)
        }
    }

    func testFramesRollOverAndACommittedWriterKeepsItsPacks() throws {
        let packs = InMemoryPacks()
        let writer = FrameWriter(packs: packs, rollOver: 2_500)
        let chunks = try fill(writer, 7)
        let sealed = try writer.commit { $0 }
        XCTAssertEqual(sealed.count, 3, "2.5 KB roll-over: three frames of ~1.1 KB per pack")
        XCTAssertEqual(Set(sealed.map(\.name)), Set(packs.names))
        for chunk in chunks {
            let bytes = try packs.read(pack: chunk.pack, offset: chunk.frameOffset, length: chunk.frameLength)
            let header = try bytes.withUnsafeBytes { try FrameHeader.decode($0, where: "test") }
            XCTAssertEqual(header.id, chunk.id)
        }
    }

    func testARefusedTransactionDeletesEveryPack() throws {
        let packs = InMemoryPacks()
        let writer = FrameWriter(packs: packs, rollOver: 2_500)
        _ = try fill(writer, 7)
        XCTAssertThrowsError(try writer.commit { _ in throw StoreError.fenced(.revision(model: "m", revision: "r")) })
        XCTAssertEqual(packs.names, [])
    }

    func testATransactionWithoutAnAnswerLeavesThePacksForGc() throws {
        let packs = InMemoryPacks()
        let writer = FrameWriter(packs: packs, rollOver: 2_500)
        _ = try fill(writer, 4)
        XCTAssertThrowsError(try writer.commit { _ in throw StoreError.unavailable("no answer") })
        writer.discard()
        XCTAssertEqual(packs.names.count, 2, "the commit may have been applied: its packs must stay, whatever the caller does next")
    }

    func testAFailedSealDeletesThePacksSealedBeforeIt() throws {
        let packs = InMemoryPacks()
        packs.beforeSeal = { if $0 == 2 { throw InMemoryPacks.InjectedFault() } }
        let writer = FrameWriter(packs: packs, rollOver: 2_500)
        XCTAssertThrowsError(try fill(writer, 7).count)
        writer.discard()
        XCTAssertEqual(packs.names, [])
    }

    func testAWriterDroppedWithoutCommitDeletesItsPacks() throws {
        let packs = InMemoryPacks()
        do {
            let writer = FrameWriter(packs: packs, rollOver: 2_500)
            _ = try fill(writer, 7)
            XCTAssertEqual(packs.names.count, 2)
        }
        XCTAssertEqual(packs.names, [])
    }

    func testBackgroundWritesRunInOrderAndTheFirstFailureFailsTheFinish() throws {
        let writes = BackgroundWrites()
        let order = NSLock()
        nonisolated(unsafe) var seen: [UInt8] = []
        for k in 0 ..< 5 {
            writes.start([UInt8(k), 9]) { bytes in
                order.withLock { seen.append(bytes[0]) }
                if k == 2 { throw StoreError.io(operation: "fdatasync", path: "p", errno: 5) }
                if k == 3 { throw InMemoryPacks.InjectedFault() }
            }
        }
        XCTAssertThrowsError(try writes.finish()) { error in
            guard case let StoreError.io(operation, _, errno) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(operation, "fdatasync")
            XCTAssertEqual(errno, 5)
        }
        XCTAssertEqual(order.withLock { seen }, [0, 1, 2, 3, 4], "every write ran, in order, before finish returned")
        let clean = BackgroundWrites()
        clean.start(Array(repeating: 7, count: 1_000)) { XCTAssertEqual($0.count, 1_000) }
        let spare = try clean.finish()
        XCTAssertEqual(spare.count, 0, "the buffer comes back empty")
        XCTAssertGreaterThanOrEqual(spare.capacity, 1_000, "with its memory, for the next buffer")
    }

    /// A local pack longer than the writer's buffer is flushed, synced in the background and
    /// sealed; every byte reads back.
    func testALocalPackPastSeveralFlushesReadsBack() throws {
        let packs = LocalPackDirectory(root: TestSupport.temporaryDirectory(self, "packs"))
        let writer = FrameWriter(packs: packs)
        var chunks: [(NewChunk, [UInt8])] = []
        for i in 0 ..< 20 {
            var random = TestSupport.Random(seed: UInt64(i))
            let block = random.bytes(4_096)
            var payload: [UInt8] = []
            for _ in 0 ..< 270 { payload += block }
            chunks.append((try writer.append(header: frame(payload), payload: payload), payload))
        }
        let sealed = try writer.commit { $0 }
        XCTAssertEqual(sealed.count, 1)
        XCTAssertGreaterThan(sealed[0].size, 20 * 270 * 4_096)
        XCTAssertEqual(try packs.size(pack: sealed[0].name), sealed[0].size)
        for (chunk, payload) in chunks {
            let bytes = try packs.read(pack: chunk.pack, offset: chunk.frameOffset, length: chunk.frameLength)
            XCTAssertEqual(Array(bytes.suffix(payload.count)), payload)
        }
    }
}
