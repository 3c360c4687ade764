/// A revision's manifest: the model name, revision id, its base, and every file as a list of chunks.
///
/// Written as a `.manifest` frame into the pack of the put that creates the revision, so that a lost
/// catalog can be rebuilt from packs alone. Binary, little-endian:
///
///     "TPMF"  magic
///     u16     version (1)
///     str     model name            (str = u16 byte length + UTF-8)
///     str     revision id
///     i64     created at, Unix seconds
///     str     base model ("" = none)
///     str     base revision ("" = none)
///     str     why this base was chosen (free text)
///     u32     file count, then per file:
///         str     path inside the revision ('/'-separated)
///         u64     size in bytes
///         [32]    SHA-256 of the file
///         u8      kind (0 opaque, 1 safetensors)
///         u32     chunk count, then per chunk:
///             u32     raw length
///             [48]    chunk id (XXH3-128 then SHA-256 of the chunk's raw bytes)
///
/// Chunks appear in file order; a chunk's file offset is the sum of the raw lengths before it.
public struct RevisionManifest: Hashable, Sendable {
    public static let magic: [UInt8] = Array("TPMF".utf8)
    public static let version: UInt16 = 1

    public var model: String
    public var revision: String
    public var createdAt: Int64
    public var baseModel: String
    public var baseRevision: String
    public var baseReason: String
    public var files: [File]

    public struct File: Hashable, Sendable {
        public var path: String
        public var size: UInt64
        public var sha256: Digest256
        public var kind: FileKind
        public var chunks: [ChunkRef]

        public init(path: String, size: UInt64, sha256: Digest256, kind: FileKind, chunks: [ChunkRef]) {
            self.path = path
            self.size = size
            self.sha256 = sha256
            self.kind = kind
            self.chunks = chunks
        }
    }

    public struct ChunkRef: Hashable, Sendable {
        public var rawLength: UInt32
        public var id: ChunkID
        public init(rawLength: UInt32, id: ChunkID) {
            self.rawLength = rawLength
            self.id = id
        }
    }

    public init(model: String, revision: String, createdAt: Int64, baseModel: String = "", baseRevision: String = "",
                baseReason: String = "", files: [File]) {
        self.model = model
        self.revision = revision
        self.createdAt = createdAt
        self.baseModel = baseModel
        self.baseRevision = baseRevision
        self.baseReason = baseReason
        self.files = files
    }

    /// The size `encoded()` gives for a manifest with these names and files, computed without
    /// building it: a put checks it against the frame limit before it reads any data.
    public static func encodedSize(model: String, revision: String, baseModel: String, baseRevision: String, baseReason: String,
                                   files: [(path: String, chunks: Int)]) -> Int {
        func string(_ s: String) -> Int { 2 + s.utf8.count }
        let head = magic.count + 2 + string(model) + string(revision) + 8 + string(baseModel) + string(baseRevision) + string(baseReason) + 4
        // Per file: path, size, SHA-256, kind, chunk count; per chunk: raw length and id.
        return files.reduce(head) { $0 + string($1.path) + 8 + 32 + 1 + 4 + $1.chunks * (4 + 48) }
    }

