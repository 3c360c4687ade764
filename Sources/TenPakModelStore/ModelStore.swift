import Foundation
import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// Models and their revisions over a chunk store: the library's main entry point.
///
///     let store = try ModelStore.open(directory: "/var/lib/tenpak", create: true)
///     let report = try store.put(model: "org/llama-ft", paths: ["/models/llama-ft"], base: .automatic)
///     try store.get(model: "org/llama-ft", revision: report.revision.revision, to: "/tmp/out")
///
/// Safe to use from several threads and processes at once: puts are atomic and isolated by the
/// catalog's transactions; readers see only committed revisions.
public final class ModelStore: Sendable {
    public let chunks: ChunkStore

    public init(chunks: ChunkStore) {
        self.chunks = chunks
    }

    /// Opens the local store in `directory` (creating it with `create`). A store of another
    /// backend is opened by its own module and handed to `init(chunks:)`; `StoreLocation` (product
    /// `TenPakDistributed`) opens either kind from a location.
    public static func open(directory: String, create: Bool = false) throws -> ModelStore {
        ModelStore(chunks: try ChunkStore.openLocal(directory: directory, create: create))
    }

    public var catalog: any Catalog { chunks.catalog }

    // MARK: put

    /// Stores files as a new revision of `model`. `paths` are files or directories (walked
    /// recursively; a directory's files keep their paths relative to it, `.git` is skipped).
    ///
    /// A walk never leaves the directories named: a symbolic link inside them is refused unless
    /// `followLinks` is set, and then only a link to a regular file is followed (its target's
    /// bytes are stored under the link's path); links to directories, FIFOs, sockets and devices
    /// are always refused, by name. Paths named here are followed as given.
    public func put(model: String, revision: String? = nil, paths: [String], followLinks: Bool = false, base: BaseChoice = .automatic,
                    progress: (@Sendable (TransferProgress) -> Void)? = nil) throws -> PutReport {
        try Names.validateModel(model)
        if let revision { try Names.validateRevision(revision) }
        return try put(model: model, revision: revision, inputs: try ModelStore.collectInputs(paths, followLinks: followLinks),
                       base: base, progress: progress)
    }

    /// Stores exactly these files, each under its own `path` in the revision (a caller that names
    /// files itself, such as the git-lfs agent storing a nameless object as `object`).
    public func put(model: String, revision: String? = nil, inputs: [PutInput], base: BaseChoice = .automatic,
                    progress: (@Sendable (TransferProgress) -> Void)? = nil) throws -> PutReport {
        try Names.validateModel(model)
        let revision = revision ?? FileSystem.randomHex(bytes: 6)
        try Names.validateRevision(revision)
        guard !inputs.isEmpty else { throw StoreError.invalidRequest("nothing to put: give at least one file") }
        var seen = Set<String>()
        for input in inputs {
            try Names.validatePath(input.path)
            guard seen.insert(input.path).inserted else {
                throw StoreError.invalidRequest("two inputs map to the same path \(input.path) in the revision")
            }
        }
        let inputs = inputs.sorted { $0.path < $1.path }
        let lock = try chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        // Read under the lock, before any dedup lookup: the commit is refused if a gc starts after it.
        let gcFence = try catalog.gcGeneration()
        if (try? catalog.resolve(model: model, revision: revision)) != nil {
            throw StoreError.revisionAlreadyExists(model: model, revision: revision)
        }
        var planned: [(input: PutInput, plan: ChunkPlan)] = []
        var warnings: [PutWarning] = []
        for input in inputs {
            let file = try OpenFile(path: input.source, mode: .read)
            let identity = try file.identity()
            let size = identity.size
            let named = input.path.hasSuffix(".safetensors")
            var plan = try ChunkPlan.make(file: file, size: size, looksLikeSafetensors: named || (try ChunkPlan.sniffSafetensors(file: file, size: size)))
            plan.sourceIdentity = identity
            // Content that merely looked like safetensors and is not, is an ordinary opaque file.
            if let w = plan.warning, named { warnings.append(.notSafetensors(path: input.path, reason: w)) }
            planned.append((input, plan))
        }
        // The upload's sketch is stored with it whatever the base choice, so later uploads can
        // compare against it.
        let sketch = try BaseSketch.make(uploads: planned)
        let decision: BaseDecision?
        var index: BaseIndex?
        switch base {
        case .none:
            decision = nil
            warnings.append(.noBase(reason: "--no-base given"))
        case let .explicit(baseModel, baseRevision):
            let record = try catalog.resolve(model: baseModel, revision: baseRevision)
            decision = BaseDecision(revision: record, reason: "given with --base")
        case .automatic:
            let choice = try chooseBase(planned, sketch: sketch)
            decision = choice.decision
            index = choice.index
            if choice.decision == nil { warnings.append(.noBase(reason: choice.note)) }
        }
        // The manifest is one frame: refuse a revision whose manifest cannot be, before any data
        // is read or written (paths and chunk counts are known from the plans).
        let manifestSize = RevisionManifest.encodedSize(
            model: model, revision: revision, baseModel: decision?.revision.model ?? "", baseRevision: decision?.revision.revision ?? "",
            baseReason: decision?.reason ?? "", files: planned.map { ($0.input.path, $0.plan.pieces.count) })
        guard manifestSize <= FrameHeader.maxLength else {
            throw StoreError.invalidRequest("the revision's manifest would be \(manifestSize) bytes (\(planned.count) files), over the \(FrameHeader.maxLength >> 20) MiB frame limit; nothing was stored: put the files as several revisions")
        }
        if index == nil, let decision { index = try BaseIndex.load(chunks, revision: decision.revision) }
        let putter = Putter(store: chunks, model: model, revision: revision, gcFence: gcFence, progress: progress)
        return try putter.run(inputs: planned, base: decision, baseIndex: index, warnings: warnings, sketch: sketch?.encoded())
    }

