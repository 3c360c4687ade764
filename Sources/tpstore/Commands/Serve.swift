import ArgumentParser
import Foundation
import TenPakHTTP
import TenPakReader

extension TPStore {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve stored files over HTTP/1.1 with byte ranges: GET|HEAD /{model}/resolve/{revision}/{path}.",
            discussion: """
            Revision main is the revision named main, else the newest. Stops on SIGINT or SIGTERM. Prints "listening on http://HOST:PORT" once ready (PORT 0 picks a free port).

            With --allow-uploads, PUT /{model}/resolve/{revision}/{path} (body: one file) and PUT /{model}/revisions/{revision} (body: a tar archive) store a new revision, as `tpstore put` would (?base=auto|none|NAME[@REV]); the answer is 201 with a JSON receipt. Without --upload-token-file anyone who reaches the port can upload: keep it on loopback or behind the hub's gateway.
            """)
        @OptionGroup var options: StoreOptions
        @Option(help: ArgumentHelp("Address to listen on (loopback by default).", valueName: "HOST:PORT")) var listen = "127.0.0.1:8080"
        @Option(name: .customLong("cache-mib"), help: "Decoded-chunk cache size in MiB.") var cacheMiB = 256
        @Flag(name: .customLong("allow-uploads"), help: "Take PUT requests that store new revisions.") var allowUploads = false
        @Option(name: .customLong("upload-token-file"), help: ArgumentHelp("Uploads need `Authorization: Bearer` with the token in this file (its first line).", valueName: "FILE"))
        var uploadTokenFile: String?
        @Option(name: .customLong("spool-dir"), help: ArgumentHelp("Where upload bodies are spooled before they are stored (default: the system's temporary directory).", valueName: "DIR"))
        var spoolDirectory: String?
        @Option(name: .customLong("max-upload-mib"), help: "Largest upload body accepted, in MiB.") var maxUploadMiB = 1 << 20

        func validate() throws {
            _ = try address()
            guard cacheMiB >= 0 else { throw ValidationError("--cache-mib must be 0 or more") }
            guard maxUploadMiB > 0, maxUploadMiB < 1 << 40 else { throw ValidationError("--max-upload-mib must be positive") }
            if !allowUploads, uploadTokenFile != nil || spoolDirectory != nil {
                throw ValidationError("--upload-token-file and --spool-dir need --allow-uploads")
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

        func uploadOptions() throws -> UploadOptions? {
            guard allowUploads else { return nil }
            var options = UploadOptions(maxBytes: maxUploadMiB << 20)
            if let spoolDirectory {
                guard FileManager.default.isWritableFile(atPath: spoolDirectory) else {
                    throw ValidationError("--spool-dir \(spoolDirectory) is not a writable directory")
                }
                options.spoolDirectory = spoolDirectory
            }
            if let uploadTokenFile {
                guard let text = try? String(contentsOfFile: uploadTokenFile, encoding: .utf8),
                      let token = text.split(separator: "\n").first.map({ $0.trimmingCharacters(in: .whitespaces) }), !token.isEmpty
                else { throw ValidationError("--upload-token-file \(uploadTokenFile): cannot read a token from its first line") }
                options.token = token
            }
            return options
        }

        func run() async throws {
            let (host, port) = try address()
            let reader = try StoreReader(store: options.open(), configuration: .init(cacheCapacity: cacheMiB << 20))
            try await RangeServer.run(reader: reader, uploads: try uploadOptions(), host: host, port: port) { host, port in
                // Written straight to fd 1 (unbuffered): a parent waiting for this line gets it now.
                let line = "listening on http://\(host.contains(":") ? "[\(host)]" : host):\(port)\n"
                try? Array(line.utf8).withUnsafeBytes { try StandardOutput.write($0) }
            }
        }
    }
}
