/// Validation of the names users give: model names, revision ids and file paths inside a revision.
///
/// Names end up in catalog rows, HTTP URLs and (on `get`) file system paths, so anything that could
/// escape a destination directory or confuse a terminal is refused up front.
public enum Names {
    /// A model name: one or two '/'-separated components (`org/model` as on a hub) of letters,
    /// digits, '-', '_' and '.', each not "." or "..", at most 200 bytes in all.
    public static func validateModel(_ name: String) throws {
        guard !name.isEmpty, name.utf8.count <= 200 else {
            throw FormatError.invalid("invalid model name \"\(printable(name))\": must be 1 to 200 characters")
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { throw FormatError.invalid("invalid model name \"\(printable(name))\": at most one '/' (org/model)") }
        for part in parts {
            guard !part.isEmpty, part != ".", part != "..",
                  part.utf8.allSatisfy({ isWordByte($0) || $0 == UInt8(ascii: ".") })
            else {
                throw FormatError.invalid("invalid model name \"\(printable(name))\": use letters, digits, '-', '_', '.' and one '/'")
            }
        }
    }

    /// A revision id: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'.
    public static func validateRevision(_ revision: String) throws {
        guard !revision.isEmpty, revision.utf8.count <= 64, revision.first != ".",
              revision.utf8.allSatisfy({ isWordByte($0) || $0 == UInt8(ascii: ".") })
        else {
            throw FormatError.invalid("invalid revision \"\(printable(revision))\": use 1 to 64 letters, digits, '-', '_' or '.'")
        }
    }

    /// A path inside a revision: relative, '/'-separated, no empty, "." or ".." component, no NUL,
    /// control character or backslash, at most 4096 bytes.
    public static func validatePath(_ path: String) throws {
        guard !path.isEmpty, path.utf8.count <= 4096 else { throw FormatError.invalid("invalid path \"\(printable(path))\": empty or too long") }
        guard !path.hasPrefix("/") else { throw FormatError.invalid("invalid path \"\(printable(path))\": absolute paths are not allowed") }
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) else {
            throw FormatError.invalid("invalid path \"\(printable(path))\": control characters and backslashes are not allowed")
        }
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part != ".", part != ".." else {
                throw FormatError.invalid("invalid path \"\(printable(path))\": empty, '.' and '..' components are not allowed")
            }
        }
    }

    /// Splits `NAME[@REV]`.
    public static func parseReference(_ text: String) throws -> (model: String, revision: String?) {
        if let at = text.lastIndex(of: "@") {
            let model = String(text[..<at])
            let revision = String(text[text.index(after: at)...])
            try validateModel(model)
            try validateRevision(revision)
            return (model, revision)
        }
        try validateModel(text)
        return (text, nil)
    }

    private static func isWordByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }

    /// The name with control characters escaped, safe to print in an error message.
    public static func printable(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars.prefix(200) {
            if scalar.value < 0x20 || scalar.value == 0x7F { out += "\\u{\(String(scalar.value, radix: 16))}" } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }
}
