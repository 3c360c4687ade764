// Random access to stored files: any byte range or tensor of a stored file, rebuilt from only the
// chunks that overlap the request, never by materialising the whole file.
//
// Nouns:
// - `StoreReader`: one per store and process. Owns the decoded-chunk cache, the prefetcher and the
//   set of chunk decodes in flight; hands out `FileReader`s.
// - `FileReader`: one stored file of one revision: its size, SHA-256, chunk offsets and (for
//   safetensors) tensor table, and `read(offset:count:)`.
// - `ByteRange`: a `START-END` / `START-` / `-SUFFIX` range as `tpstore cat --range` and HTTP take it.
import Dispatch
import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// Errors of a read request that the caller got wrong. Store problems (unknown model, revision or
/// path; damaged chunks) arrive as `StoreError`, malformed names as `FormatError`.
public enum ReaderError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A byte range (or row range) that does not lie inside the file (or tensor).
    case outOfRange(String)
    /// A range whose text does not parse.
    case malformedRange(String)
    /// The file (its path in the revision) has no tensor of that name.
    case noSuchTensor(path: String, name: String)
    /// A tensor request on a file that is not stored as safetensors.
    case notSafetensors(String)

    public var description: String {
        switch self {
        case let .outOfRange(m), let .malformedRange(m), let .notSafetensors(m): return m
        case let .noSuchTensor(path, name): return "\(Names.printable(path)) has no tensor named \(Names.printable(name))"
        }
    }
}

/// Random access to the files of one store.
///
///     let reader = try StoreReader(directory: "/var/lib/tenpak")
///     let file = try reader.open(model: "org/ft", revision: nil, path: "model.safetensors")
///     let bytes = try file.read(offset: 1 << 20, count: 4096)
///
/// Safe to share between threads: every `FileReader` it hands out reads through one bounded
/// `ChunkCache`, and two threads that need the same chunk at once decode it once.
public final class StoreReader: Sendable {
    /// Tuning knobs. The defaults suit a server on a few cores.
    public struct Configuration: Sendable {
        /// Bytes of decoded chunks kept in memory (whole chunks, at most 1 MiB each for tensor data).
        /// Memory used by reads is bounded by this plus the chunks of requests in progress.
        public var cacheCapacity: Int
        /// Chunks decoded in the background ahead of a sequential reader (0: no prefetch).
        public var prefetchChunks: Int
        /// Chunks one request decodes at a time (in parallel); larger requests go window by window,
        /// which bounds the memory of a multi-GB read.
        public var windowChunks: Int

        public init(cacheCapacity: Int = 256 << 20, prefetchChunks: Int = 4, windowChunks: Int = 8) {
            self.cacheCapacity = cacheCapacity
            self.prefetchChunks = prefetchChunks
            self.windowChunks = max(1, windowChunks)
        }
    }

    /// Counters since the reader was made, for tests and benchmarks.
    public struct Statistics: Sendable, Equatable {
        /// Chunk lookups answered by the cache.
        public var cacheHits = 0
        /// Chunks decoded from packs (each through its delta chain) for a read or a prefetch.
        public var decodes = 0
        /// Background decodes started ahead of a sequential reader.
        public var prefetches = 0
    }

    public let store: ModelStore
    public let cache: ChunkCache
    public let configuration: Configuration
    private let flights = InFlightDecodes()
    private let prefetcher: Prefetcher
    private let counters = Counters()
    private let openFiles = FileReaderCache(capacity: 64)
    private let generation = GenerationWatch()

    public init(store: ModelStore, configuration: Configuration = Configuration()) {
        self.store = store
        self.configuration = configuration
        cache = ChunkCache(capacity: configuration.cacheCapacity)
        prefetcher = Prefetcher(limit: max(2, ProcessInfo.processInfo.activeProcessorCount))
    }

    /// Opens the local store in `directory` (which must exist).
    public convenience init(directory: String, configuration: Configuration = Configuration()) throws {
        self.init(store: try ModelStore.open(directory: directory), configuration: configuration)
    }

    public var statistics: Statistics { counters.snapshot() }

