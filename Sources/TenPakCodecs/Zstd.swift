import CZstd
import Foundation

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
        compressorPool.with { cctx in
            // Parameters are sticky on a reused context: reset them all, then set what this call needs.
            ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters)
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
            var written = 0
            let out = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
                written = ZSTD_compress2(cctx, buffer.baseAddress, bound, source.baseAddress, source.count)
                count = ZSTD_isError(written) != 0 ? 0 : written
            }
            // Compression into a buffer of compressBound size cannot fail except on allocation failure.
            precondition(ZSTD_isError(written) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
            return out
        }
    }

    /// Decompresses a frame that must expand to exactly `output.count` bytes.
    public static func decompress(_ source: UnsafeRawBufferPointer, prefix: UnsafeRawBufferPointer? = nil,
                                  into output: UnsafeMutableRawBufferPointer) throws {
        let written: Int = decompressorPool.with { dctx in
            ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters)
            ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, maxWindowLog)
            if let prefix, prefix.count > 0 {
                ZSTD_DCtx_refPrefix(dctx, prefix.baseAddress, prefix.count)
            }
            // Empty outputs still need a valid pointer for zstd.
            var scratch: UInt8 = 0
            return withUnsafeMutablePointer(to: &scratch) { fallback in
                ZSTD_decompressDCtx(dctx, output.baseAddress ?? UnsafeMutableRawPointer(fallback), output.count,
                                    source.baseAddress, source.count)
            }
        }
        if ZSTD_isError(written) != 0 {
            throw CodecError("zstd: \(String(cString: ZSTD_getErrorName(written)))")
        }
        guard written == output.count else {
            throw CodecError("zstd frame expands to \(written) bytes, expected \(output.count)")
        }
    }
}

/// Reusable zstd contexts. Creating a compression context allocates and clears several MiB of
/// tables; a chunk store compresses thousands of 256 KiB planes, so contexts are pooled.
final class ContextPool<Context>: @unchecked Sendable {
    // Safe: `free` is only touched inside `lock`; a context is used by one thread at a time.
    private let lock = NSLock()
    private var free: [Context] = []
    private let make: () -> Context?
    private let destroy: (Context) -> Void
    private let limit = 16

    init(make: @escaping () -> Context?, destroy: @escaping (Context) -> Void) {
        self.make = make
        self.destroy = destroy
    }

    func with<T>(_ body: (Context) -> T) -> T {
        lock.lock()
        let pooled = free.popLast()
        lock.unlock()
        guard let context = pooled ?? make() else { fatalError("zstd: out of memory creating a context") }
        let result = body(context)
        lock.lock()
        let keep = free.count < limit
        if keep { free.append(context) }
        lock.unlock()
        if !keep { destroy(context) }
        return result
    }
}

private let compressorPool = ContextPool<OpaquePointer>(make: { ZSTD_createCCtx() }, destroy: { ZSTD_freeCCtx($0) })
private let decompressorPool = ContextPool<OpaquePointer>(make: { ZSTD_createDCtx() }, destroy: { ZSTD_freeDCtx($0) })
