/// Content-defined chunking with a gear rolling hash (as in FastCDC and xet-core), for files that
/// are not safetensors: a small edit moves at most the boundaries next to it, so the rest dedupes.
///
/// A boundary falls after byte i when (h & mask) == 0, where h = (h << 1) + gear[byte] over the
/// bytes since the chunk start; never before `minSize` bytes, always at `maxSize`. With a 16-bit
/// mask the average chunk is about minSize + 64 KiB.
public struct GearChunker: Sendable {
    public let minSize: Int
    public let maxSize: Int
    let mask: UInt64

    public static let standard = GearChunker(minSize: 16 << 10, averageBits: 16, maxSize: 256 << 10)

    public init(minSize: Int, averageBits: Int, maxSize: Int) {
        precondition(minSize > 0 && maxSize >= minSize && (1 ... 30).contains(averageBits))
        self.minSize = minSize
        self.maxSize = maxSize
        // High bits of the hash see the most bytes; test those.
        mask = ((1 << UInt64(averageBits)) - 1) << (64 - UInt64(averageBits))
    }

    /// 256 fixed pseudo-random values (SplitMix64 from seed 0x7E9A_4B00): part of the format,
    /// since changing them moves every boundary.
    static let gear: [UInt64] = {
        var state: UInt64 = 0x7E9A_4B00
        return (0 ..< 256).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }()

    /// Length of the chunk that starts at `bytes[0]`; `atEnd` says no bytes follow `bytes`.
    /// Returns nil when `bytes` is too short to decide (fewer than `maxSize` bytes and not at end).
    public func cut(_ bytes: UnsafeRawBufferPointer, atEnd: Bool) -> Int? {
        if bytes.count <= minSize { return atEnd ? bytes.count : nil }
        let limit = min(bytes.count, maxSize)
        var h: UInt64 = 0
        let mask = self.mask
        return GearChunker.gear.withUnsafeBufferPointer { gear in
            for i in minSize ..< limit {
                h = (h << 1) &+ gear[Int(bytes[i])]
                if h & mask == 0 { return i + 1 }
            }
            if limit == maxSize { return maxSize }
            return atEnd ? bytes.count : nil
        }
    }
}
