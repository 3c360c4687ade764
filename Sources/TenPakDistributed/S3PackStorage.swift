import Foundation
import TenPakChunkStore
import TenPakFormat

/// Packs as objects in an S3-compatible bucket: `packs/<first two hex digits>/<name>.pack`, the
/// same layout as a local store's directory.
///
/// A pack is buffered in memory while it is written. A pack that stays under `partSize` is
/// uploaded with one PUT at `seal()`; a larger one goes up as a multipart upload, one part per
/// `partSize` bytes (each in the background while the next fills), completed at `seal()`. Either
/// way the object exists under its key only once `seal()` returns: a writer killed before leaves
/// nothing, or an incomplete multipart upload, which is invisible to listing and reads (a bucket
/// lifecycle rule aborts it eventually).
///
/// Reads are ranged GETs (`Range: bytes=a-b`); `packNames()` is ListObjectsV2 under `packs/`;
/// `size(pack:)` is a HEAD.
public final class S3PackStorage: PackStorage, Sendable {
    let client: S3Client
    /// Multipart part size (and the threshold above which a pack uses multipart upload).
    public let partSize: Int

    public static let prefix = "packs/"

    /// Connects to the bucket; with `create`, makes the bucket when it does not exist.
    public init(config: S3Config, create: Bool = false, partSize: Int = 64 << 20, orphanGracePeriod: Double = 15 * 60) throws {
        client = try S3Client(config: config)
        self.partSize = partSize
        self.orphanGracePeriod = orphanGracePeriod
        if create {
            try client.ensureBucket()
        } else if !(try client.bucketExists()) {
            throw StoreError.notAStore(path: "\(config.endpoint)/\(config.bucket)", reason: "no such bucket")
        }
    }

    /// S3 requests sent so far by this storage (for benchmarks).
    public var requestCount: Int { client.requestCount.count }

    public static func key(of pack: String) -> String {
        "\(prefix)\(pack.prefix(2))/\(pack).pack"
    }

    public func createPack() throws -> any PackWriting {
        S3PackWriter(storage: self)
    }

    public func read(pack: String, offset: Int, length: Int) throws -> [UInt8] {
        if length == 0 { return [] }
        let key = S3PackStorage.key(of: pack)
        let r = try client.getRange(key: key, offset: offset, length: length)
        if r.status == 404 {
            throw StoreError.corrupt("pack \(pack) is missing (expected at s3://\(client.config.bucket)/\(key))")
        }
        if r.status == 416 {
            throw StoreError.corrupt("pack \(pack) is shorter than \(offset + length) bytes")
        }
        try client.check(r, [206, 200], "GET \(key) bytes \(offset)-\(offset + length - 1)")
        let bytes = r.status == 200 ? Array(r.body.dropFirst(offset).prefix(length)) : r.body
        guard bytes.count == length else {
            throw StoreError.corrupt("pack \(pack): read \(bytes.count) bytes at \(offset), expected \(length) (pack truncated?)")
        }
        return bytes
    }

    public func packNames() throws -> [String] {
        try client.list(prefix: S3PackStorage.prefix).compactMap { key -> String? in
            guard key.hasSuffix(".pack") else { return nil }
            let file = key.split(separator: "/").last.map(String.init) ?? key
            return String(file.dropLast(5))
        }.sorted()
    }

    /// Packs no catalog row names are deleted by gc only once they are this old (seconds): the
    /// advisory lock already keeps gc away from live writers; the grace covers a writer whose lock
    /// session was cut (a network partition) while it kept uploading. Objects without a
    /// LastModified time are never deleted as orphans.
    public let orphanGracePeriod: Double

    public func orphanCandidates() throws -> [String] {
        let cutoff = Date().addingTimeInterval(-orphanGracePeriod)
        return try client.listWithDates(prefix: S3PackStorage.prefix).compactMap { entry -> String? in
            guard entry.key.hasSuffix(".pack"), let modified = entry.modified, modified <= cutoff else { return nil }
            let file = entry.key.split(separator: "/").last.map(String.init) ?? entry.key
            return String(file.dropLast(5))
        }.sorted()
    }

