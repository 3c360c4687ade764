import Foundation

/// The git configuration that makes git-lfs hand every transfer to `tpstore lfs-agent`.
public enum GitLFSConfig {
    /// The agent's name in `lfs.customtransfer.<name>`.
    public static let agentName = "tpstore"

    /// (key, value) pairs, in the order they are written: the local agent over `storeDirectory`.
    public static func entries(executable: String, storeDirectory: String) -> [(key: String, value: String)] {
        entries(executable: executable, arguments: ["lfs-agent", "--store", storeDirectory], concurrent: true)
    }

    /// The remote agent: objects on the server `remote` (a repository URL), through the cache
    /// store `cache` (nil: the agent's default). One agent at a time (`concurrent` false): every
    /// agent of a session shares the cache, and one at a time never fetches the same base frames twice.
    /// The token is not written (git config is not a secret store): `TPSTORE_TOKEN` or a git credential.
    public static func entries(executable: String, remote: String, cache: String?) -> [(key: String, value: String)] {
        entries(executable: executable, arguments: ["lfs-agent", "--remote", remote] + (cache.map { ["--cache", $0] } ?? []), concurrent: false)
    }

    static func entries(executable: String, arguments: [String], concurrent: Bool) -> [(key: String, value: String)] {
        let prefix = "lfs.customtransfer.\(agentName)"
        return [
            ("lfs.standalonetransferagent", agentName),
            ("\(prefix).path", executable),
            ("\(prefix).args", arguments.map(shellQuoted).joined(separator: " ")),
            ("\(prefix).concurrent", concurrent ? "true" : "false"),
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

/// A token kept by git's credential helpers, for the remote agent when neither `--token` nor
/// `TPSTORE_TOKEN` gives one: `git credential fill` for the repository URL, its `password`. Never
/// prompts (no terminal, no askpass): no helper, or none knowing the URL, gives nil.
public enum GitCredential {
    public static func token(for url: String, cwd: String? = nil) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "credential", "fill"]
        var environment = ProcessInfo.processInfo.environment
        environment["GIT_TERMINAL_PROMPT"] = "0"
        // An askpass program would open a prompt; /bin/false makes git give up instead.
        environment["GIT_ASKPASS"] = "/bin/false"
        environment["SSH_ASKPASS"] = nil
        process.environment = environment
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        input.fileHandleForWriting.write(Data("url=\(url)\n\n".utf8))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("password=") {
            let token = String(line.dropFirst("password=".count))
            return token.isEmpty ? nil : token
        }
        return nil
    }
}
