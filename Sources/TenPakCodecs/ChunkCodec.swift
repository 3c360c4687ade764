import TenPakFormat

/// How a chunk's raw bytes became its payload. The id is stored in each chunk frame.
public enum Encoding: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The raw bytes as they are.
    case stored = 0
    /// One zstd frame of the raw bytes.
    case zstd = 1
    /// Byte planes of the raw bytes, each plane zstd-compressed or stored (PlaneSet).
    case planes = 2
    /// Against a base chunk: XOR of bit patterns, byte planes, zstd (BitX). DeltaEnvelope.
    case xorPlanes = 3
    /// Against a base chunk: zigzag integer difference of bit patterns, byte planes, zstd. DeltaEnvelope.
    case subPlanes = 4
    /// Against a base chunk: one zstd frame that uses the base chunk as its reference prefix.
    case zstdPrefix = 5
    /// Against a base chunk: exponent-context entropy coding of the bit-pattern difference. DeltaEnvelope.
    case contextDelta = 6
    /// Floats only: each bit pattern rotated left by one (the sign moves to bit 0, so the exponent's
    /// top bits fill the high byte alone), then a PlaneSet.
    case floatPlanes = 7

    /// The name of an encoding id, including ids this build does not know.
    public static func name(of id: UInt8) -> String {
        Encoding(rawValue: id)?.description ?? "encoding-\(id)"
    }

    public var usesBase: Bool {
        switch self {
        case .xorPlanes, .subPlanes, .zstdPrefix, .contextDelta: return true
        case .stored, .zstd, .planes, .floatPlanes: return false
        }
    }

    public var description: String {
        switch self {
        case .stored: return "stored"
        case .zstd: return "zstd"
        case .planes: return "planes+zstd"
        case .xorPlanes: return "xor+planes+zstd"
        case .subPlanes: return "sub+planes+zstd"
        case .zstdPrefix: return "zstd-prefix"
        case .contextDelta: return "context-delta"
        case .floatPlanes: return "float-planes"
        }
    }
}

/// The element type of a chunk, as codecs need it.
public struct ElementType: Hashable, Sendable {
    public var width: Int
    public var layout: FloatLayout

    public init(width: Int, layout: FloatLayout) {
        precondition([1, 2, 4, 8].contains(width), "element width must be 1, 2, 4 or 8")
        self.width = width
        self.layout = layout
    }

    public static let bytes = ElementType(width: 1, layout: .none)

    public init(_ dtype: DType) {
        self.init(width: dtype.size, layout: dtype.floatLayout)
    }
}

/// An encoded chunk, ready to frame.
public struct EncodedChunk: Sendable {
    public var encoding: Encoding
    public var payload: [UInt8]
}

/// Chooses and applies chunk encodings.
///
/// `encode` tries every candidate encoding (`candidates`) and keeps the smallest payload, so a delta is used only
/// where it pays (an unrelated retrain of the same shape falls back to no-base planes).
public enum ChunkCodec {
    /// Chunks at least this large pick their encoding on a sample first.
    static let sampledSelectionThreshold = 256 << 10
    static let sampleSliceBytes = 32 << 10
    /// How many of the sample's best encodings are then run on the whole chunk.
    static let finalists = 2
    /// The no-base fallback is skipped on the whole chunk when the sample's best delta is smaller
    /// than the sample's fallback by more than this fraction.
    static let fallbackMargin = 0.15

