import Foundation
import TenPakChunkStore

/// A store's packs with faults on demand: seals fail while `failingSeals` is set and wait while
/// `holdingSeals` is; the `failAppendAt`-th append (counted over every pack written) throws.
final class FaultyPacks: PackStorage, @unchecked Sendable {
    struct Fault: Error {}
    private let inner: any PackStorage
    private let failAppendAt: Int?
    // Safe: the flags and the count are touched only inside `lock`.
    private let lock = NSLock()
    private var failSeals = false
    private var holdSeals = false
    private var appendCount = 0
    var failingSeals: Bool {
        get { lock.withLock { failSeals } }
        set { lock.withLock { failSeals = newValue } }
    }
    var holdingSeals: Bool {
        get { lock.withLock { holdSeals } }
        set { lock.withLock { holdSeals = newValue } }
    }
    /// Appends made so far (the failing one included).
    var appends: Int { lock.withLock { appendCount } }

    init(_ inner: any PackStorage, failAppendAt: Int? = nil) {
        self.inner = inner
        self.failAppendAt = failAppendAt
    }

    final class Writer: PackWriting {
        let inner: any PackWriting
        let owner: FaultyPacks
        init(_ inner: any PackWriting, owner: FaultyPacks) {
            self.inner = inner
            self.owner = owner
        }
        var name: String { inner.name }
        var size: Int { inner.size }
        func append(_ bytes: UnsafeRawBufferPointer) throws -> Int {
            let n = owner.lock.withLock {
                owner.appendCount += 1
                return owner.appendCount
            }
            if n == owner.failAppendAt { throw Fault() }
            return try inner.append(bytes)
        }
        func seal() throws {
            while owner.holdingSeals { Thread.sleep(forTimeInterval: 0.005) }
            if owner.failingSeals { throw Fault() }
            try inner.seal()
        }
        func abandon() { inner.abandon() }
    }

    func createPack() throws -> any PackWriting { Writer(try inner.createPack(), owner: self) }
    func read(pack: String, offset: Int, length: Int) throws -> [UInt8] { try inner.read(pack: pack, offset: offset, length: length) }
    func packNames() throws -> [String] { try inner.packNames() }
    func size(pack: String) throws -> Int { try inner.size(pack: pack) }
    var readsAreRemote: Bool { inner.readsAreRemote }
    func delete(pack: String) throws { try inner.delete(pack: pack) }
}
