import TenPakFormat

/// Writes frames into new packs of one store and owns what becomes of them: every writer of
/// frames (put, copy, gc's repack, rm's tombstone) goes through one of these, so packs roll over
/// at one size and are cleaned up after a failure in one way.
///
/// Life of a writer: `append` frames (a pack is started on the first, sealed and a new one started
/// when it passes `rollOver`); then `commit`, which seals the open pack and runs the caller's
/// catalog transaction with the sealed packs. The packs then end up in exactly one of three states:
/// - referenced: the transaction committed;
/// - deleted: anything failed before or in the transaction (including a refused commit);
/// - left for gc: the transaction's outcome is unknown (the catalog server went away before it
///   answered, `StoreError.outcomeUnknown`), so the packs may be referenced and must not go.
/// A writer dropped without `commit` (an error thrown past it) deletes its packs too.
///
/// ORDER (must): a pack is durable and visible (sealed) before any catalog row names it.
public final class FrameWriter {
    /// Packs roll over past this size: bounded objects for a bucket, bounded rewrite for gc.
    public static let defaultRollOver = 1 << 30

    private let packs: any PackStorage
    private let rollOver: Int
    private var open: (any PackWriting)?
    private var sealed: [(name: String, size: Int)] = []
    private var finished = false

    public init(packs: any PackStorage, rollOver: Int = FrameWriter.defaultRollOver) {
        self.packs = packs
        self.rollOver = max(1, rollOver)
    }

    deinit {
        discard()
    }

    /// Frame bytes (headers and payloads) appended so far.
    public private(set) var bytesWritten = 0

    /// Appends one frame; returns where it went, as the catalog records a new chunk. `depth` is
    /// the chunk's delta depth (0 for a frame without a base).
    public func append(header: FrameHeader, payload: UnsafeRawBufferPointer, depth: Int = 0) throws -> NewChunk {
        precondition(!finished, "FrameWriter used after commit or discard")
        let pack = try currentPack()
        let headerBytes = header.encoded()
        let offset = try headerBytes.withUnsafeBytes { try pack.append($0) }
        _ = try pack.append(payload)
        let length = headerBytes.count + payload.count
        bytesWritten += length
        return NewChunk(id: header.id, rawLength: header.rawLength, pack: pack.name, frameOffset: offset, frameLength: length,
                        encoding: header.encoding, base: header.base, depth: depth)
    }

    /// Appends one frame whose payload is an array.
    public func append(header: FrameHeader, payload: [UInt8], depth: Int = 0) throws -> NewChunk {
        try payload.withUnsafeBytes { try append(header: header, payload: $0, depth: depth) }
    }

    /// Seals the open pack, then runs `transaction` with every pack sealed (in the order written)
    /// and returns its result. See the type's doc for what happens to the packs when it throws.
    public func commit<T>(_ transaction: ([(name: String, size: Int)]) throws -> T) throws -> T {
        precondition(!finished, "FrameWriter committed twice")
        do {
            try sealOpenPack()
        } catch {
            discard()
            throw error
        }
        do {
            let result = try transaction(sealed)
            finished = true
            return result
        } catch {
            if StoreError.outcomeUnknown(error) {
                finished = true
            } else {
                discard()
            }
            throw error
        }
    }

    /// Drops everything written: the open pack is abandoned, sealed packs are deleted. Does
    /// nothing once `commit` has run (its packs are referenced, deleted already, or left for gc).
    public func discard() {
        guard !finished else { return }
        finished = true
        open?.abandon()
        open = nil
        for pack in sealed { try? packs.delete(pack: pack.name) }
        sealed = []
    }

    private func currentPack() throws -> any PackWriting {
        if let open, open.size < rollOver { return open }
        try sealOpenPack()
        let fresh = try packs.createPack()
        open = fresh
        return fresh
    }

    private func sealOpenPack() throws {
        guard let pack = open else { return }
        open = nil
        do {
            try pack.seal()
        } catch {
            pack.abandon()
            throw error
        }
        sealed.append((pack.name, pack.size))
    }
}