    /// The revision (`nil`: the newest) and its files.
    public func files(model: String, revision: String?) throws -> (revision: RevisionRecord, files: [FileRecord]) {
        try Names.validateModel(model)
        if let revision { try Names.validateRevision(revision) }
        let record = try store.catalog.resolve(model: model, revision: revision)
        return (record, try store.catalog.files(revision: record))
    }

    /// Opens one stored file for random access. `revision` nil means the model's newest revision.
    ///
    /// Throws `StoreError.notFound` for an unknown model, revision or path and `FormatError` for a
    /// malformed name. Readers of the same file are shared (and so is their sequential-access state).
    public func open(model: String, revision: String?, path: String) throws -> FileReader {
        try Names.validatePath(path)
        try Names.validateModel(model)
        if let revision { try Names.validateRevision(revision) }
        // No store lock: a gc may run beside this. The generation is read before the locations,
        // so locations resolved mid-gc count as that gc's and are re-resolved if a read fails.
        let generation = try currentGeneration()
        let record = try store.catalog.resolve(model: model, revision: revision)
        let files = try store.catalog.files(revision: record)
        guard let file = files.first(where: { $0.path == path }) else {
            throw StoreError.notFound(.file(model: model, revision: record.revision, path: path))
        }
        if let open = openFiles.get(file, revision: record) { return open }
        let chunks = try store.catalog.fileChunks(file: file)
        let tensors = file.kind == .safetensors ? try store.catalog.tensors(file: file) : []
        let reader = try FileReader(owner: self, revision: record, file: file, chunks: chunks, tensors: tensors, generation: generation)
        openFiles.put(reader)
        return reader
    }

    /// Catches up with what other processes did to the store: a catalog swapped in by a repair is
    /// reconnected, readers opened before a gc or repair are dropped. A server calls it before it
    /// looks anything up in the catalog outside `open` (revision lists, file lists).
    public func catchUp() throws {
        _ = try currentGeneration()
    }

    /// The store's location generation. When it moved on since the last look (a gc or a repair
    /// started), every open file reader is dropped from the cache and the pack handles are closed:
    /// readers re-resolve their chunks, deleted packs free their space. A catalog swapped in by a
    /// repair is reconnected first.
    func currentGeneration() throws -> Int64 {
        try store.chunks.reconnectIfCatalogReplaced()
        let now = try store.chunks.locationGeneration()
        if generation.advance(to: now) {
            openFiles.removeAll()
            store.chunks.packs.forgetOpenHandles()
        }
        return now
    }

    /// Where `reader`'s chunks are now: its file looked up again (same revision, path, size and
    /// SHA-256) and its chunk list checked against the content ids it was opened with. Throws
    /// `StoreError.notFound` when the revision or file is gone (removed since it was opened).
    func relocate(_ reader: FileReader) throws -> [ChunkLocation] {
        let gone = StoreError.notFound(.removed(model: reader.model, revision: reader.revision.revision))
        guard let record = try? store.catalog.resolve(model: reader.model, revision: reader.revision.revision),
              record.manifest == reader.revision.manifest else { throw gone }
        guard let file = try store.catalog.files(revision: record).first(where: { $0.path == reader.path }),
              file.size == reader.file.size, file.sha256 == reader.file.sha256 else { throw gone }
        let chunks = try store.catalog.fileChunks(file: file)
        guard chunks.map(\.location.id) == reader.chunkIDs, chunks.map(\.offset) == reader.chunkOffsets else {
            throw StoreError.corrupt("\(reader.model)@\(reader.revision.revision) \(Names.printable(reader.path)): its chunk list changed in the catalog")
        }
        return chunks.map(\.location)
    }

    /// The decoded bytes of a chunk: from the cache, from a decode another thread already started,
    /// or decoded here (through its delta chain, checked against its content address).
    func chunkBytes(_ location: ChunkLocation, prefetched: PrefetchedFrames? = nil) throws -> [UInt8] {
        if let hit = cache.get(location.id, length: location.rawLength) {
            counters.add(hits: 1)
            return hit
        }
        return try flights.run(location.id) {
            if let hit = cache.get(location.id, length: location.rawLength) { return hit }
            counters.add(decodes: 1)
            return try store.chunks.rawBytes(of: location, cache: cache, prefetched: prefetched)
        }
    }

