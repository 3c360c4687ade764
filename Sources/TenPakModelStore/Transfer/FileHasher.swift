import Dispatch
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

    // Safe: `files` and `failure` are touched only on `queue`, or inside `queue.sync`.
    private var files: [String: FileHash]
    private var failure: Error?
    private let queue = DispatchQueue(label: "tenpak.import.file-hash")
    private let slots = DispatchSemaphore(value: 2)
    private let store: ModelStore
    private let cache: ChunkCache
    /// Every chunk some file needs: `receive` keeps the decoded bytes of these for `enqueue`.
    public let wanted: Set<ChunkID>

    init(store: ModelStore, files: [String: [ChunkID]], cache: ChunkCache? = nil) {
        self.store = store
        self.cache = cache ?? ChunkCache(capacity: 16 << 20)
        self.files = files.mapValues { FileHash(ids: $0) }
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
    public convenience init(store: ModelStore, revision: RevisionManifest) {
        var plans: [String: [ChunkID]] = [:]
        for file in revision.files { plans[file.path] = file.chunks.map(\.id) }
        self.init(store: store, files: plans)
    }

    public var isEmpty: Bool { wanted.isEmpty }

    /// Feeds one bundle's decoded and checked chunks (those of `wanted`), after that bundle's catalog
    /// transaction: chunks not in `fresh` are looked up in the store.
    public func enqueue(_ fresh: [ChunkID: [UInt8]]) {
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
            return files
        }
    }

    /// Advances every file over the chunks now available in order: decoded in this bundle (`fresh`)
    /// or in the store (staged before this bundle's feed was enqueued, or present).
    private func feed(_ fresh: [ChunkID: [UInt8]]) throws {
        for file in files.values {
            while file.next < file.ids.count {
                let id = file.ids[file.next]
                if let raw = fresh[id] {
                    file.sha.update(raw)
                } else if let at = try store.catalog.findChunks([id])[id] {
                    file.sha.update(try store.chunks.rawBytes(of: at, cache: cache))
                } else {
                    break
                }
                file.next += 1
            }
        }
    }
}
