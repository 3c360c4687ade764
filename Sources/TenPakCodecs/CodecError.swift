/// A payload that does not decode: damaged on disk, or not produced by this encoder.
public struct CodecError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

import TenPakFormat

/// Runs a format-layer parse, reporting its failure as a CodecError.
@inline(__always)
func parsing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as FormatError {
        throw CodecError(error.description)
    }
}
