import Dispatch
import Foundation
import TenPakChunkStore
import TenPakFormat

/// Hashes the files of a revision being received as their chunks arrive (SPEC §19.4), so that the
/// commit need not decode again what `ChunkImporter.receive` decoded and checked. A pull knows the
/// files from the transfer manifest (`init(store:manifest:)`); a push's server learns them from the
/// revision's own manifest frame, which the client sends first (`init(store:revision:)`), and keeps
/// the hasher between the bundles of that push (`TransferService`).
///
/// Only a plan: the commit uses a file's hash only if the revision's manifest frame lists the same
/// path with the same chunks, and only checked bytes are ever hashed (decoded and checked against
/// their id by `receive`, or read back through the store's checks).
///
/// Work runs on a serial queue of its own, one bundle after another in the order fed: a file's
/// SHA-256 is one stream that cannot be split, so it runs while the next bundle is fetched and
/// decoded on both cores, instead of after it. At most two fed bundles wait, which bounds the
/// decoded bytes held for it (`enqueue` blocks the feeder meanwhile).
public final class FileHasher: @unchecked Sendable {
    /// A file's SHA-256 over its first `next` chunks, fed in file order with checked bytes.
    public final class FileHash {
        public let ids: [ChunkID]
        public internal(set) var next = 0
        public internal(set) var sha = StreamingSHA256()
        init(ids: [ChunkID]) { self.ids = ids }
    }

    /// Why a hasher stopped before its commit: the commit then hashes every file from its start.
    public enum Stopped: Error, Sendable {
        /// `cancel()` was called (an abandoned push).
        case cancelled
        /// The files would take more than `maxBytes` of hashing.
        case overBudget(maxBytes: Int)
    }

    // Safe: `files`, `failure`, `hashedBytes` and `located` are touched only on `queue`, or inside
    // `queue.sync`; `cancelled` only inside `flag`.
    private var files: [String: FileHash]
    private var failure: Error?
    private var hashedBytes = 0
    /// Where the chunks the files need that were in the store at the first feed (or found since) are.
    private var located: [ChunkID: ChunkLocation]?
    /// Chunks an earlier feed brought that are not in `located` yet (now in the store: a file that
    /// reuses one after stalling finds it there).
    private var arrived = Set<ChunkID>()
    private let flag = NSLock()
    private var cancelled = false
    private var progressed = ContinuousClock.now
    private let queue = DispatchQueue(label: "tenpak.import.file-hash")
    private let slots = DispatchSemaphore(value: 2)
    private let store: ModelStore
    private let cache: ChunkCache
    private let maxBytes: Int
    /// Every chunk some file needs: `receive` keeps the decoded bytes of these for `enqueue`.
    public let wanted: Set<ChunkID>

    /// `maxBytes` bounds the bytes hashed in all (a client's manifest may list one chunk a million
    /// times): past it the hasher stops, and the commit hashes every file itself.
    init(store: ModelStore, files: [String: [ChunkID]], cache: ChunkCache? = nil, maxBytes: Int = .max) {
        self.store = store
        self.cache = cache ?? ChunkCache(capacity: 16 << 20)
        self.files = files.mapValues { FileHash(ids: $0) }
        self.maxBytes = maxBytes
        wanted = Set(files.values.joined())
    }

    /// The files of a transfer manifest (pull, copy); a file whose indices are out of range (a
    /// manifest `decode` did not check) is not planned, and is hashed by the commit.
    public convenience init(store: ModelStore, manifest: TransferManifest, cache: ChunkCache? = nil) {
        let ids = manifest.chunkIDs
        var plans: [String: [ChunkID]] = [:]
        if ids.count == manifest.chunks.count {
            for file in manifest.files where file.chunks.allSatisfy({ ids.indices.contains($0) }) {
                plans[file.path] = file.chunks.map { ids[$0] }
            }
        }
        self.init(store: store, files: plans, cache: cache)
    }