    /// The automatic base choice for files already planned (the model card's `base_model`, if
    /// there is a README.md among them, is the hint).
    private func chooseBase(_ planned: [(input: PutInput, plan: ChunkPlan)], sketch: BaseSketch?) throws -> BaseMatcher.Choice {
        let hint = planned.first { $0.input.path.lowercased() == "readme.md" }.flatMap { entry in
            (try? String(contentsOfFile: entry.input.source, encoding: .utf8)).flatMap(BaseMatcher.hint(fromModelCard:))
        }
        return try BaseMatcher.choose(store: chunks, uploads: planned, hint: hint, sketch: sketch)
    }

    /// What an automatic put of `paths` would choose as its base, and how long choosing took
    /// (benchmarks, `Tools/bench_scale`). Stores nothing but sketches of candidates that lacked one.
    public func explainBase(paths: [String]) throws -> (decision: BaseDecision?, note: String, seconds: Double) {
        let inputs = try ModelStore.collectInputs(paths)
        let lock = try chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        var planned: [(input: PutInput, plan: ChunkPlan)] = []
        for input in inputs {
            let file = try OpenFile(path: input.source, mode: .read)
            let size = try file.size()
            let named = input.path.hasSuffix(".safetensors")
            planned.append((input, try ChunkPlan.make(file: file, size: size, looksLikeSafetensors: named || (try ChunkPlan.sniffSafetensors(file: file, size: size)))))
        }
        let started = Date()
        let choice = try chooseBase(planned, sketch: try BaseSketch.make(uploads: planned))
        return (choice.decision, choice.note, Date().timeIntervalSince(started))
    }

    /// Expands files and directories into (source, path-in-revision) pairs, sorted by path.
    static func collectInputs(_ paths: [String], followLinks: Bool = false) throws -> [PutInput] {
        guard !paths.isEmpty else { throw StoreError.invalidRequest("nothing to put: give at least one file or directory") }
        var inputs: [PutInput] = []
        for path in paths {
            let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
            if FileSystem.isDirectory(trimmed) {
                try walk(trimmed, prefix: "", followLinks: followLinks, into: &inputs)
            } else if FileSystem.isRegularFile(trimmed) {
                let name = trimmed.split(separator: "/").last.map(String.init) ?? trimmed
                inputs.append(PutInput(source: trimmed, path: name))
            } else if FileSystem.exists(trimmed) {
                throw StoreError.invalidRequest("\(path) is neither a regular file nor a directory")
            } else {
                throw StoreError.notFound(.localPath(path))
            }
        }
        var seen = Set<String>()
        for input in inputs {
            try Names.validatePath(input.path)
            guard seen.insert(input.path).inserted else {
                throw StoreError.invalidRequest("two inputs map to the same path \(input.path) in the revision")
            }
        }
        return inputs.sorted { $0.path < $1.path }
    }

