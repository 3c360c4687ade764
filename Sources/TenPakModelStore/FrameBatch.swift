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
    public static func prefetch(_ locations: [ChunkLocation], store: ChunkStore, cache: ChunkCache? = nil,
                                bases: Bool = true) throws -> PrefetchedFrames {
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
            try store.packs.read(pack: spans[i].pack, offset: spans[i].offset, length: spans[i].length)
        }
        for (span, bytes) in zip(spans, read) {
            guard bytes.count == span.length else {
                throw StoreError.corrupt("pack \(span.pack): \(bytes.count) bytes at \(span.offset), expected \(span.length)")
            }
            for frame in span.frames {
                let from = frame.frameOffset - span.offset
                result.frames[frame.rowID] = bytes[from ..< from + frame.frameLength]
            }
        }
        return result
    }
}
