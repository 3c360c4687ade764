import Foundation
import TenPakChunkStore
import TenPakFormat

/// Reads the frames of many chunks, and of their delta bases, in few large reads: frames that lie
/// close together in one pack (a file's chunks are written in order, and so are its base's) are
/// read as one span. On an object store that is one ranged GET per span instead of one per frame;
/// locally, fewer `pread`s.
public struct FrameBatch {
    /// A contiguous byte range of one pack and the frames inside it.
    struct Span: Equatable {
        let pack: String
        let offset: Int
        let length: Int
        let frames: [ChunkLocation]
    }

    /// Two frames closer than this are read together (the bytes between are read and dropped).
    static let maxGap = 256 << 10
    /// No span is longer than this, so a batch's memory stays bounded by the frames it needs.
    static let maxSpan = 16 << 20

    /// Groups frames into spans: by pack, in offset order, merged while the gap is at most `maxGap`
    /// and the span at most `maxSpan` (a longer frame is a span of its own).
    static func plan(_ locations: [ChunkLocation], maxGap: Int = maxGap, maxSpan: Int = maxSpan) -> [Span] {
        var spans: [Span] = []
        let byPack = Dictionary(grouping: locations, by: \.pack)
        for pack in byPack.keys.sorted() {
            var seen = Set<Int64>()
            // Safe: every key of `byPack` has a value.
            let sorted = byPack[pack]!.filter { seen.insert($0.rowID).inserted }.sorted { $0.frameOffset < $1.frameOffset }
            var current: [ChunkLocation] = []
            var start = 0, end = 0
            for location in sorted {
                let locationEnd = location.frameOffset + location.frameLength
                if !current.isEmpty, location.frameOffset - end <= maxGap, max(end, locationEnd) - start <= maxSpan {
                    current.append(location)
                    end = max(end, locationEnd)
                    continue
                }
                if !current.isEmpty { spans.append(Span(pack: pack, offset: start, length: end - start, frames: current)) }
                current = [location]
                start = location.frameOffset
                end = locationEnd
            }
            if !current.isEmpty { spans.append(Span(pack: pack, offset: start, length: end - start, frames: current)) }
        }
        return spans
    }

    /// The frames of `locations` and (with `bases`) of their bases, transitively, and the bases'
    /// locations, skipping chunks `cache` already holds. Spans are read in parallel.
    /// With `buffers`, spans are read into arrays from that pool (give `spans` of the result back
    /// when its frames are no longer needed).
    public static func prefetch(_ locations: [ChunkLocation], store: ChunkStore, cache: ChunkCache? = nil,
                                bases: Bool = true, buffers: SpanBuffers? = nil) throws -> PrefetchedFrames {
        var result = PrefetchedFrames()
        var wanted = locations.filter { cache?.contains($0.id) != true }
        var all = wanted
        // Bases, level by level (at most maxDeltaDepth levels), one catalog query per level.
        for _ in 0 ..< (bases ? ChunkStore.maxDeltaDepth : 0) {
            let missing = Set(wanted.compactMap(\.baseRowID)).filter { result.locations[$0] == nil }
            guard !missing.isEmpty else { break }
            let found = try store.catalog.chunks(rowIDs: Array(missing))
            result.locations.merge(found) { first, _ in first }
            wanted = found.values.filter { cache?.contains($0.id) != true }
            all += wanted
        }
        let spans = plan(all)
        let read = try parallelMap(spans.count) { i in
            let span = spans[i]
            guard let buffers else { return try store.packs.read(pack: span.pack, offset: span.offset, length: span.length) }
            var bytes = buffers.take(span.length)
            try bytes.withUnsafeMutableBytes {
                try store.packs.read(pack: span.pack, offset: span.offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0 ..< span.length]))
            }
            return bytes
        }
        for (span, bytes) in zip(spans, read) {
            guard bytes.count >= span.length, buffers != nil || bytes.count == span.length else {
                throw StoreError.corrupt("pack \(span.pack): \(bytes.count) bytes at \(span.offset), expected \(span.length)")
            }
            for frame in span.frames {
                let from = frame.frameOffset - span.offset
                result.frames[frame.rowID] = bytes[from ..< from + frame.frameLength]
            }
        }
        if buffers != nil { result.spans = read }
        return result
    }
}

/// Arrays for span reads, reused from one window of a stream to the next. A fresh array's pages
/// fault in (zeroed by the kernel) before the read fills them, and glibc does not hand a freed
/// span's memory to the next window's read (another thread's arena, another size): measured on a
/// get of the corpus F32 fine-tune, the frame reads faulted in as many bytes as the file's frames.
/// Arrays go back by `give` and are handed out again by `take`; one still referenced elsewhere
/// (a frame slice kept past its window) is copied on write, never overwritten, so give them back
/// once their frames are released.
public final class SpanBuffers: @unchecked Sendable {
    // Safe: `free` is only touched inside `lock`.
    private let lock = NSLock()
    private var free: [[UInt8]] = []
    /// At most this many arrays are kept (more than a window's spans in use at once, and the next
    /// window's read ahead).
    private let limit: Int

    public init(limit: Int = 16) { self.limit = limit }

    /// An array of at least `count` bytes: the smallest free one that fits, else a new one rounded
    /// up to a MiB so later, slightly longer spans fit it too. Its bytes are unspecified.
    func take(_ count: Int) -> [UInt8] {
        lock.lock()
        let fit = free.indices.filter { free[$0].count >= count }.min { free[$0].count < free[$1].count }
        let found = fit.map { free.remove(at: $0) }
        lock.unlock()
        if let found { return found }
        let rounded = (count + (1 << 20) - 1) & ~((1 << 20) - 1)
        // Uninitialized: a span read writes the bytes it uses, and the rest is never read.
        return [UInt8](unsafeUninitializedCapacity: rounded) { _, initialized in initialized = rounded }
    }

    /// Takes the arrays out of `arrays` (left empty, so that the pool holds their only reference).
    func give(_ arrays: inout [[UInt8]]) {
        lock.lock()
        defer { lock.unlock() }
        free += arrays
        arrays.removeAll()
        // The largest are the most reusable; drop the smallest past the limit.
        if free.count > limit {
            free.sort { $0.count > $1.count }
            free.removeLast(free.count - limit)
        }
    }
}