    /// Walks `directory` without following links to directories, so the walk stays inside the
    /// tree and cannot loop; see `put(model:revision:paths:followLinks:base:progress:)`.
    private static func walk(_ directory: String, prefix: String, followLinks: Bool, into inputs: inout [PutInput]) throws {
        for name in try FileSystem.list(directory) where name != ".git" {
            let full = directory + "/" + name
            let relative = prefix.isEmpty ? name : prefix + "/" + name
            switch FileSystem.entryKind(full) {
            case .directory:
                try walk(full, prefix: relative, followLinks: followLinks, into: &inputs)
            case .regular:
                inputs.append(PutInput(source: full, path: relative))
            case .symbolicLink:
                guard followLinks else {
                    throw StoreError.invalidRequest("\(Names.printable(full)) is a symbolic link; put stores regular files only (--follow-links stores what a link to a regular file points to)")
                }
                guard FileSystem.isRegularFile(full) else {
                    throw StoreError.invalidRequest("\(Names.printable(full)) is a symbolic link to something other than a regular file; only links to regular files are followed")
                }
                inputs.append(PutInput(source: full, path: relative))
            case let .other(kind):
                throw StoreError.invalidRequest("\(Names.printable(full)) is \(kind); put stores regular files only")
            case .missing:
                // Removed between the listing and the look: the tree is changing under the put.
                throw StoreError.invalidRequest("\(Names.printable(full)) disappeared while the directory was being read")
            }
        }
    }

    // MARK: get

    /// Writes every file of a revision under `destination`, each checked against its SHA-256
    /// before it is renamed into place. Returns the files written.
    @discardableResult
    public func get(model: String, revision: String?, to destination: String,
                    progress: (@Sendable (TransferProgress) -> Void)? = nil) throws -> [FileRecord] {
        let lock = try chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let record = try catalog.resolve(model: model, revision: revision)
        let files = try catalog.files(revision: record)
        try FileSystem.makeDirectories(destination)
        let total = files.reduce(0) { $0 + $1.size }
        var done = 0
        for file in files {
            try Names.validatePath(file.path)
            let target = destination + "/" + file.path
            // Never through a link the destination already holds: every file lands inside it.
            let parent = FileSystem.parentDirectory(file.path)
            try FileSystem.makeDirectories(inside: destination, relative: parent == "." ? "" : parent)
            let before = done
            let counter = ExportState()
            try export(file, to: target) { bytes in
                counter.written += bytes
                progress?(TransferProgress(done: before + counter.written, total: total, file: file.path))
            }
            done += file.size
        }
        return files
    }

