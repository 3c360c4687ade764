import TenPakChunkStore
import TenPakFormat

extension TensorRecord {
    /// The tensor table of a safetensors file of `fileSize` bytes, from its header: `nextChunk`
    /// gives the file's chunks' raw bytes in order (nil: no more), and is called only until the
    /// header is covered. A header that does not parse, or chunks that end before it does, is a
    /// `FormatError`. Used where a file's tensors are not at hand: repair, and a transferred revision.
    static func fromSafetensorsHeader(fileSize: Int, nextChunk: () throws -> [UInt8]?) throws -> [TensorRecord] {
        var prefix: [UInt8] = []
        var needed = 8
        while prefix.count < needed, let raw = try nextChunk() {
            prefix += raw
            if needed == 8, prefix.count >= 8 {
                needed = 8 + (try prefix.withUnsafeBytes { try SafetensorsHeader.headerLength(prefix: $0, fileSize: fileSize) })
            }
        }
        guard prefix.count >= needed, needed > 8 else { throw FormatError.invalid("safetensors header not recoverable") }
        let header = try Array(prefix[8 ..< needed]).withUnsafeBytes { try SafetensorsHeader.parse(json: $0, fileSize: fileSize) }
        return header.tensors.map {
            TensorRecord(name: $0.name, dtype: $0.dtype.name, shape: $0.shape, begin: header.dataStart + $0.dataRange.lowerBound,
                         end: header.dataStart + $0.dataRange.upperBound)
        }
    }
}