    /// Starts background decodes of `locations` that are neither cached nor being decoded, as long
    /// as fewer than `limit` prefetches are running (prefetch is a hint, never a queue). A prefetch
    /// of a location that gc moved meanwhile fails its frame check and is dropped: nothing
    /// unchecked reaches the cache.
    func prefetch(_ locations: ArraySlice<ChunkLocation>) {
        for location in locations where !cache.contains(location.id) && !flights.isRunning(location.id) {
            guard prefetcher.reserve() else { return }
            counters.add(prefetches: 1)
            DispatchQueue.global(qos: .utility).async { [self] in
                _ = try? chunkBytes(location)
                prefetcher.release()
            }
        }
    }
}

/// One stored file, readable at any offset. Obtain one from `StoreReader.open`.
///
/// Reads decode only the chunks overlapping the request (found by binary search over the chunks'
/// file offsets); chunks of one request that are not cached decode in parallel. A read that
/// continues where an earlier one ended (a sequential reader: `tpstore cat`, an HTTP client
/// streaming a file) starts background decodes of the next chunks, so they are ready when asked for.
///
/// Every chunk is checked against its XXH3-128 address as it is decoded, so a damaged byte is
/// reported (`StoreError.corrupt`), never returned; the file's SHA-256 is not recomputed per read
/// (`tpstore get` checks it for whole files).
public final class FileReader: Sendable {
    public let revision: RevisionRecord
    public let file: FileRecord
    /// For a safetensors file, its tensors in file order with absolute byte ranges; else empty.
    public let tensors: [TensorRecord]
    private let offsets: [Int]
    /// The chunks' content ids: what the file is made of, whatever gc or repair do to where the
    /// chunks are.
    let chunkIDs: [ChunkID]
    /// Where the chunks are, and the generation that resolved it (re-resolved when it moves on).
    private let layout: Layout
    private let tensorIndex: [String: Int]
    private let owner: StoreReader
    private let streams = StreamTracker()

    public var model: String { revision.model }
    public var path: String { file.path }
    /// The file's length in bytes.
    public var size: Int { file.size }
    /// The SHA-256 of the whole file, as stored by put.
    public var sha256: Digest256 { file.sha256 }
    public var isSafetensors: Bool { file.kind == .safetensors }
    /// The file offset where each of the file's chunks starts, ascending (empty for an empty file).
    public var chunkOffsets: [Int] { offsets }

