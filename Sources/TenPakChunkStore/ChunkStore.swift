import TenPakCodecs
import TenPakFormat

/// Chunks by identity: where they are, how to read one back, and the store's directory layout.
///
/// A store directory holds:
///
///     TENPAK              marker file: "tenpak store 1"
///     catalog.db          SQLite catalog (WAL mode; -wal and -shm beside it)
///     packs/xx/NAME.pack  sealed packs, fanned out by the first two hex digits of NAME
///     tmp/                packs being written (NAME.pack.partial); removed on seal or by gc
///     lock                advisory lock file: shared by put/get/rm, exclusive for gc
public final class ChunkStore: Sendable {
    public let packs: any PackStorage
    public let catalog: any Catalog
    /// The store directory (local), or the config file a distributed store was opened from.
    public let root: String
    /// The gc/put exclusion this store's backend provides.
    public let locking: any StoreLocking

    /// Most delta steps between a stored chunk and one stored without a base. Rebuilding a chunk
    /// takes at most `maxDeltaDepth + 1` decodes: the base-less chunk, then each delta on top.
    public static let maxDeltaDepth = 2

    static let markerName = "TENPAK"
    static let markerText = "tenpak store 1\n"

    public init(packs: any PackStorage, catalog: any Catalog, root: String, locking: (any StoreLocking)? = nil) {
        self.packs = packs
        self.catalog = catalog
        self.root = root
        self.locking = locking ?? LocalStoreLocking(root: root)
    }

    /// Takes the store lock (shared for put/get/rm, exclusive for gc); held until the token is released.
    ///
    /// With the lock held no repair runs, so this is where a long-lived process notices a catalog
    /// that `fsck --repair` swapped in since its last operation, and reconnects to it.
    public func lock(_ mode: StoreLock.Mode, timeout: Double = 60) throws -> AnyObject {
        let token = try locking.acquire(mode, timeout: timeout)
        try reconnectIfCatalogReplaced()
        return token
    }

    /// Reconnects to a catalog that `fsck --repair` swapped in under this process, and then closes
    /// the pack handles opened for the old one. Called by `lock` and by lock-free readers.
    public func reconnectIfCatalogReplaced() throws {
        if try catalog.reopenIfReplaced() { packs.forgetOpenHandles() }
    }

    /// What a reader's resolved chunk locations are valid for: they stay right while this value
    /// is unchanged. gc (which moves frames and deletes packs) and repair (which renumbers rows)
    /// both start a new gc generation. Read with the store lock held.
    public func locationGeneration() throws -> Int64 {
        try catalog.gcGeneration()
    }

    /// Opens the local store at `directory`; with `create`, makes it first if it does not exist.
    public static func openLocal(directory: String, create: Bool = false) throws -> ChunkStore {
        let marker = directory + "/" + markerName
        if !FileSystem.exists(marker) {
            guard create else {
                let reason = FileSystem.isDirectory(directory) ? "no \(markerName) marker" : "no such directory"
                throw StoreError.notAStore(path: directory, reason: reason)
            }
            if FileSystem.isDirectory(directory), !(try FileSystem.list(directory)).isEmpty {
                throw StoreError.invalidRequest("\(directory) exists and is not empty; refusing to make a store inside it")
            }
            try FileSystem.makeDirectories(directory + "/packs")
            try FileSystem.makeDirectories(directory + "/tmp")
            _ = try SQLCatalog.sqlite(path: directory + "/catalog.db", create: true)
            // ORDER: the marker is written last, so a half-made store is not mistaken for one.
            let file = try OpenFile(path: marker + ".tmp", mode: .readWrite)
            try Array(markerText.utf8).withUnsafeBytes { try file.write($0, at: 0) }
            try file.sync()
            try FileSystem.rename(marker + ".tmp", to: marker)
            try FileSystem.syncDirectory(directory)
        }
        let catalog = try SQLCatalog.sqlite(path: directory + "/catalog.db", create: false)
        return ChunkStore(packs: LocalPackDirectory(root: directory), catalog: catalog, root: directory)
    }

    /// Reads and checks one frame: header checksum, identity against the catalog, payload checksum.
    public func readFrame(_ location: ChunkLocation) throws -> (header: FrameHeader, payload: [UInt8]) {
        try checkFrame(try packs.read(pack: location.pack, offset: location.frameOffset, length: location.frameLength), location)
    }

    /// Checks one frame's bytes, read by the caller from the chunk's place in its pack.
    public func checkFrame(_ bytes: [UInt8], _ location: ChunkLocation) throws -> (header: FrameHeader, payload: [UInt8]) {
        try bytes.withUnsafeBytes { raw in
            let (header, payload) = try checkFrame(raw, location)
            return (header, Array(payload))
        }
    }

    /// The checks of `checkFrame` on a frame that stays where it is (a slice of a span `FrameBatch`
    /// read, say): its header, and no copy of its payload.
    public func verifyFrame(_ bytes: ArraySlice<UInt8>, _ location: ChunkLocation) throws -> FrameHeader {
        try bytes.withUnsafeBytes { try checkFrame($0, location).header }
    }