    /// Encodes `raw`; with `base`, delta encodings against it are candidates too.
    ///
    /// Every candidate encoding (`candidates`) is tried and the smallest payload wins. For large chunks the
    /// candidates are first ranked on a sample (three slices: start, middle, end) and only the best
    /// delta encoding runs on the whole chunk, with the no-base encoding beside it unless the
    /// sample shows the delta clearly smaller (`fallbackMargin`), so a put costs one or two
    /// encodings per chunk, not six.
    public static func encode(_ raw: UnsafeRawBufferPointer, element: ElementType, base: UnsafeRawBufferPointer? = nil,
                              level: Int32 = Zstd.defaultLevel) -> EncodedChunk {
        guard raw.count > 0 else { return EncodedChunk(encoding: .stored, payload: []) }
        let base = (base?.count ?? 0) > 0 ? base : nil
        var candidates = self.candidates(element: element, hasBase: base != nil)
        if raw.count >= sampledSelectionThreshold, candidates.count > finalists {
            let (sampleRaw, sampleBase) = sample(raw, base: base, width: element.width)
            candidates = rankedCandidates(candidates, sampleRaw: sampleRaw, sampleBase: sampleBase, width: element.width)
            let ranked = sampleRaw.withUnsafeBytes { r in
                candidates.map { encoding -> (Encoding, Int) in
                    let size = sampleBase.withUnsafeBytes { b in
                        run(encoding, r, element: element, base: base == nil ? nil : b, level: level).count
                    }
                    return (encoding, size)
                }
            }
            // The no-base encoding is the fallback that must win whenever a delta does not pay (an
            // unrelated base). It runs in full unless the sample shows the best delta smaller than
            // it by more than `fallbackMargin`: a fine-tune's deltas are less than half the size
            // of its no-base encoding, so a margin that large is not a sampling accident.
            let fallback = candidates[0]
            let fallbackSize = ranked.first { $0.0 == fallback }?.1 ?? Int.max
            let best = ranked.filter { $0.0 != fallback }.sorted { $0.1 < $1.1 }.prefix(finalists - 1)
            let deltaClearlyWins = best.first.map { Double($0.1) < Double(fallbackSize) * (1 - fallbackMargin) } ?? false
            candidates = (deltaClearlyWins ? [] : [fallback]) + best.map(\.0)
        }
        // `stored` wins unless something is smaller; its copy of the chunk is made only then.
        var best: EncodedChunk?
        for encoding in candidates {
            let payload = run(encoding, raw, element: element, base: base, level: level)
            if payload.count < (best?.payload.count ?? raw.count) { best = EncodedChunk(encoding: encoding, payload: payload) }
        }
        return best ?? EncodedChunk(encoding: .stored, payload: Array(raw))
    }

    /// One specific encoding, whether or not it is the smallest (tests and the fuzzer).
    public static func encodeForced(_ encoding: Encoding, _ raw: UnsafeRawBufferPointer, element: ElementType,
                                    base: UnsafeRawBufferPointer, level: Int32 = Zstd.defaultLevel) -> [UInt8] {
        run(encoding, raw, element: element, base: base, level: level)
    }

    static func candidates(element: ElementType, hasBase: Bool) -> [Encoding] {
        let isFloat = element.layout != .none && (element.width == 2 || element.width == 4)
        var list: [Encoding] = [isFloat ? .floatPlanes : element.width > 1 ? .planes : .zstd]
        if hasBase {
            // Where context-delta applies, xor/sub planes code the same difference with a coarser
            // model: they saved at most 0.1% of a put's bytes on any bench_delta row, and ranking
            // them on the sample took a fifth of the encode time (SPEC section 8).
            if !ContextDelta.supports(element) {
                list.append(.xorPlanes)
                if element.width > 1 { list.append(.subPlanes) }
            }
            list.append(.zstdPrefix)
            if ContextDelta.supports(element) { list.append(.contextDelta) }
        }
        return list
    }

    static func run(_ encoding: Encoding, _ raw: UnsafeRawBufferPointer, element: ElementType, base: UnsafeRawBufferPointer?,
                    level: Int32) -> [UInt8] {
        switch encoding {
        case .stored: return Array(raw)
        case .zstd: return Zstd.compress(raw, level: level)
        case .planes: return PlaneSet.encode(raw, width: element.width, level: level)
        case .floatPlanes:
            var rotated = Array(raw)
            rotated.withUnsafeMutableBytes { SignRotation.apply($0, width: element.width) }
            return rotated.withUnsafeBytes { PlaneSet.encode($0, width: element.width, level: level) }
        case .zstdPrefix: return Zstd.compress(raw, prefix: base, level: level)
        case .xorPlanes, .subPlanes, .contextDelta:
            // Safe: candidates() offers delta encodings only with a base.
            return DeltaEnvelope.encode(raw, base: base!, element: element, level: level, delta: encoding)
        }
    }