    init(owner: StoreReader, revision: RevisionRecord, file: FileRecord, chunks: [FileChunk], tensors: [TensorRecord],
         generation: Int64) throws {
        var expected = 0
        for c in chunks {
            guard c.offset == expected else {
                throw StoreError.corrupt("\(file.path): chunk at offset \(c.offset) does not follow the previous one (expected \(expected))")
            }
            expected += c.location.rawLength
        }
        guard expected == file.size else {
            throw StoreError.corrupt("\(file.path): its chunks add up to \(expected) bytes, the catalog says \(file.size)")
        }
        self.owner = owner
        self.revision = revision
        self.file = file
        self.tensors = tensors
        offsets = chunks.map(\.offset)
        chunkIDs = chunks.map(\.location.id)
        layout = Layout(generation: generation, locations: chunks.map(\.location))
        tensorIndex = Dictionary(tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    // MARK: bytes

    /// `count` bytes from `offset`. The range must lie inside the file: `offset + count ≤ size`
    /// (a zero-length read at `size` is allowed); otherwise `ReaderError.outOfRange`.
    public func read(offset: Int, count: Int) throws -> [UInt8] {
        try checkRange(offset: offset, count: count)
        return try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            try read(offset: offset, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// The bytes of `range` (half-open).
    public func read(_ range: Range<Int>) throws -> [UInt8] {
        try read(offset: range.lowerBound, count: range.count)
    }

    /// Fills `buffer` with `buffer.count` bytes from `offset`. Same rules as `read(offset:count:)`.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let count = buffer.count
        try checkRange(offset: offset, count: count)
        guard count > 0 else { return }
        let end = offset + count
        let first = chunkIndex(containing: offset), last = chunkIndex(containing: end - 1)
        // Reads take no store lock, so they never wait for gc and never hold it off. A gc may
        // move frames and delete packs between the look-up of the locations and their reads:
        // such a read fails its frame checks (it never returns unchecked bytes) and is tried
        // again on locations looked up afresh.
        var attempt = 0
        while true {
            let locations = try currentLocations(refresh: attempt > 0)
            do {
                try copy(first ... last, offset: offset, into: buffer, locations: locations)
                afterRead(offset: offset, end: end, lastChunk: last, locations: locations)
                return
            } catch let error as StoreError where attempt < FileReader.relocationRetries && error.mayBeAMovedFrame {
                attempt += 1
            }
        }
    }

    /// Reads after which a failed chunk read is reported rather than tried again on fresh
    /// locations: enough for a gc that commits between two looks, and for two gcs in a row.
    static let relocationRetries = 2

    /// Copies the bytes of `offset ..< offset + buffer.count`, which lie in chunks `indices`.
    private func copy(_ indices: ClosedRange<Int>, offset: Int, into buffer: UnsafeMutableRawBufferPointer,
                      locations: [ChunkLocation]) throws {
        let first = indices.lowerBound, last = indices.upperBound
        let end = offset + buffer.count
        var windowStart = first
        while windowStart <= last {
            let windowEnd = min(last + 1, windowStart + owner.configuration.windowChunks)
            let chunks = try fetch(windowStart ..< windowEnd, locations: locations)
            for (k, bytes) in chunks.enumerated() {
                let i = windowStart + k
                let chunkStart = offsets[i]
                guard bytes.count == locations[i].rawLength else {
                    throw StoreError.corrupt("\(path): chunk \(locations[i].id.short) gave \(bytes.count) bytes, expected \(locations[i].rawLength)")
                }
                let from = max(offset, chunkStart), to = min(end, chunkStart + bytes.count)
                bytes.withUnsafeBytes { src in
                    // Safe: from..<to lies inside both the chunk and the requested range.
                    UnsafeMutableRawBufferPointer(rebasing: buffer[(from - offset) ..< (to - offset)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: src[(from - chunkStart) ..< (to - chunkStart)]))
                }
            }
            windowStart = windowEnd
        }
    }

    /// The chunks' locations for this read: those resolved at open while the store's location
    /// generation is unchanged (and no `refresh` is asked for), else resolved again.
    private func currentLocations(refresh: Bool) throws -> [ChunkLocation] {
        let generation = try owner.currentGeneration()
        if !refresh, let current = layout.locations(at: generation) { return current }
        let fresh = try owner.relocate(self)
        layout.update(generation: generation, locations: fresh)
        return fresh
    }

    /// Calls `body` with consecutive pieces of `range`, each at most `pieceSize` bytes, in order.
    /// Memory stays bounded by one piece plus the cache whatever the range's length.
    public func stream(_ range: Range<Int>, pieceSize: Int = 4 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        try checkRange(offset: range.lowerBound, count: range.count)
        var buffer = [UInt8](repeating: 0, count: min(max(pieceSize, 1), range.count))
        var at = range.lowerBound
        while at < range.upperBound {
            let n = min(buffer.count, range.upperBound - at)
            try buffer.withUnsafeMutableBytes { raw in
                let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0 ..< n])
                try read(offset: at, into: piece)
                try body(UnsafeRawBufferPointer(piece))
            }
            at += n
        }
    }

    private func checkRange(offset: Int, count: Int) throws {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw ReaderError.outOfRange("bytes \(offset)..<\(offset &+ count) are outside \(path), which has \(size) bytes")
        }
    }

