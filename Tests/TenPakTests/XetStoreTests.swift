import Foundation
@testable import TenPakHTTP
import TenPakTestSupport
import XCTest

/// The Xet xorb format limits and the xorb store's directory, quota, eviction and pins (SPEC 14.9),
/// without a server.
final class XetStoreTests: XCTestCase {
    func le(_ value: Int, _ count: Int) -> [UInt8] { (0 ..< count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// A stored (scheme 0) chunk.
    func chunk(_ payload: [UInt8]) -> [UInt8] { [0] + le(payload.count, 3) + [0] + le(payload.count, 3) + payload }

    func random(_ count: Int) -> [UInt8] { (0 ..< count).map { _ in UInt8.random(in: 0 ... 255) } }

    func testXorbChunkLimits() throws {
        XCTAssertNoThrow(try Xorb(chunk([1, 2, 3])))
        // An empty chunk, alone or among others, and with either length zero.
        for bad in [chunk([]), chunk([1]) + chunk([]) + chunk([2]), [0] + le(1, 3) + [1] + le(0, 3) + [7], [0] + le(0, 3) + [1] + le(5, 3)] {
            XCTAssertThrowsError(try Xorb(bad)) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
        }
        let most = Array(repeating: chunk([9]), count: Xorb.maxChunks).flatMap { $0 }
        XCTAssertEqual(try Xorb(most).chunks.count, 8192)
        XCTAssertThrowsError(try Xorb(most + chunk([9]))) { XCTAssertTrue("\($0)".contains("more than 8192 chunks"), "\($0)") }
        // The serialized bound fits 64 MiB of incompressible chunks with their headers and footer.
        XCTAssertGreaterThanOrEqual(Xorb.maxBytes, (64 << 20) + 8192 * 8 + 8192 * 64)
    }

    func testXorbDirectoryMustBeThisUsersOwn() throws {
        let spool = TestSupport.temporaryDirectory(self, "xet-dir")
        // Made by the first xorb, private; an existing one loses group and other permissions.
        let store = try XorbStore(spool: spool, maxBytes: 1 << 20)
        var info = stat()
        XCTAssertNotEqual(lstat(spool + "/" + XorbStore.directoryName, &info), 0, "made before a xorb arrived")
        XCTAssertTrue(try store.put(repo: "org/x", owner: "0123456789abcdef", hash: String(repeating: "ab", count: 32), bytes: chunk([1])))
        XCTAssertEqual(lstat(spool + "/" + XorbStore.directoryName, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        XCTAssertEqual(chmod(spool + "/" + XorbStore.directoryName, 0o755), 0)
        _ = try XorbStore(spool: spool + "/", maxBytes: 1 << 20)
        XCTAssertEqual(lstat(spool + "/" + XorbStore.directoryName, &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o700)
        // A symbolic link in its place (to a directory) is refused, as is a plain file.
        let other = TestSupport.temporaryDirectory(self, "xet-elsewhere")
        let linked = TestSupport.temporaryDirectory(self, "xet-link")
        XCTAssertEqual(symlink(other, linked + "/" + XorbStore.directoryName), 0)
        XCTAssertThrowsError(try XorbStore(spool: linked, maxBytes: 1 << 20)) { error in
            XCTAssertTrue(error is XorbDirectoryError, "\(error)")
            XCTAssertTrue("\(error)".contains("symbolic link"), "\(error)")
        }
        let plain = TestSupport.temporaryDirectory(self, "xet-file")
        try TestSupport.write([1], to: plain + "/" + XorbStore.directoryName)
        XCTAssertThrowsError(try XorbStore(spool: plain, maxBytes: 1 << 20)) { XCTAssertTrue($0 is XorbDirectoryError, "\($0)") }

        // A link planted after the start, before the first xorb: a sweep lists and removes nothing
        // through it (an old file there, not named like a xorb, would be a leftover inside), and
        // the put is refused.
        let late = TestSupport.temporaryDirectory(self, "xet-late")
        let lateStore = try XorbStore(spool: late, maxBytes: 1 << 20)
        let victim = other + "/sub/precious"
        try TestSupport.write([7], to: victim)
        XCTAssertNoThrow(try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: victim))
        XCTAssertEqual(symlink(other, late + "/" + XorbStore.directoryName), 0)
        lateStore.sweep()
        XCTAssertTrue(FileManager.default.fileExists(atPath: victim), "the sweep followed the link")
        XCTAssertEqual(lateStore.scopes(repo: "org/x", owner: "0123456789abcdef", mayRead: { _ in true }).count, 1)
        XCTAssertThrowsError(try lateStore.put(repo: "org/x", owner: "0123456789abcdef", hash: String(repeating: "cd", count: 32), bytes: chunk([1])))
        XCTAssertTrue(FileManager.default.fileExists(atPath: victim))
    }

    /// Every xorb counts at least 64 KiB: a flood of tiny ones fills the space by count.
    func testTinyXorbsAreChargedTheMinimum() throws {
        let store = try XorbStore(spool: TestSupport.temporaryDirectory(self, "xet-tiny"), maxBytes: 2 * XorbStore.minimumCharge)
        let hashes = (0 ..< 3).map { String(repeating: String(format: "%02x", $0 + 0xb0), count: 32) }
        XCTAssertTrue(try store.put(repo: "org/x", owner: "0123456789abcdef", hash: hashes[0], bytes: chunk([1])))
        XCTAssertTrue(try store.put(repo: "org/x", owner: "0123456789abcdef", hash: hashes[1], bytes: chunk([2])))
        XCTAssertThrowsError(try store.put(repo: "org/x", owner: "0123456789abcdef", hash: hashes[2], bytes: chunk([3])))
        XCTAssertEqual(store.sweep(), 2 * XorbStore.minimumCharge, "a scan charges the same")
    }

    /// With room for two xorbs: a third is 507 while both are recent; one unused for over an hour
    /// is evicted for it, least recently used first, unless a shard in progress uses it.
    func testXorbSpaceIsEnforcedByEvictionThen507() throws {
        let spool = TestSupport.temporaryDirectory(self, "xet-quota")
        // Over the 64 KiB minimum a xorb is charged; room for a small one besides (the replacement below).
        let size = 80 << 10
        XCTAssertGreaterThan(size, XorbStore.minimumCharge)
        let store = try XorbStore(spool: spool, maxBytes: 2 * XorbStore.estimate(size + 8) + XorbStore.minimumCharge + 8192)
        let owner = XorbStore.owner([1, 2, 3])
        let hashes = (0 ..< 5).map { String(repeating: String(format: "%02x", $0 + 0xa0), count: 32) }
        let bodies = hashes.map { _ in chunk(random(size)) }
        func put(_ i: Int) throws -> Bool { try store.put(repo: "org/x", owner: owner, hash: hashes[i], bytes: bodies[i]) }
        func path(_ i: Int) -> String { store.scope("org/x", owner: owner) + "/" + hashes[i] }
        func age(_ i: Int, hours: Double) {
            let then = Date().addingTimeInterval(-hours * 3600)
            XCTAssertNoThrow(try FileManager.default.setAttributes([.modificationDate: then], ofItemAtPath: path(i)))
        }
        func is507(_ body: () throws -> Bool, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try body(), file: file, line: line) { error in
                // The status as text ("507 Insufficient Storage"): HTTPTypes is not imported here.
                XCTAssertTrue((error as? HubFailure).map { "\($0.status)".hasPrefix("507") } ?? false, "\(error)", file: file, line: line)
            }
        }
        // A put that fails after its space was reserved gives the space back: three such puts
        // (a file where the scope's directory belongs) would otherwise hold more than the limit.
        try TestSupport.write([1], to: store.scope("org/bad", owner: owner))
        for _ in 0 ..< 3 {
            XCTAssertThrowsError(try store.put(repo: "org/bad", owner: owner, hash: hashes[0], bytes: bodies[0])) {
                XCTAssertTrue($0 is XorbDirectoryError, "\($0)")
            }
        }
        XCTAssertTrue(try put(0))
        XCTAssertTrue(try put(1))
        XCTAssertFalse(try put(1), "a xorb the scope has is not written again")
        var info = stat()
        XCTAssertEqual(lstat(path(0), &info), 0)
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        // Both recent: no room, and the refused xorb leaves nothing (nor any reservation) behind.
        is507 { try put(2) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(2)))
        is507 { try put(2) }
        // 1 unused for two hours, 0 for three: 0 goes first, for 2; then 1 for 3.
        age(0, hours: 3)
        age(1, hours: 2)
        store.sweep()
        XCTAssertTrue(try put(2))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(0)))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path(1)))
        // A shard in progress (started after the sweep that listed 1) uses 1, and 2 is recent: 507;
        // nor does the sweep remove 1 past the retention while it is pinned.
        store.sweep()
        store.pin([hashes[1]])
        is507 { try put(3) }
        age(1, hours: 25)
        store.sweep()
        XCTAssertTrue(FileManager.default.fileExists(atPath: path(1)))
        is507 { try put(3) }
        store.unpin([hashes[1]])
        age(1, hours: 2)
        // A xorb used since the scan listed it (loaded: touched) is not evicted either.
        store.sweep()
        XCTAssertNotNil(try store.load(hashes[1], scopes: [store.scope("org/x", owner: owner)]))
        is507 { try put(3) }
        age(1, hours: 2)
        store.sweep()
        XCTAssertTrue(try put(3))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(1)))
        // Past the retention (a day unused) a xorb goes at the next sweep even with room to spare.
        age(2, hours: 25)
        store.sweep()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(2)))
        XCTAssertTrue(try put(4))
        // A file of another size under a xorb's name is replaced.
        let other = chunk(random(100))
        XCTAssertTrue(try store.put(repo: "org/x", owner: owner, hash: hashes[4], bytes: other))
        XCTAssertEqual(try TestSupport.read(path(4)), other)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: store.scope("org/x", owner: owner)).sorted(), [hashes[3], hashes[4]].sorted())
    }
}
