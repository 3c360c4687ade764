/// Byte planes and bit-pattern deltas: transforms that line up bytes of equal meaning so that an
/// entropy coder sees, e.g., all exponent bytes of a tensor together.
public enum BytePlanes {
    /// Splits `source` (n elements of `width` bytes, then `count % width` tail bytes) into planes:
    /// plane k holds byte k (little-endian order) of every element; the tail follows the last plane.
    public static func split(_ source: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer) {
        precondition(output.count == source.count)
        let n = source.count / width
        guard let src = source.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        switch width {
        case 1:
            dst.update(from: src, count: source.count)
            return
        case 2:
            // 16 elements at a time: the low bytes of 16 UInt16 lanes are plane 0, the high bytes
            // plane 1 (a narrowing conversion: SSE2 pack instructions), then the rest one by one.
            var i = 0
            while i &+ 16 <= n {
                // Safe: elements i..<i+16 are inside the source (2n bytes) and each plane (n bytes).
                let v = UnsafeRawPointer(src + 2 &* i).loadUnaligned(as: SIMD16<UInt16>.self)
                UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(dst + (n &+ i)).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> 8), as: SIMD16<UInt8>.self)
                i &+= 16
            }
            while i < n {
                dst[i] = src[2 * i]
                dst[n + i] = src[2 * i + 1]
                i += 1
            }
        case 4:
            var i = 0
            while i &+ 16 <= n {
                // Safe: elements i..<i+16 are inside the source (4n bytes) and each plane (n bytes).
                let v = UnsafeRawPointer(src + 4 &* i).loadUnaligned(as: SIMD16<UInt32>.self)
                UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(dst + (n &+ i)).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> 8), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(dst + (2 &* n &+ i)).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> 16), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(dst + (3 &* n &+ i)).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> 24), as: SIMD16<UInt8>.self)
                i &+= 16
            }
            while i < n {
                dst[i] = src[4 * i]
                dst[n + i] = src[4 * i + 1]
                dst[2 * n + i] = src[4 * i + 2]
                dst[3 * n + i] = src[4 * i + 3]
                i += 1
            }
        default:
            for i in 0 ..< n {
                for k in 0 ..< width { dst[k * n + i] = src[width * i + k] }
            }
        }
        for t in n * width ..< source.count { dst[t] = src[t] }
    }

    /// The inverse of `split`. With `rotatingRight`, each whole element of 2 or 4 bytes is also
    /// rotated right by one bit as it is written (float-planes' sign rotation undone in the same
    /// pass, not in a second one over the output); tail bytes are not.
    public static func join(_ planes: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer,
                            rotatingRight: Bool = false) {
        // Two copies of the loops, each with a constant `rotating`: no test inside them.
        if rotatingRight {
            join(planes, width: width, into: output, rotating: true)
        } else {
            join(planes, width: width, into: output, rotating: false)
        }
    }

    // The rotations read the joined bytes as little-endian lanes (TenPak's targets, x86 and ARM, are).
    @inline(__always) private static func rotateRight(_ v: UInt16, _ on: Bool) -> UInt16 { on ? (v &>> 1) | (v &<< 15) : v }
    @inline(__always) private static func rotateRight(_ v: UInt32, _ on: Bool) -> UInt32 { on ? (v &>> 1) | (v &<< 31) : v }
    /// On pairs of 16-bit lanes as 32-bit ones, masking off the bit each shift carries across the
    /// halves: x86 before AVX-512 has no 16-bit shift by a vector, and Swift's SIMD shift by a
    /// scalar came out as one (BF16 float-planes decoding 1,650 -> 1,400 MB/s with it, 1,850 so).
    @inline(__always) private static func rotateRight(_ v: SIMD16<UInt16>, _ on: Bool) -> SIMD16<UInt16> {
        guard on else { return v }
        let x = unsafeBitCast(v, to: SIMD8<UInt32>.self)
        return unsafeBitCast(((x &>> 1) & 0x7FFF_7FFF) | ((x &<< 15) & 0x8000_8000), to: SIMD16<UInt16>.self)
    }
    @inline(__always) private static func rotateRight(_ v: SIMD16<UInt32>, _ on: Bool) -> SIMD16<UInt32> { on ? (v &>> 1) | (v &<< 31) : v }

    @inline(__always)
    private static func join(_ planes: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer, rotating: Bool) {
        precondition(output.count == planes.count)
        let n = planes.count / width
        guard let src = planes.baseAddress?.assumingMemoryBound(to: UInt8.self),
              let dst = output.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        switch width {
        case 1:
            dst.update(from: src, count: planes.count)
            return
        case 2:
            // 16 elements at a time (SSE2 unpack instructions interleave the two planes).
            var i = 0
            while i &+ 16 <= n {
                // Safe: elements i..<i+16 are inside each plane (n bytes) and the output (2n bytes).
                var v = SIMD32<UInt8>()
                v.evenHalf = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt8>.self)
                v.oddHalf = UnsafeRawPointer(src + (n &+ i)).loadUnaligned(as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(dst + 2 &* i).storeBytes(of: rotateRight(unsafeBitCast(v, to: SIMD16<UInt16>.self), rotating), as: SIMD16<UInt16>.self)
                i &+= 16
            }
            while i < n {
                let e = UInt16(src[i]) | UInt16(src[n + i]) << 8
                UnsafeMutableRawPointer(dst + 2 &* i).storeBytes(of: rotateRight(e, rotating).littleEndian, as: UInt16.self)
                i += 1
            }
        case 4:
            var i = 0
            while i &+ 16 <= n {
                // Safe: elements i..<i+16 are inside each plane (n bytes) and the output (4n bytes).
                // Interleave planes 0/1 and 2/3 bytewise into 16-bit lanes, then those lanes.
                var low = SIMD32<UInt8>(), high = SIMD32<UInt8>()
                low.evenHalf = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt8>.self)
                low.oddHalf = UnsafeRawPointer(src + (n &+ i)).loadUnaligned(as: SIMD16<UInt8>.self)
                high.evenHalf = UnsafeRawPointer(src + (2 &* n &+ i)).loadUnaligned(as: SIMD16<UInt8>.self)
                high.oddHalf = UnsafeRawPointer(src + (3 &* n &+ i)).loadUnaligned(as: SIMD16<UInt8>.self)
                var v = SIMD32<UInt16>()
                v.evenHalf = unsafeBitCast(low, to: SIMD16<UInt16>.self)
                v.oddHalf = unsafeBitCast(high, to: SIMD16<UInt16>.self)
                UnsafeMutableRawPointer(dst + 4 &* i).storeBytes(of: rotateRight(unsafeBitCast(v, to: SIMD16<UInt32>.self), rotating), as: SIMD16<UInt32>.self)
                i &+= 16
            }
            while i < n {
                let e = UInt32(src[i]) | UInt32(src[n + i]) << 8 | UInt32(src[2 * n + i]) << 16 | UInt32(src[3 * n + i]) << 24
                UnsafeMutableRawPointer(dst + 4 &* i).storeBytes(of: rotateRight(e, rotating).littleEndian, as: UInt32.self)
                i += 1
            }
        default:
            for i in 0 ..< n {
                for k in 0 ..< width { dst[width * i + k] = src[k * n + i] }
            }
        }
        for t in n * width ..< planes.count { dst[t] = src[t] }
    }
}

