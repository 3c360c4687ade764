/// One parser under fuzzing: valid seeds, and the call that parses one input.
struct FuzzTarget {
    let name: String
    let seeds: [[UInt8]]
    /// Applied after mutation for formats guarded by a checksum, so that damage reaches the parser
    /// behind it instead of being refused at the checksum every time.
    var fixup: (([UInt8]) -> [UInt8])? = nil
    /// Parses one input; throwing is a clean refusal, anything else (a trap, a hang) is the bug.
    let parse: ([UInt8]) throws -> Void

    init(_ name: String, seeds: [[UInt8]], fixup: (([UInt8]) -> [UInt8])? = nil, parse: @escaping ([UInt8]) throws -> Void) {
        self.name = name
        self.seeds = seeds
        self.fixup = fixup
        self.parse = parse
    }
}