    /// Rebuilds one file into `target` (via a temporary file beside it).
    public func export(_ file: FileRecord, to target: String, advanced: @escaping (Int) -> Void = { _ in }) throws {
        let temporary = FileSystem.parentDirectory(target) + "/.tpstore-partial-" + FileSystem.randomHex(bytes: 6)
        let out = try OpenFile(path: temporary, mode: .createExclusive)
        do {
            let state = ExportState()
            try FileStream(store: chunks, file: file).forEachWindowBuffer { raw in
                // The write (a kernel copy into the page cache) and the SHA-256 of a window are
                // about equally long and independent: run them side by side, not one after the other.
                nonisolated(unsafe) let raw = raw
                let offset = state.written
                _ = try parallelMap(2) { k in
                    if k == 0 { try out.write(raw, at: offset) } else { state.sha.update(raw) }
                }
                state.written += raw.count
                advanced(raw.count)
            }
            let digest = state.sha.finalize()
            let written = state.written
            guard written == file.size, digest == file.sha256 else {
                throw StoreError.corrupt("\(file.path) rebuilt to \(written) bytes with SHA-256 \(digest.hex), expected \(file.size) bytes with \(file.sha256.hex)")
            }
            try FileSystem.rename(temporary, to: target)
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
    }

    // MARK: listing and removal

    public func revisions(model: String? = nil) throws -> [RevisionRecord] {
        if let model { try Names.validateModel(model) }
        return try catalog.revisions(model: model)
    }

    /// Forgets a revision. Chunks it shared with other revisions, and base chunks that other
    /// revisions' delta chunks need, stay; the rest is reclaimed by `gc`.
    public func remove(model: String, revision: String) throws {
        let lock = try chunks.lock(.shared)
        defer { withExtendedLifetime(lock) {} }
        let record = try catalog.resolve(model: model, revision: revision)
        // ORDER: tombstone durable in a pack → catalog row deleted, so a catalog rebuilt from packs
        // does not bring the revision back.
        let tombstone = try RevisionTombstone(model: model, revision: revision, manifest: record.manifest,
                                              removedAt: Int64(Date().timeIntervalSince1970)).encoded()
        let id = tombstone.withUnsafeBytes { ChunkID(of: $0) }
        let header = FrameHeader(kind: .tombstone, encoding: Encoding.stored.rawValue, payloadLength: tombstone.count,
                                 rawLength: tombstone.count, elementWidth: 1, floatLayout: .none, id: id, base: nil,
                                 payloadChecksum: Hashing.xxh3_64(tombstone))
        let writer = FrameWriter(packs: chunks.packs)
        _ = try writer.append(header: header, payload: tombstone)
        // A refused removal deletes its tombstone pack: left behind, a repair would apply it.
        try writer.commit { sealed in try catalog.remove(revision: record, tombstonePack: sealed[0]) }
    }
}

/// Reads a stored file front to back in windows of chunks, decoding each window's chunks in
/// parallel while the previous window is handed to the consumer (written and hashed) on another
/// thread: the file's SHA-256 is sequential, so it overlaps decoding instead of following it.
struct FileStream {
    let store: ChunkStore
    let file: FileRecord
    /// The file's chunks when the caller has them already (a revision not yet committed: the
    /// transfer importer checks files before its commit); nil: the catalog's.
    var chunks: [FileChunk]? = nil
    /// Chunks decoded per window: 8 on a local store (measured against 16 on 2026-12-04, 20
    /// alternating gets: the corpus F32 fine-tune 186 → 173 ms, its base 129 → 115 ms; less memory
    /// to fault in), 16 where reads are remote (half as many ranged GETs, each latency hidden
    /// behind a longer decode).
    var windowChunks: Int { store.packs.readsAreRemote ? 16 : 8 }

    /// Windows in order, as arrays (a copy of each window; see `forEachWindowBuffer`).
    func forEachWindow(_ body: @escaping ([UInt8]) throws -> Void) throws {
        try forEachWindowBuffer { try body(Array($0)) }
    }

