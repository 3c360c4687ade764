import TenPakFormat

/// A bounded cache of decoded chunks, keyed by content address. Safe to share between threads.
///
/// The key is the chunk's `ChunkID` (XXH3-128 and SHA-256 of the decoded bytes), never a catalog
/// row id: row ids are reused after gc forgets a chunk and renumbered by `fsck --repair`, so an
/// entry keyed by row could be handed out for another chunk's bytes. A content key cannot be
/// reinterpreted: whatever row, pack or catalog names the chunk later, its bytes are these.
/// `get` also takes the expected length and drops an entry that disagrees, so a hit is exactly as
/// long as the caller's catalog row says.
///
/// Eviction is least-recently-used by a use counter; entries are whole chunks (≤ 1 MiB for tensor
/// chunks), so the scan on eviction is over a few hundred entries at most.
public final class ChunkCache: @unchecked Sendable {
    // Safe: all state is touched inside `lock`.
    private let lock = NSLockShim()
    private var entries: [ChunkID: (bytes: [UInt8], lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var bytes = 0
    public let capacity: Int

    /// `capacity` in bytes of decoded chunks.
    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// The cached bytes of chunk `id` when they are `length` bytes long; nil otherwise.
    public func get(_ id: ChunkID, length: Int) -> [UInt8]? {
        lock.withLock {
            guard var entry = entries[id] else { return nil }
            guard entry.bytes.count == length else {
                // Unreachable for a content key unless memory was damaged: never serve it.
                bytes -= entry.bytes.count
                entries[id] = nil
                return nil
            }
            clock += 1
            entry.lastUse = clock
            entries[id] = entry
            return entry.bytes
        }
    }

    /// Whether chunk `id` is cached (does not count as a use).
    public func contains(_ id: ChunkID) -> Bool {
        lock.withLock { entries[id] != nil }
    }

    /// Keeps the decoded bytes of chunk `id`. The caller has checked them against `id`.
    public func put(_ id: ChunkID, _ value: [UInt8]) {
        guard value.count <= capacity else { return }
        lock.withLock {
            clock += 1
            if let old = entries[id] { bytes -= old.bytes.count }
            entries[id] = (value, clock)
            bytes += value.count
            while bytes > capacity, let victim = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                bytes -= victim.value.bytes.count
                entries[victim.key] = nil
            }
        }
    }

    public var usedBytes: Int { lock.withLock { bytes } }
}