    public func size(pack: String) throws -> Int {
        let key = S3PackStorage.key(of: pack)
        guard let size = try client.head(key: key) else {
            throw StoreError.corrupt("pack \(pack) is missing (expected at s3://\(client.config.bucket)/\(key))")
        }
        return size
    }

    public func delete(pack: String) throws {
        try client.delete(key: S3PackStorage.key(of: pack))
    }

    public var readsAreRemote: Bool { true }
}

/// Writes one pack object: buffered, single PUT or multipart upload, visible only after `seal()`.
///
/// A full part goes up on a thread of its own while appends fill the next one, so the caller's
/// coding overlaps the upload (SPEC 17, "Pack uploads"). One part at most is in flight: the next
/// full part waits for it, which keeps part numbers in order and bounds memory to the part in
/// flight plus the buffer (under a part, plus the last append). A failed upload breaks the writer:
/// the append that completes the next part, or the seal, throws its error; so does every call after.
final class S3PackWriter: PackWriting {
    let name: String
    private let storage: S3PackStorage
    private let key: String
    private var buffer: [UInt8] = []
    private var uploaded = 0
    private var uploadID: String?
    private var etags: [String] = []
    /// The part being uploaded (its ETag when done), on a thread of its own.
    private var inFlight: Background<String>?
    private var broken: Error?
    private var finished = false

    init(storage: S3PackStorage) {
        self.storage = storage
        name = FileSystem.randomHex(bytes: 16)
        key = S3PackStorage.key(of: name)
        buffer.append(contentsOf: PackHeader.encoded())
    }

    deinit {
        if !finished { abandon() }
    }

    var size: Int { uploaded + buffer.count }

    func append(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        if let broken { throw broken }
        let offset = size
        buffer.append(contentsOf: bytes)
        if buffer.count >= storage.partSize { try startParts() }
        return offset
    }

    /// Sends every whole part in the buffer, the last of them in the background.
    private func startParts() throws {
        do {
            while buffer.count >= storage.partSize {
                try collectInFlight()
                let uploadID = try self.uploadID ?? storage.client.createMultipart(key: key)
                self.uploadID = uploadID
                // The part leaves with the buffer's storage (no copy of the part); what lies past
                // it, at most one append's bytes, starts the next buffer.
                var part = buffer
                buffer = Array(part[storage.partSize...])
                part.removeLast(part.count - storage.partSize)
                uploaded += part.count
                let (client, key, number, body) = (storage.client, key, etags.count + 1, part)
                inFlight = Background { try client.uploadPart(key: key, uploadID: uploadID, number: number, body: body) }
            }
        } catch {
            broken = error
            throw error
        }
    }

    /// Waits for the part in flight, if any, and records its ETag.
    private func collectInFlight() throws {
        guard let part = inFlight else { return }
        inFlight = nil
        etags.append(try part.value())
    }

    func seal() throws {
        if let broken { throw broken }
        do {
            if let uploadID {
                try collectInFlight()
                if !buffer.isEmpty {
                    etags.append(try storage.client.uploadPart(key: key, uploadID: uploadID, number: etags.count + 1, body: buffer))
                    uploaded += buffer.count
                    buffer = []
                }
                // ORDER: every part uploaded → complete (the commit point: the object appears).
                try storage.client.completeMultipart(key: key, uploadID: uploadID, etags: etags)
            } else {
                // ORDER: the whole object in one PUT: it exists completely or not at all.
                try storage.client.put(key: key, body: buffer)
                uploaded += buffer.count
                buffer = []
            }
            finished = true
        } catch {
            broken = error
            throw error
        }
    }

    func abandon() {
        finished = true
        buffer = []
        // The abort must follow the part in flight, or that part could land after it.
        _ = try? collectInFlight()
        if let uploadID { storage.client.abortMultipart(key: key, uploadID: uploadID) }
    }
}