    /// The index of the chunk holding byte `offset` (0 ≤ offset < size): binary search over offsets.
    func chunkIndex(containing offset: Int) -> Int {
        var low = 0, high = offsets.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if offsets[mid] <= offset { low = mid } else { high = mid - 1 }
        }
        return low
    }

    /// The decoded chunks `indices`, decoding the uncached ones in parallel.
    private func fetch(_ indices: Range<Int>, locations: [ChunkLocation]) throws -> [[UInt8]] {
        var chunks = [[UInt8]?](repeating: nil, count: indices.count)
        var missing: [Int] = []
        for (k, i) in indices.enumerated() {
            if let hit = owner.cache.get(locations[i].id, length: locations[i].rawLength) {
                chunks[k] = hit
            } else {
                missing.append(k)
            }
        }
        owner.countHits(indices.count - missing.count)
        // The missing chunks' frames and their bases' in few reads (one ranged GET per run of
        // neighbouring frames on S3), then the decodes in parallel.
        let frames = missing.isEmpty ? PrefetchedFrames()
            : try FrameBatch.prefetch(missing.map { locations[indices.lowerBound + $0] }, store: owner.store.chunks, cache: owner.cache)
        let decoded = try parallelMap(missing.count) { m in try owner.chunkBytes(locations[indices.lowerBound + missing[m]], prefetched: frames) }
        for (m, k) in missing.enumerated() { chunks[k] = decoded[m] }
        // Safe: every slot is a cache hit or was just decoded.
        return chunks.map { $0! }
    }

    /// A sequential read (one that starts where an earlier read of this file ended), or any read
    /// that ends exactly on a chunk boundary, starts background decodes of the chunks after the one
    /// it ended in (those not cached or already being decoded). Without a cache there is nowhere to
    /// put them, so no prefetch.
    private func afterRead(offset: Int, end: Int, lastChunk: Int, locations: [ChunkLocation]) {
        let sequential = streams.record(start: offset, end: end)
        let ahead = owner.configuration.prefetchChunks
        guard ahead > 0, owner.cache.capacity > 0, lastChunk + 1 < locations.count else { return }
        let chunkEnd = offsets[lastChunk] + locations[lastChunk].rawLength
        guard sequential || end == chunkEnd else { return }
        owner.prefetch(locations[(lastChunk + 1) ..< min(locations.count, lastChunk + 1 + ahead)])
    }

    // MARK: safetensors

    /// The parsed safetensors header (read from the stored bytes: the length prefix and the JSON).
    /// Tensor offsets in it are relative to the data region, as in the file; `tensors` has the same
    /// entries with absolute offsets.
    public func header() throws -> SafetensorsHeader {
        guard isSafetensors else { throw ReaderError.notSafetensors("\(path) is not stored as a safetensors file") }
        let prefix = try read(offset: 0, count: 8)
        let length = try prefix.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: size) }
        let json = try read(offset: 8, count: length)
        return try json.withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: size) }
    }

    /// The tensor `name` (dtype, shape, absolute byte range).
    public func tensor(named name: String) throws -> TensorRecord {
        guard isSafetensors else { throw ReaderError.notSafetensors("\(path) is not stored as a safetensors file, so it has no tensors") }
        guard let i = tensorIndex[name] else {
            throw ReaderError.noSuchTensor(path: path, name: name)
        }
        return tensors[i]
    }

    /// The byte range in the file of rows `rows` (indices along the first dimension) of tensor
    /// `name`, or of the whole tensor when `rows` is nil.
    public func byteRange(ofTensor name: String, rows: Range<Int>? = nil) throws -> Range<Int> {
        let t = try tensor(named: name)
        guard let rows else { return t.begin ..< t.end }
        guard let rowCount = t.shape.first else {
            throw ReaderError.outOfRange("tensor \(name) is a scalar: it has no rows")
        }
        guard rows.lowerBound >= 0, rows.upperBound <= rowCount else {
            throw ReaderError.outOfRange("rows \(rows.lowerBound)..<\(rows.upperBound) are outside tensor \(name), which has \(rowCount) rows")
        }
        let rowBytes = rowCount == 0 ? 0 : (t.end - t.begin) / rowCount
        return (t.begin + rows.lowerBound * rowBytes) ..< (t.begin + rows.upperBound * rowBytes)
    }

    /// The raw (little-endian, as stored) bytes of tensor `name`, or of its rows `rows`.
    public func tensorBytes(named name: String, rows: Range<Int>? = nil) throws -> [UInt8] {
        try read(try byteRange(ofTensor: name, rows: rows))
    }
}