/// Element-wise transforms of a target against a base of the same length.
public enum BitDelta {
    /// out = target XOR base, bytewise (the same as XOR of the bit patterns at any width).
    public static func xor(_ target: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(target.count == base.count && out.count == target.count)
        let words = target.count / 8
        if words > 0 {
            for i in 0 ..< words {
                let a = target.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                let b = base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                out.storeBytes(of: a ^ b, toByteOffset: 8 * i, as: UInt64.self)
            }
        }
        for i in words * 8 ..< target.count { out[i] = target[i] ^ base[i] }
    }

    /// Zigzag of the wrapping integer difference of `width`-byte little-endian bit patterns:
    /// d = target − base (mod 2^bits), out = (d << 1) XOR (d >> (bits − 1), arithmetic). Small
    /// changes in either direction become small unsigned numbers. Tail bytes (count % width) are
    /// XORed.
    public static func subtract(_ target: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, width: Int,
                                into out: UnsafeMutableRawBufferPointer) {
        precondition(target.count == base.count && out.count == target.count)
        switch width {
        case 2: subtract(target, base, into: out, as: UInt16.self)
        case 4: subtract(target, base, into: out, as: UInt32.self)
        case 8: subtract(target, base, into: out, as: UInt64.self)
        default: subtract(target, base, into: out, as: UInt8.self)
        }
    }

    /// The inverse of `subtract`: out = base + unzigzag(delta).
    public static func add(_ delta: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer, width: Int,
                           into out: UnsafeMutableRawBufferPointer) {
        precondition(delta.count == base.count && out.count == delta.count)
        switch width {
        case 2: add(delta, base, into: out, as: UInt16.self)
        case 4: add(delta, base, into: out, as: UInt32.self)
        case 8: add(delta, base, into: out, as: UInt64.self)
        default: add(delta, base, into: out, as: UInt8.self)
        }
    }

    @inline(__always)
    private static func subtract<T: FixedWidthInteger & UnsignedInteger>(_ target: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer,
                                                                         into out: UnsafeMutableRawBufferPointer, as _: T.Type) {
        let size = MemoryLayout<T>.size
        let n = target.count / size
        for i in 0 ..< n {
            let t = T(littleEndian: target.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let b = T(littleEndian: base.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let d = t &- b
            let z = (d &<< 1) ^ (0 &- (d >> (T.bitWidth - 1)))
            out.storeBytes(of: z.littleEndian, toByteOffset: i * size, as: T.self)
        }
        for i in n * size ..< target.count { out[i] = target[i] ^ base[i] }
    }

    @inline(__always)
    private static func add<T: FixedWidthInteger & UnsignedInteger>(_ delta: UnsafeRawBufferPointer, _ base: UnsafeRawBufferPointer,
                                                                    into out: UnsafeMutableRawBufferPointer, as _: T.Type) {
        let size = MemoryLayout<T>.size
        let n = delta.count / size
        for i in 0 ..< n {
            let z = T(littleEndian: delta.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let b = T(littleEndian: base.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let d = (z >> 1) ^ (0 &- (z & 1))
            out.storeBytes(of: (b &+ d).littleEndian, toByteOffset: i * size, as: T.self)
        }
        for i in n * size ..< delta.count { out[i] = delta[i] ^ base[i] }
    }
}
