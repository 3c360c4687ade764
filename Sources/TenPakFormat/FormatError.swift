/// Errors of the format layer: bytes that do not parse as the structure they claim to be.
public enum FormatError: Error, Equatable, CustomStringConvertible {
    /// A structure ended before a field it needs.
    case truncated(what: String, needed: Int, available: Int)
    /// A field holds a value the format does not allow; the message says which and why.
    case invalid(String)
    /// A checksum or digest did not match: the bytes were damaged after they were written.
    case checksumMismatch(what: String, expected: String, actual: String)
    /// A format version this build does not know.
    case unsupportedVersion(what: String, version: Int, supported: Int)

    public var description: String {
        switch self {
        case let .truncated(what, needed, available):
            return "\(what) is truncated: needed \(needed) more bytes, \(available) left"
        case let .invalid(message):
            return message
        case let .checksumMismatch(what, expected, actual):
            return "\(what): checksum mismatch (expected \(expected), found \(actual)): the data was damaged on disk or in transit"
        case let .unsupportedVersion(what, version, supported):
            return "\(what) has format version \(version); this tpstore reads up to version \(supported): upgrade tpstore"
        }
    }
}