    /// The same checks on borrowed bytes; the payload returned is a slice of `bytes`.
    func checkFrame(_ raw: UnsafeRawBufferPointer, _ location: ChunkLocation) throws -> (header: FrameHeader, payload: UnsafeRawBufferPointer) {
        guard raw.count == location.frameLength else {
            throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, expected: "\(location.frameLength) bytes", actual: "\(raw.count) bytes",
                                            "chunk \(location.id.short): pack \(location.pack) gave \(raw.count) bytes at \(location.frameOffset), expected \(location.frameLength)"))
        }
        let place = "pack \(location.pack) offset \(location.frameOffset)"
        do {
            let header = try FrameHeader.decode(raw, where: place)
            guard header.id == location.id else {
                throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, expected: location.id.description, actual: header.id.description,
                                                "\(place) holds chunk \(header.id.short), but the catalog expects \(location.id.short) there"))
            }
            guard header.size + header.payloadLength == location.frameLength else {
                throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, expected: "\(location.frameLength) bytes", actual: "\(header.size + header.payloadLength) bytes",
                                                "\(place): frame length \(header.size + header.payloadLength) differs from the catalog's \(location.frameLength)"))
            }
            let payload = UnsafeRawBufferPointer(rebasing: raw[header.size...])
            try header.verifyPayload(payload, where: place)
            return (header, payload)
        } catch let error as FormatError {
            throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, "chunk \(location.id.short): \(error)"))
        }
    }

    /// The raw bytes of a chunk, decoded through its delta chain and checked against its address.
    ///
    /// `prefetched` may hold the chunk's and its bases' frames (read together by `FrameBatch`) and
    /// the locations of its bases; what it lacks is read and looked up here.
    public func rawBytes(of location: ChunkLocation, cache: ChunkCache? = nil, prefetched: PrefetchedFrames? = nil) throws -> [UInt8] {
        if let cached = cache?.get(location.id, length: location.rawLength) { return cached }
        let raw = try [UInt8](unsafeUninitializedCapacity: location.rawLength) { buffer, initialized in
            // `decode` writes every byte or throws.
            try decode(location, cache: cache, prefetched: prefetched, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = location.rawLength
        }
        cache?.put(location.id, raw)
        return raw
    }

    /// Decodes a chunk into `output` (exactly `location.rawLength` bytes), with the checks of
    /// `rawBytes`; its bases go through `rawBytes` (and `cache`). Writes every byte or throws.
    public func decode(_ location: ChunkLocation, cache: ChunkCache? = nil, prefetched: PrefetchedFrames? = nil,
                       into output: UnsafeMutableRawBufferPointer) throws {
        let frame = try prefetched?.frames[location.rowID]
            ?? packs.read(pack: location.pack, offset: location.frameOffset, length: location.frameLength)[...]
        try frame.withUnsafeBytes { bytes in
            let (header, payload) = try checkFrame(bytes, location)
            guard let encoding = Encoding(rawValue: header.encoding) else {
                throw StoreError.corrupt("chunk \(location.id.short) uses encoding \(header.encoding), unknown to this tpstore")
            }
            guard header.rawLength == location.rawLength, output.count == location.rawLength else {
                throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, expected: "\(location.rawLength) bytes", actual: "\(header.rawLength) bytes",
                                                "chunk \(location.id.short): its frame holds \(header.rawLength) bytes, the catalog says \(location.rawLength)"))
            }
            var base: [UInt8]?
            if let baseID = header.base {
                guard let baseRow = location.baseRowID, let baseLocation = try prefetched?.locations[baseRow] ?? catalog.chunk(rowID: baseRow),
                      baseLocation.id == baseID else {
                    throw StoreError.corrupt("chunk \(location.id.short) is a delta against \(baseID.short), which the catalog does not locate")
                }
                guard location.depth <= ChunkStore.maxDeltaDepth, baseLocation.depth < location.depth else {
                    throw StoreError.corrupt("chunk \(location.id.short) has a delta chain deeper than \(ChunkStore.maxDeltaDepth)")
                }
                base = try rawBytes(of: baseLocation, cache: cache, prefetched: prefetched)
            }
            do {
                try ChunkCodec.decode(payload, header: header, encoding: encoding, base: base, into: output)
            } catch let error as CodecError {
                throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, "chunk \(location.id.short) in pack \(location.pack) at \(location.frameOffset) does not decode: \(error)"))
            }
        }
        guard Hashing.xxh3_128(UnsafeRawBufferPointer(output)) == location.id.xxh else {
            throw StoreError.corrupt(Damage(chunk: location.id, pack: location.pack, offset: location.frameOffset, expected: location.id.description,
                                            "chunk \(location.id.short) in pack \(location.pack) at \(location.frameOffset) decodes to the wrong bytes"))
        }
    }
}

/// Frames read ahead in batches, and the locations of the delta bases they need.
public struct PrefetchedFrames: Sendable {
    /// Frame bytes by chunk row id: slices of the spans `FrameBatch` read, not copies of them (a
    /// span's bytes live while any of its frames is held).
    public var frames: [Int64: ArraySlice<UInt8>] = [:]
    /// Base chunk locations by row id.
    public var locations: [Int64: ChunkLocation] = [:]
    /// The arrays the spans were read into, where they came from a pool (`FrameBatch.prefetch`'s
    /// `buffers`), to be given back to it.
    public var spans: [[UInt8]] = []
    public init() {}
}