    public func encoded() throws -> [UInt8] {
        var w = ByteWriter(capacity: 64 + files.reduce(0) { $0 + 64 + $1.chunks.count * 52 })
        w.append(bytes: RevisionManifest.magic)
        w.append(RevisionManifest.version)
        try w.appendString(model)
        try w.appendString(revision)
        w.append(createdAt)
        try w.appendString(baseModel)
        try w.appendString(baseRevision)
        try w.appendString(baseReason)
        w.append(UInt32(files.count))
        for file in files {
            try w.appendString(file.path)
            w.append(file.size)
            w.append(bytes: file.sha256.bytes)
            w.append(file.kind.rawValue)
            w.append(UInt32(file.chunks.count))
            for chunk in file.chunks {
                w.append(chunk.rawLength)
                chunk.id.write(to: &w)
            }
        }
        return w.bytes
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RevisionManifest {
        var r = ByteReader(bytes, what: "revision manifest")
        guard try r.readBytes(4).elementsEqual(magic) else { throw FormatError.invalid("not a revision manifest (bad magic)") }
        let version = try r.read(UInt16.self)
        guard version == RevisionManifest.version else {
            throw FormatError.unsupportedVersion(what: "revision manifest", version: Int(version), supported: Int(RevisionManifest.version))
        }
        let model = try r.readString()
        let revision = try r.readString()
        let createdAt = try r.read(Int64.self)
        let baseModel = try r.readString()
        let baseRevision = try r.readString()
        let baseReason = try r.readString()
        let fileCount = Int(try r.read(UInt32.self))
        var files: [File] = []
        // Cap reservations taken from declared counts by what the remaining bytes could hold.
        files.reserveCapacity(min(fileCount, r.remaining / 47))
        for _ in 0 ..< fileCount {
            let path = try r.readString()
            let size = try r.read(UInt64.self)
            guard let sha = Digest256(bytes: try r.readBytes(32)) else { throw FormatError.invalid("manifest: bad digest") }
            let kindRaw = try r.read(UInt8.self)
            guard let kind = FileKind(rawValue: kindRaw) else { throw FormatError.invalid("manifest: unknown file kind \(kindRaw)") }
            let chunkCount = Int(try r.read(UInt32.self))
            var chunks: [ChunkRef] = []
            chunks.reserveCapacity(min(chunkCount, r.remaining / 52))
            var total: UInt64 = 0
            for _ in 0 ..< chunkCount {
                let length = try r.read(UInt32.self)
                chunks.append(ChunkRef(rawLength: length, id: try ChunkID.read(from: &r)))
                total += UInt64(length)
            }
            guard total == size else {
                throw FormatError.invalid("manifest: file \(path) declares \(size) bytes but its chunks hold \(total)")
            }
            files.append(File(path: path, size: size, sha256: sha, kind: kind, chunks: chunks))
        }
        guard r.isAtEnd else { throw FormatError.invalid("revision manifest has \(r.remaining) trailing bytes") }
        return RevisionManifest(model: model, revision: revision, createdAt: createdAt, baseModel: baseModel,
                                baseRevision: baseRevision, baseReason: baseReason, files: files)
    }
}

/// How a file was chunked.
public enum FileKind: UInt8, Sendable {
    /// Content-defined chunks (gear hash); also malformed safetensors files.
    case opaque = 0
    /// Header chunks, then each tensor's data in element-aligned chunks counted from the tensor's start.
    case safetensors = 1
}

/// The record that a revision was removed, written before the catalog forgets it so that a rebuild
/// of the catalog from packs does not bring it back.
///
///     "TPTS"  magic
///     u16     version (1)
///     str     model name
///     str     revision id
///     [48]    chunk id of the removed revision's manifest frame
///     i64     removed at, Unix seconds
public struct RevisionTombstone: Hashable, Sendable {
    public static let magic: [UInt8] = Array("TPTS".utf8)
    public var model: String
    public var revision: String
    public var manifest: ChunkID
    public var removedAt: Int64

    public init(model: String, revision: String, manifest: ChunkID, removedAt: Int64) {
        self.model = model
        self.revision = revision
        self.manifest = manifest
        self.removedAt = removedAt
    }

    public func encoded() throws -> [UInt8] {
        var w = ByteWriter()
        w.append(bytes: RevisionTombstone.magic)
        w.append(UInt16(1))
        try w.appendString(model)
        try w.appendString(revision)
        manifest.write(to: &w)
        w.append(removedAt)
        return w.bytes
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> RevisionTombstone {
        var r = ByteReader(bytes, what: "revision tombstone")
        guard try r.readBytes(4).elementsEqual(magic) else { throw FormatError.invalid("not a revision tombstone (bad magic)") }
        let version = try r.read(UInt16.self)
        guard version == 1 else { throw FormatError.unsupportedVersion(what: "revision tombstone", version: Int(version), supported: 1) }
        let model = try r.readString()
        let revision = try r.readString()
        let manifest = try ChunkID.read(from: &r)
        let removedAt = try r.read(Int64.self)
        return RevisionTombstone(model: model, revision: revision, manifest: manifest, removedAt: removedAt)
    }
}