// MARK: - byte ranges

/// A byte range as written on the command line (`tpstore cat --range`) and in an HTTP `Range:
/// bytes=` header: `START-END` (END inclusive), `START-` (to the end) or `-SUFFIX` (the last SUFFIX
/// bytes).
public enum ByteRange: Equatable, Sendable {
    case closed(first: Int, last: Int)
    case from(first: Int)
    case suffix(length: Int)

    /// Parses `START-END`, `START-` or `-SUFFIX` (decimal digits only).
    public init(parsing text: some StringProtocol) throws {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard let dash = s.firstIndex(of: "-") else {
            throw ReaderError.malformedRange("malformed range \"\(Names.printable(String(s)))\": expected START-END, START- or -SUFFIX")
        }
        let left = s[..<dash], right = s[s.index(after: dash)...]
        func number(_ part: Substring) -> Int? {
            guard !part.isEmpty, part.count <= 18, part.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int(part)
        }
        switch (left.isEmpty, right.isEmpty) {
        case (false, false):
            guard let a = number(left), let b = number(right), a <= b else {
                throw ReaderError.malformedRange("malformed range \"\(Names.printable(String(s)))\": expected START-END with START ≤ END")
            }
            self = .closed(first: a, last: b)
        case (false, true):
            guard let a = number(left) else { throw ReaderError.malformedRange("malformed range \"\(Names.printable(String(s)))\"") }
            self = .from(first: a)
        case (true, false):
            guard let n = number(right) else { throw ReaderError.malformedRange("malformed range \"\(Names.printable(String(s)))\"") }
            self = .suffix(length: n)
        case (true, true):
            throw ReaderError.malformedRange("malformed range \"-\": expected START-END, START- or -SUFFIX")
        }
    }

    /// The half-open range this denotes in a file of `size` bytes, or nil when no byte of the file
    /// is selected (HTTP's "unsatisfiable"). With `clampEnd` (HTTP), an END past the file's end means
    /// "to the end"; without it (the CLI) it is out of range and also gives nil.
    public func resolve(size: Int, clampEnd: Bool) -> Range<Int>? {
        switch self {
        case let .closed(first, last):
            guard first < size else { return nil }
            if last >= size { return clampEnd ? first ..< size : nil }
            return first ..< last + 1
        case let .from(first):
            return first < size ? first ..< size : nil
        case let .suffix(length):
            return length > 0 && size > 0 ? max(0, size - length) ..< size : nil
        }
    }

    public var text: String {
        switch self {
        case let .closed(a, b): return "\(a)-\(b)"
        case let .from(a): return "\(a)-"
        case let .suffix(n): return "-\(n)"
        }
    }
}

// MARK: - internals

extension StoreReader {
    func countHits(_ n: Int) { if n > 0 { counters.add(hits: n) } }
}

/// Decodes in progress, so two threads needing the same chunk decode it once: the second waits.
private final class InFlightDecodes: @unchecked Sendable {
    private final class Flight {
        var result: Result<[UInt8], Error>?
    }

    // Safe: `running` and every `Flight.result` are touched only with `condition` locked.
    private let condition = NSCondition()
    private var running: [ChunkID: Flight] = [:]

    func run(_ key: ChunkID, _ body: () throws -> [UInt8]) throws -> [UInt8] {
        condition.lock()
        if let flight = running[key] {
            var result = flight.result
            while result == nil {
                condition.wait()
                result = flight.result
            }
            condition.unlock()
            // Safe: the loop above ends only once the result is set.
            return try result!.get()
        }
        let flight = Flight()
        running[key] = flight
        condition.unlock()
        let result = Result { try body() }
        condition.lock()
        flight.result = result
        running[key] = nil
        condition.broadcast()
        condition.unlock()
        return try result.get()
    }

    func isRunning(_ key: ChunkID) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return running[key] != nil
    }
}

