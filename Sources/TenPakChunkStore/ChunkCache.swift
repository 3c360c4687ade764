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
/// Eviction is least-recently-used: entries sit on a list from newest to oldest use, so a hit, an
/// insert and each eviction cost O(1) however many entries there are (a reader's cache of 256 MiB
/// holds 65,536 chunks of 4 KiB; a scan for the oldest on every insert would cost as much).
public final class ChunkCache: @unchecked Sendable {
    // Safe: all state is touched inside `lock`.
    private let lock = NSLockShim()
    /// One entry per slot; `newer` and `older` link the slots in use from `newest` to `oldest`
    /// (-1: none). A freed slot keeps no bytes and goes on `freeSlots` for the next insert.
    private struct Slot {
        var id: ChunkID
        var bytes: [UInt8]
        var newer: Int
        var older: Int
    }
    private var slots: [Slot] = []
    private var freeSlots: [Int] = []
    private var index: [ChunkID: Int] = [:]
    private var newest = -1
    private var oldest = -1
    private var bytes = 0
    public let capacity: Int

    /// `capacity` in bytes of decoded chunks.
    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// The cached bytes of chunk `id` when they are `length` bytes long; nil otherwise.
    public func get(_ id: ChunkID, length: Int) -> [UInt8]? {
        lock.withLock {
            guard let i = index[id] else { return nil }
            guard slots[i].bytes.count == length else {
                // Unreachable for a content key unless memory was damaged: never serve it.
                remove(i)
                return nil
            }
            unlink(i)
            linkNewest(i)
            return slots[i].bytes
        }
    }

    /// Whether chunk `id` is cached (does not count as a use).
    public func contains(_ id: ChunkID) -> Bool {
        lock.withLock { index[id] != nil }
    }

    /// Keeps the decoded bytes of chunk `id`. The caller has checked them against `id`.
    public func put(_ id: ChunkID, _ value: [UInt8]) {
        guard value.count <= capacity else { return }
        lock.withLock {
            if let i = index[id] {
                bytes -= slots[i].bytes.count
                slots[i].bytes = value
                unlink(i)
                linkNewest(i)
            } else {
                let slot = Slot(id: id, bytes: value, newer: -1, older: -1)
                let i: Int
                if let free = freeSlots.popLast() {
                    slots[free] = slot
                    i = free
                } else {
                    slots.append(slot)
                    i = slots.count - 1
                }
                index[id] = i
                linkNewest(i)
            }
            bytes += value.count
            // The newest entry fits alone (value.count <= capacity), so the loop stops before it.
            while bytes > capacity, oldest >= 0 { remove(oldest) }
        }
    }

    public var usedBytes: Int { lock.withLock { bytes } }

    /// Number of chunks held.
    public var count: Int { lock.withLock { index.count } }

    // MARK: the use list (called inside `lock`)

    private func unlink(_ i: Int) {
        let (newer, older) = (slots[i].newer, slots[i].older)
        if newer >= 0 { slots[newer].older = older } else { newest = older }
        if older >= 0 { slots[older].newer = newer } else { oldest = newer }
        slots[i].newer = -1
        slots[i].older = -1
    }

    private func linkNewest(_ i: Int) {
        slots[i].older = newest
        slots[i].newer = -1
        if newest >= 0 { slots[newest].newer = i }
        newest = i
        if oldest < 0 { oldest = i }
    }

    private func remove(_ i: Int) {
        unlink(i)
        bytes -= slots[i].bytes.count
        index[slots[i].id] = nil
        slots[i].bytes = []
        freeSlots.append(i)
    }
}
