#if canImport(Glibc)
import CMalloc
#endif

/// glibc malloc's thresholds, fixed for the `tpstore` process (SPEC 19.7, "Allocator").
///
/// A transfer or a get decodes chunk after chunk into fresh buffers of about 1 MiB, a bundle's
/// worth alive at once, then frees them. With glibc's defaults the freed memory goes back to the
/// kernel (the heap top is trimmed past a threshold that tracks the largest freed block), so the
/// next bundle's buffers fault in again, a page at a time, zeroed by the kernel: measured on a push
/// server, page faults under the copies into those buffers were about a fifth of its CPU time.
/// Fixed thresholds keep up to `trimThreshold` of freed memory per arena for reuse: a pull or push
/// of the corpus F32 fine-tune 5–10% faster, peak memory of a pull unchanged (SPEC 19.7).
///
/// An embedder of the library chooses its own allocator policy: this is the executable's.
enum AllocatorPolicy {
    /// Blocks from this size up are mapped on their own (and unmapped when freed); below it they
    /// come from the arenas. 32 MiB is glibc's own ceiling for its moving threshold.
    static let mmapThreshold: Int32 = 32 << 20
    /// Free memory at the top of an arena kept rather than returned to the kernel: more than a
    /// bundle's decoded chunks (8 MiB of frames, a few tens of MiB decoded).
    static let trimThreshold: Int32 = 64 << 20

    /// Applies the thresholds, unless the environment sets glibc's malloc tunables itself (an
    /// operator's choice wins). Best effort: a refused value leaves glibc's default.
    static func apply(environment: [String: String]) {
        #if canImport(Glibc)
        if let tunables = environment["GLIBC_TUNABLES"], tunables.contains("glibc.malloc.") { return }
        _ = mallopt(M_MMAP_THRESHOLD, mmapThreshold)
        _ = mallopt(M_TRIM_THRESHOLD, trimThreshold)
        #endif
    }
}
