import TenPakChunkStore
import TenPakCodecs
import TenPakFormat

/// Where a file's chunks start and end, and what each holds.
///
/// A safetensors file: its header (length prefix + JSON) cut by content, then each tensor's data
/// cut into `tensorChunkBytes` pieces counted from the tensor's own start, so a tensor yields the
/// same chunks wherever it sits. Anything else, and a safetensors file that fails validation, is
/// cut by content (`GearChunker`).
public struct ChunkPlan: Sendable {
    public struct Piece: Sendable {
        public let offset: Int
        public let length: Int
        public let element: ElementType
        /// For tensor data: the tensor's index in `tensors` and this piece's index within it.
        public let tensor: Int?
        public let indexInTensor: Int
    }

    public let size: Int
    public let kind: FileKind
    public let pieces: [Piece]
    /// Tensors with absolute offsets (safetensors files only).
    public let tensors: [TensorRecord]
    public let dtypes: [DType]
    /// Why a file named *.safetensors was stored opaque, if it was.
    public let warning: String?
    /// The source file as it was when planned; the put checks it again after its last read and
    /// refuses a file that was written to meanwhile (its bytes would be a mix of two versions).
    public var sourceIdentity: FileIdentity?

    /// 1 MiB: a whole number of elements of every dtype; small enough that a random 4 KiB read
    /// decodes little and a fine-tune's partly changed tensor dedupes in large part; large enough
    /// that per-chunk costs (a 84–132 byte frame header, a ~150 byte catalog row, zstd's per-frame
    /// overhead) stay under 0.1%.
    public static let tensorChunkBytes = 1 << 20

    /// Plans `file`. Reads the safetensors header, or the whole file once for content-defined cuts.
    public static func make(file: OpenFile, size: Int, looksLikeSafetensors: Bool,
                            chunker: GearChunker = .standard) throws -> ChunkPlan {
        var warning: String?
        if looksLikeSafetensors {
            do {
                return try safetensors(file: file, size: size, chunker: chunker)
            } catch let error as FormatError {
                warning = "not a valid safetensors file (\(error)); stored as an opaque file, bit-exact"
            }
        }
        let pieces = try contentDefined(file: file, range: 0 ..< size, chunker: chunker)
        return ChunkPlan(size: size, kind: .opaque, pieces: pieces, tensors: [], dtypes: [], warning: warning)
    }

    /// True when the file starts like a safetensors file (a plausible length prefix, then '{'), so
    /// that objects arriving without a name (git-lfs uploads) are chunked along their tensors too.
    public static func sniffSafetensors(file: OpenFile, size: Int) throws -> Bool {
        guard size >= 10 else { return false }
        let prefix = try file.read(count: 9, at: 0)
        let length = prefix.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        return length >= 2 && length <= UInt64(SafetensorsHeader.maxHeaderLength) && 8 + length <= UInt64(size) && prefix[8] == UInt8(ascii: "{")
    }

    static func safetensors(file: OpenFile, size: Int, chunker: GearChunker) throws -> ChunkPlan {
        guard size >= 8 else { throw FormatError.invalid("file is \(size) bytes, shorter than the 8-byte length prefix") }
        let prefix = try file.read(count: 8, at: 0)
        let headerLength = try prefix.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: size) }
        let json = try file.read(count: headerLength, at: 8)
        let header = try json.withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: size) }
        var pieces = try contentDefined(file: file, range: 0 ..< header.dataStart, chunker: chunker)
        var records: [TensorRecord] = []
        for (index, tensor) in header.tensors.enumerated() {
            let begin = header.dataStart + tensor.dataRange.lowerBound
            let end = header.dataStart + tensor.dataRange.upperBound
            records.append(TensorRecord(name: tensor.name, dtype: tensor.dtype.name, shape: tensor.shape, begin: begin, end: end))
            var offset = begin
            var k = 0
            while offset < end {
                let length = min(tensorChunkBytes, end - offset)
                pieces.append(Piece(offset: offset, length: length, element: ElementType(tensor.dtype), tensor: index, indexInTensor: k))
                offset += length
                k += 1
            }
        }
        return ChunkPlan(size: size, kind: .safetensors, pieces: pieces, tensors: records, dtypes: header.tensors.map(\.dtype), warning: nil)
    }

    /// Content-defined pieces over `range` of the file, read in bounded windows.
    static func contentDefined(file: OpenFile, range: Range<Int>, chunker: GearChunker) throws -> [Piece] {
        var pieces: [Piece] = []
        // No bigger than the range: a safetensors header is a few KiB, and a zero-filled window of
        // several MiB for it cost a page fault per 4 KiB before the put could start.
        let windowSize = min(max(chunker.maxSize * 8, 4 << 20), range.count)
        var window = [UInt8](repeating: 0, count: windowSize)
        var windowStart = range.lowerBound
        var filled = 0
        var cursor = range.lowerBound
        while cursor < range.upperBound {
            // Keep at least maxSize bytes ahead of the cursor in the window, or everything left.
            if cursor - windowStart + chunker.maxSize > filled, windowStart + filled < range.upperBound {
                let keep = filled - (cursor - windowStart)
                window.withUnsafeMutableBytes { w in
                    if keep > 0 { w.baseAddress!.copyMemory(from: w.baseAddress! + (cursor - windowStart), byteCount: keep) }
                }
                windowStart = cursor
                filled = keep
                let want = min(windowSize - filled, range.upperBound - (windowStart + filled))
                try window.withUnsafeMutableBytes { w in
                    try file.read(into: UnsafeMutableRawBufferPointer(rebasing: w[filled ..< filled + want]), at: windowStart + filled)
                }
                filled += want
            }
            let available = filled - (cursor - windowStart)
            let atEnd = windowStart + filled == range.upperBound
            let length = window.withUnsafeBytes { w in
                chunker.cut(UnsafeRawBufferPointer(rebasing: w[(cursor - windowStart) ..< (cursor - windowStart + available)]), atEnd: atEnd)
            }
            // Safe: the window holds maxSize bytes past the cursor or reaches the end, so cut decides.
            let cut = length ?? min(available, chunker.maxSize)
            pieces.append(Piece(offset: cursor, length: cut, element: .bytes, tensor: nil, indexInTensor: 0))
            cursor += cut
        }
        return pieces
    }
}
