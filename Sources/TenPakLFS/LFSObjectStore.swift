import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// LFS objects kept as TenPak revisions, so they go through the normal put path: a safetensors
/// object is cut along its tensors and delta-coded against a base found among everything stored.
///
/// Mapping (SPEC.md §15): object `oid` is model `lfs/<oid>`, revision `o`, one file `object`.
/// One model per object because the agent never learns an object's path in the repository; the
/// automatic base match works across models, so a fine-tune's weights still find their base.
public struct LFSObjectStore: Sendable {
    public static let modelPrefix = "lfs/"
    public static let revision = "o"
    public static let fileName = "object"

    public let models: ModelStore

    public init(models: ModelStore) {
        self.models = models
    }

    public static func model(for oid: LFSObjectID) -> String { modelPrefix + oid.hex }

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
            record = try models.catalog.resolve(model: LFSObjectStore.model(for: oid), revision: LFSObjectStore.revision)
        } catch StoreError.notFound {
            return nil
        }
        let files = try models.catalog.files(revision: record)
        guard files.count == 1, let file = files.first, file.path == LFSObjectStore.fileName, file.sha256 == oid.digest else {
            throw LFSProtocolError(.storeFailure, "store entry \(LFSObjectStore.model(for: oid))@\(LFSObjectStore.revision) is not the object \(oid) (wrong files or SHA-256): a tpstore bug or a hand-made revision; remove it with `tpstore rm`")
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
            report = try models.put(model: LFSObjectStore.model(for: oid), revision: LFSObjectStore.revision,
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
            try? models.remove(model: LFSObjectStore.model(for: oid), revision: LFSObjectStore.revision)
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
