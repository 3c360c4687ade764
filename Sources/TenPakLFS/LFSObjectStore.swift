import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// LFS objects kept as TenPak revisions, so they go through the normal put path: a safetensors
/// object is cut along its tensors and delta-coded against a base found among everything stored.
///
/// Mapping (SPEC.md §15): object `oid` is model `lfs/<oid>`, one file `object`, revision `o` in
/// a store of the local agent, or `repositoryRevision(repo)` when the object belongs to a hub
/// repository (the server's LFS endpoint, §14.1, and the remote agent's cache, which must name the
/// revision as the server does to push it there). One model per object because the agent never
/// learns an object's path in the repository; the automatic base match works across models, so a
/// fine-tune's weights still find their base.
public struct LFSObjectStore: Sendable {
    public static let modelPrefix = "lfs/"
    /// The revision of every object in a store of the local agent.
    public static let localRevision = "o"
    public static let fileName = "object"

    public let models: ModelStore
    /// The revision objects are stored under (one per object model).
    public let revision: String

    public init(models: ModelStore, revision: String = LFSObjectStore.localRevision) {
        self.models = models
        self.revision = revision
    }

    public static func model(for oid: LFSObjectID) -> String { modelPrefix + oid.hex }

    /// The revision that holds a hub repository's copy of an object: `r` + the first 40 hex digits
    /// of SHA-256(`tenpak-lfs-repo` NUL repo). One per repository that uploaded the object, so an
    /// object is only served through a repository that holds it.
    public static func repositoryRevision(_ repo: String) -> String {
        "r" + Hashing.sha256(Array("tenpak-lfs-repo\u{0}\(repo)".utf8)).hex.prefix(40)
    }

    /// What an upload did.
    public enum UploadOutcome: Equatable, Sendable {
        /// Stored now; `storedBytes` of new frames for `size` bytes of object.
        case stored(storedBytes: Int, deltaChunks: Int, base: String?)
        /// The store already had it: nothing written.
        case alreadyStored
    }

    /// The stored file of an object, nil if the store does not have it.
    public func storedObject(_ oid: LFSObjectID) throws -> FileRecord? {
        let record: RevisionRecord
        do {
            record = try models.catalog.resolve(model: LFSObjectStore.model(for: oid), revision: revision)
        } catch StoreError.notFound {
            return nil
        }
        let files = try models.catalog.files(revision: record)
        guard files.count == 1, let file = files.first, file.path == LFSObjectStore.fileName, file.sha256 == oid.digest else {
            throw LFSProtocolError(.storeFailure, "store entry \(LFSObjectStore.model(for: oid))@\(revision) is not the object \(oid) (wrong files or SHA-256): a tpstore bug or a hand-made revision; remove it with `tpstore rm`")
        }
        return file
    }

    /// Stores the file at `path` as object `oid`. The content's SHA-256 is checked against the oid
    /// before the put's commit point (the put hashes as it reads), so a mismatched object is never
    /// visible. `progress` gets bytes read so far.
    public func upload(oid: LFSObjectID, size: Int, path: String, progress: @escaping @Sendable (Int) -> Void) throws -> UploadOutcome {
        if try storedObject(oid) != nil { return .alreadyStored }
        guard FileSystem.isRegularFile(path) else {
            throw LFSProtocolError(.malformedRequest, "upload \(oid): \(path) is not a regular file", oid: oid.hex)
        }
        let actual = try OpenFile(path: path, mode: .read).size()
        guard actual == size else {
            throw LFSProtocolError(.contentMismatch, "upload \(oid): \(path) has \(actual) bytes, the request says \(size)", oid: oid.hex)
        }
        let report: PutReport
        do {
            report = try models.put(model: LFSObjectStore.model(for: oid), revision: revision,
                                    inputs: [PutInput(source: path, path: LFSObjectStore.fileName, expectedSHA256: oid.digest)],
                                    base: .automatic, progress: { progress($0.done) })
        } catch {
            // Another agent (a concurrent push) may have stored the same object meanwhile.
            if (try? storedObject(oid)) != nil { return .alreadyStored }
            if case StoreError.invalidRequest = error {
                throw LFSProtocolError(.contentMismatch, "upload \(oid): \(error)", oid: oid.hex)
            }
            throw LFSProtocolError(.storeFailure, "upload \(oid): \(error)", oid: oid.hex)
        }
        // Belt and braces: the catalog must now hold exactly this content under this oid.
        guard let file = try storedObject(oid), file.size == size else {
            try? models.remove(model: LFSObjectStore.model(for: oid), revision: revision)
            throw LFSProtocolError(.storeFailure, "upload \(oid): the catalog does not show the object just stored (a tpstore bug); removed it", oid: oid.hex)
        }
        return .stored(storedBytes: report.storedBytes, deltaChunks: report.files.reduce(0) { $0 + $1.deltaChunks },
                       base: report.base.map { "\($0.revision.model)@\($0.revision.revision)" })
    }