    /// The share of the sample in identical runs below which zstd-prefix is not ranked beside
    /// context-delta (see `encode`).
    static let zstdPrefixMinIdenticalShare = 0.25

    /// The candidates worth ranking on a sample. zstd-prefix wins only through long runs
    /// identical to the base; where context-delta applies and too little of the sample lies in
    /// such runs it cannot win (context-delta codes an unchanged element in a fraction of a bit
    /// and a changed one with a model), and ranking it cost a fifth of a BF16 fine-tune's encode
    /// time.
    static func rankedCandidates(_ candidates: [Encoding], sampleRaw: [UInt8], sampleBase: [UInt8], width: Int) -> [Encoding] {
        guard candidates.contains(.contextDelta),
              identicalRunShare(sampleRaw, sampleBase, width: width) < zstdPrefixMinIdenticalShare else { return candidates }
        return candidates.filter { $0 != .zstdPrefix }
    }

    /// The share of `raw`'s 8-element blocks that are bit-identical to `base` at the same offset
    /// (a block past the end of `base` counts as different).
    static func identicalRunShare(_ raw: [UInt8], _ base: [UInt8], width: Int) -> Double {
        let block = 8 * width
        let blocks = raw.count / block
        guard blocks > 0 else { return 0 }
        var same = 0
        raw.withUnsafeBytes { r in
            base.withUnsafeBytes { b in
                for k in 0 ..< min(blocks, base.count / block) {
                    // Safe: whole 8-byte words of block k; a block is 8, 16, 32 or 64 bytes and
                    // lies inside both buffers (k is below each one's whole block count).
                    var diff: UInt64 = 0
                    for w in stride(from: k * block, to: (k + 1) * block, by: 8) {
                        diff |= r.loadUnaligned(fromByteOffset: w, as: UInt64.self) ^ b.loadUnaligned(fromByteOffset: w, as: UInt64.self)
                    }
                    if diff == 0 { same += 1 }
                }
            }
        }
        return Double(same) / Double(blocks)
    }

    /// Start, middle and end slices of the chunk (and the base bytes at the same offsets).
    static func sample(_ raw: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer?, width: Int) -> ([UInt8], [UInt8]) {
        let slice = sampleSliceBytes / width * width
        let starts = [0, (raw.count / 2) / width * width, (raw.count - slice) / width * width]
        var r: [UInt8] = [], b: [UInt8] = []
        for start in starts {
            r.append(contentsOf: raw[start ..< start + slice])
            if let base, start < base.count { b.append(contentsOf: base[start ..< min(start + slice, base.count)]) }
        }
        return (r, b)
    }

    /// Decodes `payload` into `output` (exactly the chunk's raw length). `base` must be the raw
    /// bytes of the frame's base chunk when the encoding uses one. When it returns, every byte of
    /// `output` has been written, so `output` need not be initialized first.
    public static func decode(_ payload: UnsafeRawBufferPointer, encoding: Encoding, element: ElementType,
                              base: UnsafeRawBufferPointer?, into output: UnsafeMutableRawBufferPointer) throws {
        if encoding.usesBase, base == nil {
            throw CodecError("\(encoding) payload needs its base chunk")
        }
        switch encoding {
        case .stored:
            guard payload.count == output.count else {
                throw CodecError("stored payload has \(payload.count) bytes, expected \(output.count)")
            }
            if let src = payload.baseAddress, let dst = output.baseAddress { dst.copyMemory(from: src, byteCount: payload.count) }
        case .zstd:
            try Zstd.decompress(payload, into: output)
        case .planes:
            try PlaneSet.decode(payload, width: element.width, into: output)
        case .floatPlanes:
            guard element.layout != .none, element.width == 2 || element.width == 4 else {
                throw CodecError("float-planes payload for a non-float element type")
            }
            try PlaneSet.decode(payload, width: element.width, into: output, undoingSignRotation: true)
        case .zstdPrefix:
            try Zstd.decompress(payload, prefix: base, into: output)
        case .xorPlanes, .subPlanes, .contextDelta:
            // Safe: usesBase checked above.
            try DeltaEnvelope.decode(payload, base: base!, element: element, delta: encoding, into: output)
        }
    }
}

