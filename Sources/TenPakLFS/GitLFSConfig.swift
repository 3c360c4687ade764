import Foundation

/// The git configuration that makes git-lfs hand every transfer to `tpstore lfs-agent`.
public enum GitLFSConfig {
    /// The agent's name in `lfs.customtransfer.<name>`.
    public static let agentName = "tpstore"

    /// (key, value) pairs, in the order they are written.
    public static func entries(executable: String, storeDirectory: String) -> [(key: String, value: String)] {
        let prefix = "lfs.customtransfer.\(agentName)"
        return [
            ("lfs.standalonetransferagent", agentName),
            ("\(prefix).path", executable),
            ("\(prefix).args", "lfs-agent --store \(shellQuoted(storeDirectory))"),
            ("\(prefix).concurrent", "true"),
        ]
    }

    /// git-lfs runs `'<path>' <args>` through `sh -c`, so `args` follows shell quoting.
    public static func shellQuoted(_ argument: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@%,=")
        if !argument.isEmpty, argument.allSatisfy({ safe.contains($0) }) { return argument }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Writes the entries with `git config` (`--global` or the repository of `cwd`).
    public static func install(_ entries: [(key: String, value: String)], global: Bool, cwd: String? = nil) throws {
        for (key, value) in entries {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["git", "config"] + (global ? ["--global"] : ["--local"]) + [key, value]
            if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
            let err = Pipe()
            process.standardError = err
            try process.run()
            let message = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                let text = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                throw GitConfigError(message: "git config \(key) failed: \(text.isEmpty ? "exit \(process.terminationStatus)" : text)"
                    + (global ? "" : " (run it inside a git repository, or use --global)"))
            }
        }
    }
}

public struct GitConfigError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
