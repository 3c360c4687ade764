import ArgumentParser
import Foundation
import TenPakStoreLocation
import TenPakLFS
import TenPakModelStore

extension TPStore {
    struct LFSAgentCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lfs-agent",
            abstract: "Serve git-lfs as a standalone custom transfer agent (line-delimited JSON on stdin/stdout).",
            discussion: "git-lfs starts this itself; configure it with `tpstore lfs-install`. Objects go to the store as models lfs/<oid>.")
        @OptionGroup var options: StoreOptions

        func run() throws {
            let agent = LFSAgent(storeDirectory: options.directory, openStore: { try StoreLocation.open($0, create: $1) }) { line in
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
            agent.run { readLine(strippingNewline: true) }
        }
    }

    struct LFSInstall: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lfs-install",
            abstract: "Configure git-lfs to move objects through `tpstore lfs-agent` (this repository, or --global).",
            discussion: "Creates the store if it does not exist and prints the git config lines it wrote.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Write to the global git config instead of the current repository's.") var global = false

        func run() throws {
            let store = FileSystemPaths.absolute(options.directory)
            _ = try StoreLocation.open(store, create: true)
            let entries = GitLFSConfig.entries(executable: FileSystemPaths.executable(), storeDirectory: store)
            try GitLFSConfig.install(entries, global: global)
            for (key, value) in entries { print("git config \(global ? "--global" : "--local") \(key) \(GitLFSConfig.shellQuoted(value))") }
        }
    }
}

enum FileSystemPaths {
    static func absolute(_ path: String) -> String {
        let url = path.hasPrefix("/") ? URL(fileURLWithPath: path) : URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(path)
        return url.standardizedFileURL.path
    }

    /// This binary's absolute path (`/proc/self/exe` on Linux).
    static func executable() -> String {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
        return absolute(CommandLine.arguments[0])
    }
}
