import ArgumentParser
import Foundation
import TenPakStoreLocation
import TenPakLFS
import TenPakModelStore
import TenPakTransfer

extension TPStore {
    struct LFSAgentCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lfs-agent",
            abstract: "Serve git-lfs as a standalone custom transfer agent (line-delimited JSON on stdin/stdout).",
            discussion: """
                git-lfs starts this itself; configure it with `tpstore lfs-install`. Objects go to the store as models \
                lfs/<oid>. With --remote, objects live on a `tpstore serve` and move through a local cache store, \
                only the frames the other side lacks (the token: --token, $TPSTORE_TOKEN, else a git credential).
                """)
        @OptionGroup var options: StoreOptions
        @Option(help: ArgumentHelp("Remote mode: the repository on a `tpstore serve`, e.g. http://hub:8080/org/model.", valueName: "URL"))
        var remote: String?
        @Option(help: ArgumentHelp("Remote mode: the cache store (default: $XDG_CACHE_HOME/tpstore/lfs, else ~/.cache/tpstore/lfs).", valueName: "DIR"))
        var cache: String?
        @Option(help: ArgumentHelp("Remote mode: bearer token (default: $TPSTORE_TOKEN, else git credential fill for the URL).", valueName: "TOKEN"))
        var token: String?

        func validate() throws {
            if remote == nil, cache != nil || token != nil { throw ValidationError("--cache and --token go with --remote URL") }
            if remote != nil, options.store != nil { throw ValidationError("--store is the local mode's store; with --remote the objects go through --cache") }
            try TPStore.validateRemote(remote)
        }

        func run() throws {
            let write: @Sendable (String) -> Void = { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
            let agent: LFSAgent
            if let remote {
                let cacheDirectory = cache ?? LFSAgentCommand.defaultCache
                let token = self.token ?? ProcessInfo.processInfo.environment["TPSTORE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
                agent = LFSAgent(location: "\(remote) through the cache store \(cacheDirectory)", openObjects: { _ in
                    // Both directions write the cache (a download stores the frames it fetched).
                    let models = try StoreLocation.open(cacheDirectory, create: true)
                    return try RemoteLFSObjects(remote: remote, token: token ?? GitCredential.token(for: remote), cache: models)
                }, write: write)
            } else {
                agent = LFSAgent(storeDirectory: options.directory, openStore: { try StoreLocation.open($0, create: $1) }, write: write)
            }
            agent.run { readLine(strippingNewline: true) }
        }

        /// Shared by every repository of the user, so a fine-tune cloned anywhere finds the base
        /// fetched by an earlier clone.
        static var defaultCache: String {
            let environment = ProcessInfo.processInfo.environment
            if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return xdg + "/tpstore/lfs" }
            let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
            return home + "/.cache/tpstore/lfs"
        }
    }

    struct LFSInstall: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lfs-install",
            abstract: "Configure git-lfs to move objects through `tpstore lfs-agent` (this repository, or --global).",
            discussion: """
                Creates the store if it does not exist and prints the git config lines it wrote. With --remote URL \
                (a repository on a `tpstore serve`), the agent moves objects to and from that server through a cache \
                store; no token is written (give it as $TPSTORE_TOKEN or to a git credential helper).
                """)
        @OptionGroup var options: StoreOptions
        @Option(help: ArgumentHelp("Remote mode: the repository on a `tpstore serve`, e.g. http://hub:8080/org/model.", valueName: "URL"))
        var remote: String?
        @Option(help: ArgumentHelp("Remote mode: the cache store (default: the agent's, ~/.cache/tpstore/lfs).", valueName: "DIR"))
        var cache: String?
        @Flag(help: "Write to the global git config instead of the current repository's.") var global = false

        func validate() throws {
            if remote == nil, cache != nil { throw ValidationError("--cache goes with --remote URL") }
            if remote != nil, options.store != nil { throw ValidationError("--store is the local mode's store; with --remote the objects go through --cache") }
            try TPStore.validateRemote(remote)
        }

        func run() throws {
            let entries: [(key: String, value: String)]
            if let remote {
                entries = GitLFSConfig.entries(executable: FileSystemPaths.executable(), remote: remote, cache: cache.map(FileSystemPaths.absolute))
            } else {
                let store = FileSystemPaths.absolute(options.directory)
                _ = try StoreLocation.open(store, create: true)
                entries = GitLFSConfig.entries(executable: FileSystemPaths.executable(), storeDirectory: store)
            }
            try GitLFSConfig.install(entries, global: global)
            for (key, value) in entries { print("git config \(global ? "--global" : "--local") \(key) \(GitLFSConfig.shellQuoted(value))") }
        }
    }
}

extension TPStore {
    /// A `--remote URL` must name a repository on a server (checked before git-lfs sends anything).
    static func validateRemote(_ remote: String?) throws {
        guard let remote else { return }
        do { _ = try RemoteLFSObjects.parse(remote: remote) } catch { throw ValidationError("--remote: \(error)") }
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
