import ArgumentParser
import Foundation
import TenPakHTTP
import TenPakReader

extension TPStore {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve stored files over HTTP/1.1 with byte ranges: GET|HEAD /{model}/resolve/{revision}/{path}.",
            discussion: "Revision main is the revision named main, else the newest. Stops on SIGINT or SIGTERM. Prints \"listening on http://HOST:PORT\" once ready (PORT 0 picks a free port).")
        @OptionGroup var options: StoreOptions
        @Option(help: ArgumentHelp("Address to listen on (loopback by default).", valueName: "HOST:PORT")) var listen = "127.0.0.1:8080"
        @Option(name: .customLong("cache-mib"), help: "Decoded-chunk cache size in MiB.") var cacheMiB = 256

        func validate() throws {
            _ = try address()
            guard cacheMiB >= 0 else { throw ValidationError("--cache-mib must be 0 or more") }
        }

        func address() throws -> (host: String, port: Int) {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0 ... 65535).contains(port),
                  colon != listen.startIndex
            else { throw ValidationError("--listen takes HOST:PORT, e.g. 127.0.0.1:8080") }
            var host = String(listen[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            return (host, port)
        }

        func run() async throws {
            let (host, port) = try address()
            let reader = try StoreReader(store: options.open(), configuration: .init(cacheCapacity: cacheMiB << 20))
            try await RangeServer.run(reader: reader, host: host, port: port) { host, port in
                // Written straight to fd 1 (unbuffered): a parent waiting for this line gets it now.
                let line = "listening on http://\(host.contains(":") ? "[\(host)]" : host):\(port)\n"
                try? Array(line.utf8).withUnsafeBytes { try StandardOutput.write($0) }
            }
        }
    }
}
