import CZstd

/// zstd through its stable API: one-shot frames, and frames that use a reference prefix
/// (the base chunk) as a dictionary of earlier bytes.
public enum Zstd {
    /// Level 3 is zstd's default: within 2% of level 9's ratio on weight planes at 4x the speed.
    public static let defaultLevel: Int32 = 3
    /// The decoder refuses windows larger than this (zstd's own default limit is 27).
    static let maxWindowLog: Int32 = 27

    public static func compress(_ source: UnsafeRawBufferPointer, level: Int32 = defaultLevel) -> [UInt8] {
        compress(source, prefix: nil, level: level)
    }

    /// Compresses `source`; with `prefix`, back-references into the prefix are allowed and the
    /// decoder must be given the same prefix.
    public static func compress(_ source: UnsafeRawBufferPointer, prefix: UnsafeRawBufferPointer?, level: Int32 = defaultLevel) -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else { fatalError("zstd: out of memory creating a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        if let prefix, prefix.count > 0 {
            // The window must span prefix + input, or matches into the prefix are not found.
            let span = max(prefix.count + source.count, 1)
            let windowLog = min(max(Int32(Int.bitWidth - (span - 1).leadingZeroBitCount), 10), maxWindowLog)
            ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, windowLog)
            ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1)
            ZSTD_CCtx_refPrefix(cctx, prefix.baseAddress, prefix.count)
        }
        let bound = ZSTD_compressBound(source.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            ZSTD_compress2(cctx, dst.baseAddress, dst.count, source.baseAddress, source.count)
        }
        // Compression into a buffer of compressBound size cannot fail except on allocation failure.
        precondition(ZSTD_isError(written) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        out.removeSubrange(written...)
        return out
    }

    /// Decompresses a frame that must expand to exactly `output.count` bytes.
    public static func decompress(_ source: UnsafeRawBufferPointer, prefix: UnsafeRawBufferPointer? = nil,
                                  into output: UnsafeMutableRawBufferPointer) throws {
        guard let dctx = ZSTD_createDCtx() else { throw CodecError("zstd: out of memory creating a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, maxWindowLog)
        if let prefix, prefix.count > 0 {
            ZSTD_DCtx_refPrefix(dctx, prefix.baseAddress, prefix.count)
        }
        // Empty outputs still need a valid pointer for zstd.
        var scratch: UInt8 = 0
        let written = withUnsafeMutablePointer(to: &scratch) { fallback in
            ZSTD_decompressDCtx(dctx, output.baseAddress ?? UnsafeMutableRawPointer(fallback), output.count,
                                source.baseAddress, source.count)
        }
        if ZSTD_isError(written) != 0 {
            throw CodecError("zstd: \(String(cString: ZSTD_getErrorName(written)))")
        }
        guard written == output.count else {
            throw CodecError("zstd frame expands to \(written) bytes, expected \(output.count)")
        }
    }
}
