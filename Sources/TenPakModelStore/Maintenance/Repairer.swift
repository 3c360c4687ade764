import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// What a catalog rebuild did.
public struct RepairReport: Sendable {
    public var lines: [String] = []
    public var unrecoverable: [String] = []
}

/// Rebuilds a lost or damaged catalog from the packs' self-describing frames (`fsck --repair`).
///
/// Every pack is scanned frame by frame (a damaged frame is skipped by searching for the next
/// frame magic); chunk frames give chunk locations, manifest frames give revisions, tombstone frames
/// say which manifests were removed. Each revision whose chunks are all present is committed into a
/// new catalog, which then replaces the live one; the old one is kept aside (`CatalogRebuild`: a
/// second SQLite file locally, a second PostgreSQL schema on a distributed store).
public struct Repairer {
    /// The store's packs, lock and rebuild (local or distributed; see `StoreLocation` for opening
    /// one by location).
    let target: RepairTarget

    public init(target: RepairTarget) {
        self.target = target
    }

    /// The local store in `directory`.
    public init(directory: String) throws {
        target = try RepairTarget.local(directory: directory)
    }

    struct ScannedChunk {
        let header: FrameHeader
        let pack: String
        let offset: Int
        let length: Int
    }

    public func run() throws -> RepairReport {
        let lock = try target.locking.acquire(.exclusive, timeout: 60)
        defer { withExtendedLifetime(lock) {} }
        // Fence the old catalog first (when it still opens): a writer that lost its lock cannot
        // commit into it between this scan and the swap, so nothing acknowledged is left behind.
        _ = try? target.openLiveCatalog().beginCollection()
        let packs = target.packs
        var report = RepairReport()
        var chunks: [ChunkID: ScannedChunk] = [:]
        var manifests: [(id: ChunkID, manifest: RevisionManifest, pack: String)] = []
        var tombstones: [(RevisionTombstone, pack: String)] = []
        var packSizes: [String: Int] = [:]
        var frames = 0

        for name in try packs.packNames() {
            let size = try packs.size(pack: name)
            let file = WindowedPackReader(packs: packs, pack: name, size: size)
            packSizes[name] = size
            let start = try file.read(count: min(size, PackHeader.size), at: 0)
            do {
                try start.withUnsafeBytes { try PackHeader.validate($0, pack: name) }
            } catch {
                report.unrecoverable.append("pack \(name): \(error)")
                continue
            }
            var offset = PackHeader.size
            while offset < size {
                let headerBytes = try file.read(count: min(FrameHeader.maxSize, size - offset), at: offset)
                let place = "pack \(name) offset \(offset)"
                do {
                    let header = try headerBytes.withUnsafeBytes { try FrameHeader.decode($0, where: place) }
                    guard offset + header.size + header.payloadLength <= size else {
                        throw FormatError.invalid("\(place): frame runs past the end of the pack")
                    }
                    let payload = try file.read(count: header.payloadLength, at: offset + header.size)
                    try payload.withUnsafeBytes { try header.verifyPayload($0, where: place) }
                    frames += 1
                    let length = header.size + header.payloadLength
                    switch header.kind {
                    case .chunk:
                        if chunks[header.id] == nil { chunks[header.id] = ScannedChunk(header: header, pack: name, offset: offset, length: length) }
                    case .manifest:
                        let raw = try decodeWhole(header: header, payload: payload)
                        let manifest = try raw.withUnsafeBytes { try RevisionManifest.decode($0) }
                        manifests.append((header.id, manifest, name))
                        chunks[header.id] = ScannedChunk(header: header, pack: name, offset: offset, length: length)
                    case .tombstone:
                        tombstones.append((try payload.withUnsafeBytes { try RevisionTombstone.decode($0) }, name))
                    }
                    offset += length
                } catch {
                    report.unrecoverable.append("\(place): damaged frame skipped (\(error))")
                    offset = nextMagic(in: file, after: offset, size: size)
                }
            }
        }
        report.lines.append("scanned \(packSizes.count) packs: \(frames) intact frames, \(manifests.count) manifests, \(tombstones.count) tombstones")

        // Build the new catalog beside the old one, then swap.
        do {
            let catalog = try target.rebuild.makeEmpty()
            let removed = Set(tombstones.map { $0.0.manifest })
            var inserted = Set<ChunkID>()
            var insertedPacks = Set<String>()
            var depth: [ChunkID: Int] = [:]
            var recovered: [RevisionRecord] = []
            func depthOf(_ id: ChunkID) -> Int? {
                if let d = depth[id] { return d }
                guard let c = chunks[id] else { return nil }
                guard let base = c.header.base else { depth[id] = 0; return 0 }
                guard let d = depthOf(base) else { return nil }
                depth[id] = d + 1
                return d + 1
            }
            for (id, manifest, _) in manifests.sorted(by: { ($0.manifest.createdAt, $0.manifest.revision) < ($1.manifest.createdAt, $1.manifest.revision) }) {
                let name = "\(manifest.model)@\(manifest.revision)"
                if removed.contains(id) { continue }
                var newChunks: [NewChunk] = []
                var newPacks: [(name: String, size: Int)] = []
                var missing: String?
                func add(_ cid: ChunkID) {
                    guard missing == nil, !inserted.contains(cid) else { return }
                    guard let c = chunks[cid], let d = depthOf(cid) else { missing = cid.short; return }
                    if let base = c.header.base { add(base) }
                    guard missing == nil else { return }
                    inserted.insert(cid)
                    if !insertedPacks.contains(c.pack) {
                        insertedPacks.insert(c.pack)
                        newPacks.append((c.pack, packSizes[c.pack] ?? 0))
                    }
                    newChunks.append(NewChunk(id: cid, rawLength: c.header.rawLength, pack: c.pack, frameOffset: c.offset, frameLength: c.length,
                                              encoding: c.header.encoding, base: c.header.base, depth: d))
                }
                let snapshot = (inserted, insertedPacks)
                for file in manifest.files { for ref in file.chunks { add(ref.id) } }
                if let missing {
                    (inserted, insertedPacks) = snapshot
                    report.unrecoverable.append("\(name): chunk \(missing) is missing or damaged")
                    continue
                }
                var tensors: [String: [TensorRecord]] = [:]
                do {
                    for file in manifest.files where file.kind == .safetensors {
                        tensors[file.path] = try tensorRecords(of: file, chunks: chunks, packs: packs)
                    }
                    // The manifest chunk itself goes last, in its own pack.
                    guard let mc = chunks[id] else { continue }
                    if !insertedPacks.contains(mc.pack) {
                        insertedPacks.insert(mc.pack)
                        newPacks.append((mc.pack, packSizes[mc.pack] ?? 0))
                    }
                    let manifestChunk = NewChunk(id: id, rawLength: mc.header.rawLength, pack: mc.pack, frameOffset: mc.offset,
                                                 frameLength: mc.length, encoding: mc.header.encoding, base: nil, depth: 0)
                    inserted.insert(id)
                    recovered.append(try catalog.commit(RevisionCommit(manifest: manifest, manifestChunk: manifestChunk, tensors: tensors,
                                                                       packs: newPacks, chunks: newChunks, gcFence: nil)))
                    report.lines.append("recovered \(name) (\(manifest.files.count) files)")
                } catch {
                    (inserted, insertedPacks) = snapshot
                    report.unrecoverable.append("\(name): \(error)")
                }
            }
            for (tombstone, pack) in tombstones {
                try catalog.recordTombstone(tombstone, pack: (pack, packSizes[pack] ?? 0))
            }
            // The candidate index was written by each commit above; the sketches are made now, from
            // the chunks through the new catalog (a revision whose sketch cannot be made is still
            // recovered: base choice samples it instead).
            let rebuilt = ChunkStore(packs: packs, catalog: catalog, root: target.place, locking: target.locking)
            var sketched = 0
            for record in recovered {
                do {
                    if let sketch = try BaseMatcher.remake(store: rebuilt, record: record) {
                        try catalog.putSketch(revisionRowID: record.rowID, sketch: sketch.encoded())
                        sketched += 1
                    }
                } catch {
                    report.lines.append("\(record.model)@\(record.revision): no content sketch (\(error)); base choice samples it instead")
                }
            }
            report.lines.append("candidate index rebuilt for \(recovered.count) revisions, \(sketched) content sketches made")
            // A writer that read a gc generation from the old catalog must not commit into this one.
            _ = try catalog.beginCollection()
        }
        // ORDER: the rebuilt catalog is complete and closed (its scope ended above) → swap.
        report.lines.append(try target.rebuild.replaceLive())
        return report
    }