    /// Rebuilds object `oid` into a new file in `directory` and returns its path. The bytes are
    /// checked against the stored SHA-256 (= the oid) before the file gets its final name; a damaged
    /// store makes this throw, never return wrong bytes. `progress` gets bytes written so far.
    public func download(oid: LFSObjectID, size: Int?, into directory: String, progress: @escaping @Sendable (Int) -> Void) throws -> String {
        let lock = try models.chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        guard let file = try storedObject(oid) else {
            throw LFSProtocolError(.notFound, "object \(oid) is not in the TenPak store at \(models.chunks.root); push it first (with the tpstore agent configured)", oid: oid.hex)
        }
        return try LFSObjectStore.export(file, of: models, oid: oid, size: size, into: directory, progress: progress)
    }

    /// Rebuilds `file` (of `models`; the caller holds the store lock shared) as object `oid` into a
    /// new file in `directory`: the local agent's objects, and the remote agent's from its cache.
    /// `ModelStore.export` renames the file into place only once its length and SHA-256 (= the oid)
    /// match, so wrong bytes are never returned.
    public static func export(_ file: FileRecord, of models: ModelStore, oid: LFSObjectID, size: Int?, into directory: String,
                              progress: @escaping @Sendable (Int) -> Void) throws -> String {
        guard file.sha256 == oid.digest else {
            throw LFSProtocolError(.storeFailure, "download \(oid): \(Names.printable(file.path)) has SHA-256 \(file.sha256.hex), not the oid (a tpstore bug)", oid: oid.hex)
        }
        if let size, size != file.size {
            throw LFSProtocolError(.contentMismatch, "download \(oid): the request says \(size) bytes, the stored object has \(file.size)", oid: oid.hex)
        }
        try FileSystem.makeDirectories(directory)
        let target = directory + "/tpstore-" + oid.hex + "-" + FileSystem.randomHex(bytes: 4)
        let counter = ByteCounter()
        do {
            try models.export(file, to: target) { bytes in progress(counter.add(bytes)) }
        } catch {
            throw LFSProtocolError(.storeFailure, "download \(oid): \(error)", oid: oid.hex)
        }
        return target
    }
}

/// Where an agent session's objects live: a store beside it (`LFSObjectStore`), or a server
/// reached through a local cache store (the remote mode, composed outside this target so that it
/// links no HTTP client). Errors are `LFSProtocolError`s (the agent answers them as they are) or
/// anything else (answered as a store failure, 500).
public protocol LFSObjectBackend {
    /// Stores the file at `path` as object `oid` (`size` bytes); `progress` gets bytes done so far.
    func upload(oid: LFSObjectID, size: Int, path: String, progress: @escaping @Sendable (Int) -> Void) throws -> LFSObjectStore.UploadOutcome
    /// Writes object `oid` to a new file in `directory` and returns its path, verified against the oid.
    func download(oid: LFSObjectID, size: Int?, into directory: String, progress: @escaping @Sendable (Int) -> Void) throws -> String
}

extension LFSObjectStore: LFSObjectBackend {}

/// A running byte total shared with a progress callback.
final class ByteCounter: @unchecked Sendable {
    // Safe: every access holds `lock`.
    private let lock = NSLock()
    private var total = 0

    func add(_ n: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        total += n
        return total
    }
}