/// Caps the number of background decodes running at once.
private final class Prefetcher: @unchecked Sendable {
    // Safe: `running` is touched only inside `lock`.
    private let lock = NSLock()
    private var running = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func reserve() -> Bool {
        lock.withLock {
            guard running < limit else { return false }
            running += 1
            return true
        }
    }

    func release() { lock.withLock { running -= 1 } }
}

/// Where recent reads of one file ended, to recognise a read that continues one of them. Several
/// sequential readers of one file (HTTP clients streaming it) are told apart by their end offsets.
private final class StreamTracker: @unchecked Sendable {
    // Safe: `ends` is touched only inside `lock`.
    private let lock = NSLock()
    private var ends: [Int] = []
    private static let remembered = 16

    /// Records a read of [start, end); true when it starts where a remembered read ended.
    func record(start: Int, end: Int) -> Bool {
        lock.withLock {
            if let i = ends.firstIndex(of: start) {
                ends.remove(at: i)
                ends.append(end)
                return true
            }
            if ends.count == StreamTracker.remembered { ends.removeFirst() }
            ends.append(end)
            return false
        }
    }
}

private final class Counters: @unchecked Sendable {
    // Safe: `value` is touched only inside `lock`.
    private let lock = NSLock()
    private var value = StoreReader.Statistics()

    func add(hits: Int = 0, decodes: Int = 0, prefetches: Int = 0) {
        lock.withLock {
            value.cacheHits += hits
            value.decodes += decodes
            value.prefetches += prefetches
        }
    }

    func snapshot() -> StoreReader.Statistics { lock.withLock { value } }
}

/// Recently opened file readers by catalog file row (and content hash, in case a row id is reused
/// after a removal), so repeated opens skip the catalog's chunk list and keep sequential state.
private final class FileReaderCache: @unchecked Sendable {
    // Safe: `entries` is touched only inside `lock`.
    private let lock = NSLock()
    private var entries: [Int64: FileReader] = [:]
    private var order: [Int64] = []
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func get(_ file: FileRecord, revision: RevisionRecord) -> FileReader? {
        lock.withLock {
            guard let reader = entries[file.rowID], reader.file == file, reader.revision == revision else { return nil }
            return reader
        }
    }

    func removeAll() {
        lock.withLock {
            entries.removeAll()
            order.removeAll()
        }
    }

    func put(_ reader: FileReader) {
        lock.withLock {
            let key = reader.file.rowID
            if entries.updateValue(reader, forKey: key) == nil { order.append(key) }
            while order.count > capacity { entries[order.removeFirst()] = nil }
        }
    }
}


/// A file reader's chunk locations and the location generation they were resolved at.
private final class Layout: @unchecked Sendable {
    // Safe: both fields are touched only inside `lock`.
    private let lock = NSLock()
    private var generation: Int64
    private var current: [ChunkLocation]

    init(generation: Int64, locations: [ChunkLocation]) {
        self.generation = generation
        current = locations
    }

    /// The locations when they were resolved at `generation`; nil when they are out of date.
    func locations(at generation: Int64) -> [ChunkLocation]? {
        lock.withLock { self.generation == generation ? current : nil }
    }

    func update(generation: Int64, locations: [ChunkLocation]) {
        lock.withLock {
            self.generation = generation
            current = locations
        }
    }
}

/// The last location generation a store reader saw.
private final class GenerationWatch: @unchecked Sendable {
    // Safe: `seen` is touched only inside `lock`.
    private let lock = NSLock()
    private var seen: Int64?

    /// Records `generation`; true when it differs from the one seen before (not on the first look).
    func advance(to generation: Int64) -> Bool {
        lock.withLock {
            defer { seen = generation }
            return seen.map { $0 != generation } ?? false
        }
    }
}

extension StoreError {
    /// An error a read through stale locations gives when gc moved the frame meanwhile: the
    /// frame is not where the location says (a different or no frame: `corrupt`), the pack is
    /// gone (`notFound`, or `io` from the file system). Worth one look-up and read again.
    var mayBeAMovedFrame: Bool {
        switch self {
        case .corrupt, .notFound, .io: return true
        default: return false
        }
    }
}