    private func decodeWhole(header: FrameHeader, payload: [UInt8]) throws -> [UInt8] {
        guard let encoding = Encoding(rawValue: header.encoding), !encoding.usesBase else {
            throw FormatError.invalid("frame encoding \(header.encoding) is not valid here")
        }
        var raw = [UInt8](repeating: 0, count: header.rawLength)
        try payload.withUnsafeBytes { p in
            try raw.withUnsafeMutableBytes { out in
                try ChunkCodec.decode(p, encoding: encoding, element: ElementType(width: Int(header.elementWidth), layout: header.floatLayout),
                                      base: nil, into: out)
            }
        }
        guard Hashing.xxh3_128(raw) == header.id.xxh else { throw FormatError.invalid("frame decodes to the wrong bytes") }
        return raw
    }

    /// Tensor records from the safetensors header at the start of a file (header chunks never have a base).
    private func tensorRecords(of file: RevisionManifest.File, chunks: [ChunkID: ScannedChunk], packs: any PackStorage) throws -> [TensorRecord] {
        var refs = file.chunks.makeIterator()
        do {
            return try TensorRecord.fromSafetensorsHeader(fileSize: Int(file.size)) {
                guard let ref = refs.next(), let c = chunks[ref.id] else { return nil }
                let bytes = try packs.read(pack: c.pack, offset: c.offset + c.header.size, length: c.header.payloadLength)
                return try decodeWhole(header: c.header, payload: bytes)
            }
        } catch let error as FormatError {
            throw FormatError.invalid("\(file.path): \(error)")
        }
    }