/// Byte planes, each zstd-compressed or stored, whichever is smaller.
///
///     u8   width w (1, 2, 4 or 8)
///     w ×  { u8 mode (0 stored, 1 zstd, 2 order-0 rANS with 4 lanes, 3 with 32: ByteRANS);
///            u32 length L; L bytes }
///
/// For an input of C bytes, n = C / w; segment k < w−1 is plane k ([k·n, (k+1)·n) of the split
/// buffer), and the last segment also carries the C mod w tail bytes.
enum PlaneSet {
    static func encode(_ raw: UnsafeRawBufferPointer, width: Int, level: Int32) -> [UInt8] {
        let planes = [UInt8](unsafeUninitializedCapacity: raw.count) { buffer, initialized in
            // `split` writes every byte.
            BytePlanes.split(raw, width: width, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = raw.count
        }
        return planes.withUnsafeBytes { encodeSplit($0, width: width, level: level) }
    }

    /// Encodes an already split buffer.
    static func encodeSplit(_ planes: UnsafeRawBufferPointer, width: Int, level: Int32) -> [UInt8] {
        var w = ByteWriter(capacity: planes.count / 2 + 16)
        w.append(UInt8(width))
        let n = planes.count / width
        for k in 0 ..< width {
            let end = k == width - 1 ? planes.count : (k + 1) * n
            let segment = UnsafeRawBufferPointer(rebasing: planes[k * n ..< end])
            // Order-0 rANS beats zstd's Huffman stage on most weight planes (it takes fractions of
            // a bit, and zstd leaves near-random literals raw); zstd wins where there are repeats.
            // The histogram's entropy says which is worth running: rANS cannot beat zstd when its
            // estimate does not, and a plane that is near-random byte by byte is stored. Such a
            // plane (the top mantissa byte of a weight: about 99.6% of its size coded) would save
            // under 2% of itself and cost a full rANS pass on every read of the chunk, most of a
            // base chunk's decode time; zstd cannot help it either.
            let histogram = segment.count >= 1024 ? ByteRANS.Histogram(segment) : nil
            let estimate = histogram?.estimatedSize
            let nearRandom = estimate.map { $0 > segment.count * 98 / 100 } ?? false
            let packed = segment.count > 0 && !nearRandom ? Zstd.compress(segment, level: level) : nil
            let best = min(packed?.count ?? Int.max, segment.count)
            let coded = !nearRandom && (estimate ?? Int.max) < best ? ByteRANS.encode(segment, histogram: histogram) : nil
            if let coded, coded.count < best {
                w.append(UInt8(3))
                w.append(UInt32(coded.count))
                w.append(bytes: coded)
            } else if let packed, packed.count < segment.count {
                w.append(UInt8(1))
                w.append(UInt32(packed.count))
                w.append(bytes: packed)
            } else {
                w.append(UInt8(0))
                w.append(UInt32(segment.count))
                w.append(segment)
            }
        }
        return w.bytes
    }

    /// `undoingSignRotation`: float-planes' `SignRotation.undo` done by the join.
    static func decode(_ payload: UnsafeRawBufferPointer, width: Int, into output: UnsafeMutableRawBufferPointer,
                       undoingSignRotation: Bool = false) throws {
        let planes = try [UInt8](unsafeUninitializedCapacity: output.count) { buffer, initialized in
            // `decodeSplit` writes every byte or throws.
            try decodeSplit(payload, width: width, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = output.count
        }
        planes.withUnsafeBytes { BytePlanes.join($0, width: width, into: output, rotatingRight: undoingSignRotation) }
    }

    static func decodeSplit(_ payload: UnsafeRawBufferPointer, width expected: Int, into planes: UnsafeMutableRawBufferPointer) throws {
        var r = ByteReader(payload, what: "plane set")
        let width = Int(try parsing { try r.read(UInt8.self) })
        guard width == expected else { throw CodecError("plane set has width \(width), frame says \(expected)") }
        let n = planes.count / width
        // Four-lane rANS planes (mode 2, older stores) are decoded two at a time
        // (`ByteRANS.decodePair`), one left over alone; 32-lane planes (mode 3) each alone.
        var waiting: (plane: Int, bytes: UnsafeRawBufferPointer, target: UnsafeMutableRawBufferPointer)?
        for k in 0 ..< width {
            let end = k == width - 1 ? planes.count : (k + 1) * n
            let target = UnsafeMutableRawBufferPointer(rebasing: planes[k * n ..< end])
            let mode = try parsing { try r.read(UInt8.self) }
            let length = Int(try parsing { try r.read(UInt32.self) })
            let bytes = try parsing { try r.readBytes(length) }
            switch mode {
            case 0:
                guard length == target.count else { throw CodecError("stored plane \(k) has \(length) bytes, expected \(target.count)") }
                if let src = bytes.baseAddress, let dst = target.baseAddress { dst.copyMemory(from: src, byteCount: length) }
            case 1:
                try Zstd.decompress(bytes, into: target)
            case 2:
                guard target.count > 0 else { throw CodecError("rANS plane \(k) for an empty segment") }
                guard let first = waiting else {
                    waiting = (k, bytes, target)
                    continue
                }
                waiting = nil
                do {
                    try ByteRANS.decodePair(first.bytes, into: first.target, bytes, into: target)
                } catch {
                    throw CodecError("plane \(first.plane) or \(k): \(error)")
                }
            case 3:
                guard target.count > 0 else { throw CodecError("rANS plane \(k) for an empty segment") }
                do {
                    try ByteRANS.decode(bytes, lanes: ByteRANS.wideLanes, into: target)
                } catch {
                    throw CodecError("plane \(k): \(error)")
                }
            default:
                throw CodecError("plane \(k) has unknown mode \(mode)")
            }
        }
        if let last = waiting {
            do {
                try ByteRANS.decode(last.bytes, lanes: 4, into: last.target)
            } catch {
                throw CodecError("plane \(last.plane): \(error)")
            }
        }
        guard r.isAtEnd else { throw CodecError("plane set has \(r.remaining) trailing bytes") }
    }
}

/// The payload of every delta encoding that transforms element-wise against the base.
///
///     u32  covered length n: the first n bytes are delta-coded (n ≤ both lengths, n mod width = 0)
///     u32  length D of the delta part
///     D    delta part: for xor/sub, a PlaneSet of the transformed n bytes; for context-delta, its payload
///     ...  remainder: a PlaneSet of raw bytes [n, R) (vocabulary rows appended past the base's end)
enum DeltaEnvelope {
    static func encode(_ raw: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType, level: Int32,
                       delta: Encoding) -> [UInt8] {
        let covered = min(raw.count, base.count) / element.width * element.width
        let target = UnsafeRawBufferPointer(rebasing: raw[0 ..< covered])
        let reference = UnsafeRawBufferPointer(rebasing: base[0 ..< covered])
        let deltaPart: [UInt8]
        switch delta {
        case .contextDelta:
            deltaPart = ContextDelta.encode(target: target, base: reference, element: element)
        default:
            var transformed = [UInt8](repeating: 0, count: covered)
            transformed.withUnsafeMutableBytes { out in
                if delta == .subPlanes {
                    BitDelta.subtract(target, reference, width: element.width, into: out)
                } else {
                    BitDelta.xor(target, reference, into: out)
                }
            }
            deltaPart = transformed.withUnsafeBytes { PlaneSet.encode($0, width: element.width, level: level) }
        }
        var w = ByteWriter(capacity: deltaPart.count + 16)
        w.append(UInt32(covered))
        w.append(UInt32(deltaPart.count))
        w.append(bytes: deltaPart)
        w.append(bytes: PlaneSet.encode(UnsafeRawBufferPointer(rebasing: raw[covered...]), width: element.width, level: level))
        return w.bytes
    }

    static func decode(_ payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType, delta: Encoding,
                       into output: UnsafeMutableRawBufferPointer) throws {
        var r = ByteReader(payload, what: "delta payload")
        let covered = Int(try parsing { try r.read(UInt32.self) })
        let deltaLength = Int(try parsing { try r.read(UInt32.self) })
        let deltaPart = try parsing { try r.readBytes(deltaLength) }
        guard covered <= output.count, covered <= base.count, covered % element.width == 0 else {
            throw CodecError("delta covers \(covered) bytes, but the chunk has \(output.count) and its base \(base.count)")
        }
        let head = UnsafeMutableRawBufferPointer(rebasing: output[0 ..< covered])
        let reference = UnsafeRawBufferPointer(rebasing: base[0 ..< covered])
        switch delta {
        case .contextDelta:
            try ContextDelta.decode(payload: deltaPart, base: reference, element: element, into: head)
        default:
            var transformed = [UInt8](repeating: 0, count: covered)
            try transformed.withUnsafeMutableBytes { buffer in
                try PlaneSet.decode(deltaPart, width: element.width, into: buffer)
            }
            transformed.withUnsafeBytes { t in
                if delta == .subPlanes {
                    BitDelta.add(t, reference, width: element.width, into: head)
                } else {
                    BitDelta.xor(t, reference, into: head)
                }
            }
        }
        let rest = UnsafeRawBufferPointer(rebasing: payload[r.offset...])
        try PlaneSet.decode(rest, width: element.width, into: UnsafeMutableRawBufferPointer(rebasing: output[covered...]))
    }
}

/// Rotates each 16- or 32-bit element left by one bit (and back), in place. A trailing partial
/// element is left as it is. Decoding undoes it inside the plane join (`BytePlanes.join`'s
/// `rotatingRight`); `undo` is the reference the tests hold that join to.
enum SignRotation {
    static func apply(_ bytes: UnsafeMutableRawBufferPointer, width: Int) {
        if width == 4 { rotate(bytes, UInt32.self, left: true) } else if width == 2 { rotate(bytes, UInt16.self, left: true) }
    }

    static func undo(_ bytes: UnsafeMutableRawBufferPointer, width: Int) {
        if width == 4 { rotate(bytes, UInt32.self, left: false) } else if width == 2 { rotate(bytes, UInt16.self, left: false) }
    }

    @inline(__always)
    private static func rotate<T: FixedWidthInteger & UnsignedInteger>(_ bytes: UnsafeMutableRawBufferPointer, _: T.Type, left: Bool) {
        let size = MemoryLayout<T>.size
        for i in 0 ..< bytes.count / size {
            let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let r = left ? (v &<< 1) | (v &>> (T.bitWidth - 1)) : (v &>> 1) | (v &<< (T.bitWidth - 1))
            bytes.storeBytes(of: r.littleEndian, toByteOffset: i * size, as: T.self)
        }
    }
}

extension ChunkCodec {
    /// Decodes the payload of a frame with `header` (its element type from the header) into
    /// `output`, against `base` (the base chunk's raw bytes) when the frame has one.
    public static func decode(_ payload: UnsafeRawBufferPointer, header: FrameHeader, encoding: Encoding, base: [UInt8]?,
                              into output: UnsafeMutableRawBufferPointer) throws {
        let element = ElementType(width: Int(header.elementWidth), layout: header.floatLayout)
        if let base {
            try base.withUnsafeBytes { try decode(payload, encoding: encoding, element: element, base: $0, into: output) }
        } else {
            try decode(payload, encoding: encoding, element: element, base: nil, into: output)
        }
    }
}