    /// Windows in order, on a consumer thread; the bytes are valid only during the call (the buffer
    /// is reused for a later window).
    func forEachWindowBuffer(_ body: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        let chunks = try self.chunks ?? store.catalog.fileChunks(file: file)
        var expectedOffset = 0
        for c in chunks {
            guard c.offset == expectedOffset else {
                throw StoreError.corrupt("\(file.path): chunk at offset \(c.offset) does not follow the previous one (expected \(expectedOffset))")
            }
            expectedOffset += c.location.rawLength
        }
        let windowChunks = self.windowChunks
        let consumer = DispatchQueue(label: "tenpak.filestream.consumer")
        // Back-pressure: at most two decoded windows wait for the consumer, so memory stays bounded
        // when hashing and writing are slower than decoding.
        let inFlight = DispatchSemaphore(value: 2)
        let failure = FailureBox()
        nonisolated(unsafe) let body = body
        let buffers = WindowBuffers()
        let spanBuffers = SpanBuffers()
        // Every window's buffer is as long as the longest window: reused from the first windows on,
        // never dropped for a longer one (and its memory faulted in again).
        var windowBytes = 0
        for start in stride(from: 0, to: chunks.count, by: windowChunks) {
            windowBytes = max(windowBytes, chunks[start ..< min(start + windowChunks, chunks.count)].reduce(0) { $0 + $1.location.rawLength })
        }
        // However this returns (an error included), the consumer has finished with `body` first:
        // callers pass closures that must not outlive the call (`forEachWindowSync`).
        defer { consumer.sync {} }
        // The frames of one window (and their bases) in one read per run of neighbouring frames;
        // the next window's are read while this one decodes, so an object store's latency hides
        // behind decoding.
        let store = self.store
        func readAhead(from start: Int) -> Background<PrefetchedFrames> {
            let locations = chunks[start ..< min(start + windowChunks, chunks.count)].map(\.location)
            return Background { try FrameBatch.prefetch(locations, store: store, buffers: spanBuffers) }
        }
        var start = 0
        var next = chunks.isEmpty ? nil : readAhead(from: 0)
        // The previous window's span arrays, given back only now: until its frames and the
        // Background holding them were released, a read into them would have copied them.
        var spent: [[UInt8]] = []
        while start < chunks.count, failure.error == nil, let pending = next {
            let end = min(start + windowChunks, chunks.count)
            let frames = try pending.value()
            spanBuffers.give(&spent)
            next = end < chunks.count ? readAhead(from: end) : nil
            // Each chunk decodes straight into its place in the window (no copy to assemble it).
            var offsets = [0]
            for c in chunks[start ..< end] { offsets.append(offsets[offsets.count - 1] + c.location.rawLength) }
            let count = offsets[offsets.count - 1]
            nonisolated(unsafe) let buffer = buffers.take(windowBytes)
            do {
                _ = try parallelMap(end - start) { i in
                    // Safe: offsets[i] ..< offsets[i + 1] lies inside the buffer (count bytes or more);
                    // the slices are disjoint.
                    try store.decode(chunks[start + i].location, prefetched: frames,
                                     into: UnsafeMutableRawBufferPointer(rebasing: buffer[offsets[i] ..< offsets[i + 1]]))
                }
            } catch {
                buffers.give(buffer)
                throw error
            }
            spent = frames.spans
            // A serial queue: windows reach the consumer in order, one at a time. Every chunk wrote
            // its whole slice (`decode` writes every byte or throws), so [0, count) is initialized.
            inFlight.wait()
            consumer.async {
                defer {
                    buffers.give(buffer)
                    inFlight.signal()
                }
                guard failure.error == nil else { return }
                do { try body(UnsafeRawBufferPointer(rebasing: buffer[0 ..< count])) } catch { failure.error = error }
            }
            start = end
        }
        consumer.sync {}
        if let error = failure.error { throw error }
    }
}

extension FileStream {
    /// Windows in order on the calling thread (for consumers that are not thread-safe).
    func forEachWindowSync(_ body: ([UInt8]) throws -> Void) throws {
        try withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            let lock = NSLock()
            try forEachWindow { window in
                lock.lock()
                defer { lock.unlock() }
                try body(window)
            }
        }
    }
}

/// Window buffers reused from one window to the next: a fresh 16 MiB allocation per window costs a
/// page fault per 4 KiB (and the kernel's zeroing of it) before the decode writes it. At most three
/// are in use at once (two waiting for the consumer, one decoding).
private final class WindowBuffers: @unchecked Sendable {
    // Safe: `free` is only touched inside `lock`; a buffer taken is used by one window at a time.
    private let lock = NSLock()
    private var free: [UnsafeMutableRawBufferPointer] = []

    /// A buffer of at least `count` bytes (uninitialized the first time).
    func take(_ count: Int) -> UnsafeMutableRawBufferPointer {
        lock.lock()
        defer { lock.unlock() }
        if let i = free.firstIndex(where: { $0.count >= count }) { return free.remove(at: i) }
        // None fits: drop a smaller one rather than keep it, so the pool never grows past the
        // buffers in use at once.
        if let smaller = free.popLast() { smaller.deallocate() }
        return .allocate(byteCount: max(count, 1), alignment: 64)
    }

    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        lock.lock()
        defer { lock.unlock() }
        free.append(buffer)
    }

    deinit {
        for buffer in free { buffer.deallocate() }
    }
}

/// The first error a background consumer hit.
private final class FailureBox: @unchecked Sendable {
    // Safe: written on the serial consumer queue, read after it drained (sync) or racily as a hint.
    var error: Error?
}

/// Running totals of one export, touched only by the consumer queue (and the work it waits for).
private final class ExportState: @unchecked Sendable {
    var sha = StreamingSHA256()
    var written = 0
}