    /// The offset of the next "TPFR" after `offset`, or `size`.
    private func nextMagic(in file: WindowedPackReader, after offset: Int, size: Int) -> Int {
        var position = offset + 1
        let step = 1 << 20
        while position < size {
            guard let window = try? file.read(count: min(step + 3, size - position), at: position) else { return size }
            if window.count >= 4 {
                for i in 0 ... window.count - 4 where window[i] == 0x54 && window[i + 1] == 0x50 && window[i + 2] == 0x46 && window[i + 3] == 0x52 {
                    return position + i
                }
            }
            position += step
        }
        return size
    }
}

/// Reads a pack front to back in large windows, so a scan costs one request per window (not two
/// per frame) on an object store.
final class WindowedPackReader {
    let packs: any PackStorage
    let pack: String
    let size: Int
    private var window: [UInt8] = []
    private var windowStart = 0
    static let windowSize = 16 << 20

    init(packs: any PackStorage, pack: String, size: Int) {
        self.packs = packs
        self.pack = pack
        self.size = size
    }

    /// `count` bytes at `offset`; the caller keeps `offset + count` within the pack.
    func read(count: Int, at offset: Int) throws -> [UInt8] {
        if offset >= windowStart, offset + count <= windowStart + window.count {
            return Array(window[(offset - windowStart) ..< (offset - windowStart + count)])
        }
        if count > WindowedPackReader.windowSize / 2 {
            return try packs.read(pack: pack, offset: offset, length: count)
        }
        window = try packs.read(pack: pack, offset: offset, length: min(WindowedPackReader.windowSize, size - offset))
        windowStart = offset
        guard window.count >= count else {
            throw StoreError.corrupt("pack \(pack): \(count) bytes at \(offset) run past its end")
        }
        return Array(window[0 ..< count])
    }
}
