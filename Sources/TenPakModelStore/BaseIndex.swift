import TenPakChunkStore
import TenPakFormat

/// A base revision's tensors and their chunks, so a fine-tune's chunk finds the base chunk that
/// covers the same elements of the same tensor.
public struct BaseIndex: Sendable {
    public struct Tensor: Sendable {
        public let dtype: String
        public let shape: [Int]
        /// Chunk k covers elements [k·n, (k+1)·n) with n = tensorChunkBytes / element size.
        public let chunks: [ChunkLocation]
        public var bytes: Int { chunks.reduce(0) { $0 + $1.rawLength } }
    }

    public let revision: RevisionRecord
    public let tensors: [String: Tensor]

    public static func load(_ store: ChunkStore, revision: RevisionRecord) throws -> BaseIndex {
        var tensors: [String: Tensor] = [:]
        for file in try store.catalog.files(revision: revision) where file.kind == .safetensors {
            let chunks = try store.catalog.fileChunks(file: file)
            var byOffset: [Int: Int] = [:]
            for (i, c) in chunks.enumerated() { byOffset[c.offset] = i }
            for t in try store.catalog.tensors(file: file) where tensors[t.name] == nil {
                // Tensor chunks are cut from the tensor's start; anything else (an older chunk size)
                // simply does not pair.
                var list: [ChunkLocation] = []
                var offset = t.begin
                while offset < t.end, let i = byOffset[offset] {
                    list.append(chunks[i].location)
                    offset += chunks[i].location.rawLength
                }
                if offset == t.end { tensors[t.name] = Tensor(dtype: t.dtype, shape: t.shape, chunks: list) }
            }
        }
        return BaseIndex(revision: revision, tensors: tensors)
    }

    /// The base tensor a fine-tune tensor is delta-coded against: same name and dtype, and the same
    /// shape or the same shape but for the leading dimension (rows appended or removed; chunks of
    /// the common prefix pair). A dtype change gets no delta.
    public func pair(name: String, dtype: String, shape: [Int]) -> Tensor? {
        guard let base = tensors[name], base.dtype == dtype else { return nil }
        if base.shape == shape { return base }
        if base.shape.count == shape.count, shape.count >= 1, base.shape.dropFirst() == shape.dropFirst() { return base }
        return nil
    }
}
