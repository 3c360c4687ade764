/// A bounded cache of decoded chunks, keyed by catalog row id. Safe to share between threads.
///
/// Eviction is least-recently-used by a use counter; entries are whole chunks (≤ 1 MiB for tensor
/// chunks), so the scan on eviction is over a few hundred entries at most.
public final class ChunkCache: @unchecked Sendable {
    // Safe: all state is touched inside `lock`.
    private let lock = NSLockShim()
    private var entries: [Int64: (bytes: [UInt8], lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var bytes = 0
    public let capacity: Int

    /// `capacity` in bytes of decoded chunks.
    public init(capacity: Int) {
        self.capacity = capacity
    }

    public func get(_ key: Int64) -> [UInt8]? {
        lock.withLock {
            guard var entry = entries[key] else { return nil }
            clock += 1
            entry.lastUse = clock
            entries[key] = entry
            return entry.bytes
        }
    }

    public func put(_ key: Int64, _ value: [UInt8]) {
        guard value.count <= capacity else { return }
        lock.withLock {
            clock += 1
            if let old = entries[key] { bytes -= old.bytes.count }
            entries[key] = (value, clock)
            bytes += value.count
            while bytes > capacity, let victim = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                bytes -= victim.value.bytes.count
                entries[victim.key] = nil
            }
        }
    }

    public var usedBytes: Int { lock.withLock { bytes } }
}
