import TenPakFormat

/// Damages a valid input: the mutations a fuzzer of byte formats and of JSON/text formats needs.
struct Mutator {
    var rng: SplitMix64

    /// Tokens that reach the corners of text parsers: numbers past every integer type, negative and
    /// fractional sizes, escapes, deep nesting, separators of the formats fuzzed here.
    static let tokens: [String] = [
        "1e300", "-1", "-0", "0.5", "18446744073709551616", "9223372036854775807", "9223372036854775808", "NaN",
        "null", "true", "[]", "{}", "\"\"", "\"\\u0000\"", "\\ud800", "[[[[[[[[[[[[[[[[", "\n", ",", ":", "-", "=",
        "bytes=", "0-", "-0", "../", "/", "\u{0}", "%00", String(repeating: "9", count: 40),
    ]

    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0 ..< n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

    /// One to three damages to `input`.
    mutating func mutate(_ input: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0 ... below(3) { damage(&b) }
        return b
    }

    private mutating func damage(_ b: inout [UInt8]) {
        switch below(8) {
        case 0 where !b.isEmpty: b[below(b.count)] ^= UInt8(1 << below(8))
        case 1 where !b.isEmpty: for _ in 0 ..< 1 + below(8) { b[below(b.count)] = UInt8(truncatingIfNeeded: rng.next()) }
        case 2: b = Array(b.prefix(below(b.count + 1)))
        case 3: b.insert(contentsOf: bytes(1 + below(16)), at: below(b.count + 1))
        case 4 where b.count > 8: let i = below(b.count - 4); b.replaceSubrange(i ..< i + 4, with: [0xFF, 0xFF, 0xFF, 0x7F])
        case 5: // a token in place of a few bytes
            let token = Array(Mutator.tokens[below(Mutator.tokens.count)].utf8)
            let i = below(b.count + 1), n = min(below(6), b.count - i)
            b.replaceSubrange(i ..< i + n, with: token)
        case 6 where b.count > 2: // a span repeated (lengths and counts that disagree with the data)
            let i = below(b.count), n = min(1 + below(64), b.count - i)
            b.insert(contentsOf: b[i ..< i + n], at: below(b.count + 1))
        case 7: b = bytes(below(256))
        default: b.append(contentsOf: bytes(1 + below(4)))
        }
    }
}