    /// The files of a revision manifest decoded from a checked manifest frame (a push's server).
    public convenience init(store: ModelStore, revision: RevisionManifest, maxBytes: Int = .max) {
        var plans: [String: [ChunkID]] = [:]
        for file in revision.files { plans[file.path] = file.chunks.map(\.id) }
        self.init(store: store, files: plans, maxBytes: maxBytes)
    }

    public var isEmpty: Bool { wanted.isEmpty }

    /// Stops the hasher: bundles fed later are not hashed, one being hashed stops at its next
    /// chunk, and `drain` throws `Stopped.cancelled`.
    public func cancel() { flag.withLock { cancelled = true } }

    private var isCancelled: Bool { flag.withLock { cancelled } }

    /// When a feed last advanced some file (or the hasher was made): a push's hasher that has not
    /// moved for long is an abandoned one (`PushHashers`).
    public var lastProgress: ContinuousClock.Instant { flag.withLock { progressed } }

    /// Feeds one bundle's decoded and checked chunks (those of `wanted`), after that bundle's catalog
    /// transaction: chunks not in `fresh` are looked up in the store.
    public func enqueue(_ fresh: [ChunkID: [UInt8]]) {
        guard !isCancelled else { return }
        slots.wait()
        queue.async { [self] in
            defer { slots.signal() }
            guard failure == nil else { return }
            do { try feed(fresh) } catch { failure = error }
        }
    }

    /// Waits for every bundle fed so far; the files' hashes, or the first error (a read of the
    /// store that failed: the commit then hashes every file from its start).
    public func drain() throws -> [String: FileHash] {
        try queue.sync {
            if let failure { throw failure }
            if isCancelled { throw Stopped.cancelled }
            return files
        }
    }

    /// Advances every file over the chunks now available in order: decoded in this bundle (`fresh`)
    /// or in the store. The store is asked once, at the first feed, for every chunk the files need
    /// (the shared chunks a push's client never sends). A file stalled on a chunk an earlier feed
    /// brought has all such chunks of its rest looked up at once; one stalled on a chunk never seen
    /// (staged by another push meanwhile, say) has it asked for once per feed. So a feed costs a
    /// few catalog queries, not one per file or chunk, and each chunk is looked up at most once
    /// from `arrived`.
    private func feed(_ fresh: [ChunkID: [UInt8]]) throws {
        if located == nil { located = try store.catalog.findChunks(Array(wanted.filter { fresh[$0] == nil })) }
        var askedUnseen = false
        var advanced = false
        while true {
            var lookups = Set<ChunkID>()
            for file in files.values {
                while file.next < file.ids.count {
                    guard !isCancelled else { throw Stopped.cancelled }
                    let id = file.ids[file.next]
                    let raw: [UInt8]
                    if let fresh = fresh[id] {
                        raw = fresh
                    } else if let at = located?[id] {
                        raw = try store.chunks.rawBytes(of: at, cache: cache)
                    } else {
                        break
                    }
                    hashedBytes += raw.count
                    guard hashedBytes <= maxBytes else { throw Stopped.overBudget(maxBytes: maxBytes) }
                    file.sha.update(raw)
                    file.next += 1
                    advanced = true
                }
                guard file.next < file.ids.count else { continue }
                let head = file.ids[file.next]
                if arrived.contains(head) {
                    for id in file.ids[file.next...] where arrived.contains(id) { lookups.insert(id) }
                } else if !askedUnseen {
                    lookups.insert(head)
                }
            }
            askedUnseen = true
            guard !lookups.isEmpty else { break }
            arrived.subtract(lookups)
            let found = try store.catalog.findChunks(Array(lookups))
            guard !found.isEmpty else { break }
            located?.merge(found) { a, _ in a }
        }
        for id in fresh.keys where located?[id] == nil { arrived.insert(id) }
        if advanced { flag.withLock { progressed = .now } }
    }
}
