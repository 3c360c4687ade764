import ArgumentParser
import Foundation
import Logging
import TenPakHTTP
import TenPakReader

extension TPStore {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "serve",
            abstract: "Serve the store over HTTP/1.1 as a hub: huggingface_hub and git-lfs read (and with tokens write) it.",
            discussion: """
            Files: GET|HEAD /{model}/resolve/{revision}/{path} with byte ranges. Browsers (Accept: text/html) get pages at /, /{model} and /{model}/tree/{revision}; the store dashboard is at /~/dashboard. The hub API (model_info, tree, create_repo, upload_folder, create_commit) under /api, git-lfs under /{model}.git/info/lfs, Prometheus metrics at /metrics. Revision main is the revision named main, else the newest; a 40-hex commit id names one revision. Stops gracefully on SIGINT or SIGTERM. Prints "listening on http://HOST:PORT" once ready (PORT 0 picks a free port).

            --auth FILE: JSON {"tokens": [{"token": "…", "read": ["org/*"], "write": ["org/*"]}], "anonymous": {"read": ["public/*"]}}; tokens come as Authorization: Bearer or as the HTTP basic password (browsers: the basic password, or the tpstore_token cookie that /~/login sets, on GET and HEAD only); re-read on SIGHUP. Without --auth the server is public and read-only, unless --allow-uploads: then anyone who reaches the port (or the bearer of --upload-token-file) can also write.
            """)
        @OptionGroup var options: StoreOptions
        @Option(help: ArgumentHelp("Address to listen on (loopback by default).", valueName: "HOST:PORT")) var listen = "127.0.0.1:8080"
        @Option(name: .customLong("cache-mib"), help: "Decoded-chunk cache size in MiB.") var cacheMiB = 256
        @Option(name: .customLong("auth"), help: ArgumentHelp("Tokens and what they may read and write (JSON, see above).", valueName: "FILE"))
        var authFile: String?
        @Flag(name: .customLong("allow-uploads"), help: "Without --auth: take writes from anyone (or the --upload-token-file bearer).") var allowUploads = false
        @Option(name: .customLong("upload-token-file"), help: ArgumentHelp("With --allow-uploads: writes need `Authorization: Bearer` with the token on this file's first line.", valueName: "FILE"))
        var uploadTokenFile: String?
        @Option(name: .customLong("spool-dir"), help: ArgumentHelp("Where upload bodies are spooled before they are stored (default: the system's temporary directory).", valueName: "DIR"))
        var spoolDirectory: String?
        @Option(name: .customLong("max-upload-mib"), help: "Largest upload body accepted, in MiB.") var maxUploadMiB = 1 << 20
        @Option(name: .customLong("max-concurrent-uploads"), help: "Upload bodies received at once; more get 503.") var maxConcurrentUploads = 4
        @Option(name: .customLong("upload-idle-timeout"), help: "Seconds an upload body may pause before its connection is closed (408).") var uploadIdleTimeout = 30
        @Option(name: .customLong("upload-min-rate"), help: "Bytes per second an upload body must average after the first 10 s (408 below; 0: no minimum).") var uploadMinRate = 16 << 10
        @Option(name: .customLong("upload-grace"), help: "Seconds before the minimum rate applies.") var uploadGrace = 10
        @Option(name: .customLong("xet-space-gib"), help: "Disk space, in GiB, that Xet xorbs waiting for their shards may take in the spool directory (least recently used ones older than an hour make room; 507 when none can).")
        var xetSpaceGiB = 64
        @Option(name: .customLong("connection-idle-timeout"), help: "Seconds a connection may sit idle (between requests, or with a request head half sent) before it is closed.")
        var connectionIdleTimeout = 60
        @Option(name: .customLong("price-storage-gb-month"), help: ArgumentHelp("Dollars per GB (10^9 bytes) stored for a month: what the dashboard's savings are worth.", valueName: "DOLLARS"))
        var priceStorage = WebPrices().storagePerGBMonth
        @Option(name: .customLong("price-egress-gb"), help: ArgumentHelp("Dollars per GB sent out, for the dashboard.", valueName: "DOLLARS"))
        var priceEgress = WebPrices().egressPerGB

        func validate() throws {
            _ = try address()
            guard cacheMiB >= 0 else { throw ValidationError("--cache-mib must be 0 or more") }
            guard maxUploadMiB > 0, maxUploadMiB < 1 << 40 else { throw ValidationError("--max-upload-mib must be positive") }
            guard xetSpaceGiB > 0, xetSpaceGiB < 1 << 30 else { throw ValidationError("--xet-space-gib must be positive") }
            guard maxConcurrentUploads > 0 else { throw ValidationError("--max-concurrent-uploads must be positive") }
            guard uploadIdleTimeout > 0, uploadMinRate >= 0, uploadGrace >= 0, connectionIdleTimeout > 0 else {
                throw ValidationError("--upload-idle-timeout and --connection-idle-timeout must be positive, --upload-min-rate and --upload-grace 0 or more")
            }
            guard priceStorage.isFinite, priceStorage >= 0, priceEgress.isFinite, priceEgress >= 0 else {
                throw ValidationError("--price-storage-gb-month and --price-egress-gb must be 0 or more")
            }
            if authFile != nil, allowUploads || uploadTokenFile != nil {
                throw ValidationError("--auth replaces --allow-uploads and --upload-token-file: give writers tokens with \"write\" patterns instead")
            }
            if authFile == nil, !allowUploads, uploadTokenFile != nil {
                throw ValidationError("--upload-token-file needs --allow-uploads")
            }
        }

        func address() throws -> (host: String, port: Int) {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0 ... 65535).contains(port),
                  colon != listen.startIndex
            else { throw ValidationError("--listen takes HOST:PORT, e.g. 127.0.0.1:8080") }
            var host = String(listen[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return (host, port)
        }

        /// The token on the first line of `--upload-token-file`, without CR, LF or surrounding spaces.
        static func readToken(_ path: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let token = text.split(whereSeparator: \.isNewline).first.map({ $0.trimmingCharacters(in: .whitespacesAndNewlines) }), !token.isEmpty
            else { throw ValidationError("--upload-token-file \(path): cannot read a token from its first line") }
            return token
        }

        func policy() throws -> AccessPolicy {
            if let authFile {
                do {
                    return try AccessPolicy.load(path: authFile)
                } catch {
                    throw ValidationError("\(error)")
                }
            }
            return .open(allowUploads: allowUploads, uploadToken: try uploadTokenFile.map(Serve.readToken))
        }

        func uploadOptions(_ policy: AccessPolicy) throws -> UploadOptions? {
            guard policy.takesWrites else { return nil }
            var options = UploadOptions(maxBytes: maxUploadMiB << 20, maxConcurrent: maxConcurrentUploads,
                                        idleTimeout: .seconds(uploadIdleTimeout), minimumRate: uploadMinRate, grace: .seconds(uploadGrace),
                                        xetSpaceBytes: xetSpaceGiB << 30)
            if let spoolDirectory {
                guard FileManager.default.isWritableFile(atPath: spoolDirectory) else {
                    throw ValidationError("--spool-dir \(spoolDirectory) is not a writable directory")
                }
                options.spoolDirectory = spoolDirectory
            }
            return options
        }

        func run() async throws {
            let (host, port) = try address()
            let policy = try policy()
            let uploads = try uploadOptions(policy)
            RangeServer.bootstrapLogging()
            let logger = RangeServer.logger()
            let access = AccessControl(policy)
            let reload = authFile.map { access.reloadOnHangup(path: $0, logger: logger) }
            defer { reload?.cancel() }
            if authFile != nil {
                logger.notice("access from --auth: \(policy.tokens.count) tokens, anonymous reads \(policy.anonymousRead.isEmpty ? "nothing" : policy.anonymousRead.map(\.pattern).joined(separator: ", ")); SIGHUP re-reads the file")
            } else if uploads == nil {
                logger.notice("no --auth: this server is public and read-only (anyone who reaches the port reads every model)")
            } else {
                logger.warning("no --auth: this server is public and takes writes from \(uploadTokenFile == nil ? "anyone who reaches the port" : "the --upload-token-file bearer")")
            }
            let reader = try StoreReader(store: options.open(), configuration: .init(cacheCapacity: cacheMiB << 20))
            try await RangeServer.run(reader: reader, options: ServerOptions(access: access, uploads: uploads, connectionIdleTimeout: Int64(connectionIdleTimeout),
                                                                                prices: WebPrices(storagePerGBMonth: priceStorage, egressPerGB: priceEgress)), host: host, port: port, logger: logger) { host, port in
                // Written straight to fd 1 (unbuffered): a parent waiting for this line gets it now.
                let line = "listening on http://\(host.contains(":") ? "[\(host)]" : host):\(port)\n"
                try? Array(line.utf8).withUnsafeBytes { try StandardOutput.write($0) }
            }
        }
    }
}
