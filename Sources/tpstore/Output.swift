import Foundation
import TenPakModelStore
import TenPakDistributed

/// Terminal output helpers: sizes, tables, JSON, and a progress line on TTYs.
enum Output {
    // The web pages of `tpstore serve` write figures with the same functions.
    static func bytes(_ n: Int) -> String { FigureText.bytes(n) }
    static func percent(_ part: Int, of whole: Int) -> String { FigureText.percent(part, of: whole) }
    static func ratio(_ part: Int, of whole: Int) -> String { FigureText.ratio(part, of: whole) }

    /// Left-aligned first column, right-aligned others.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = (0 ..< header.count).map { c in all.map { $0.count > c ? $0[c].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return c == 0 ? cell + pad : pad + cell
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static var stderrIsTTY: Bool { isatty(2) == 1 }

    /// A progress callback that redraws one stderr line on a TTY and prints nothing otherwise.
    static func progress(_ verb: String) -> (@Sendable (TransferProgress) -> Void)? {
        guard stderrIsTTY else { return nil }
        let started = Date()
        return { p in
            let seconds = max(Date().timeIntervalSince(started), 0.001)
            let rate = Double(p.done) / seconds / 1e6
            let line = String(format: "\r%@ %@ %@/%@ (%.0f MB/s)\u{1B}[K", verb, p.file, bytes(p.done), bytes(p.total), rate)
            FileHandle.standardError.write(Data(line.utf8))
            if p.done == p.total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        }
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("tpstore: warning: \(message)\n".utf8))
    }
}

extension Output {
    /// For Tools/bench_distributed.sh (TPSTORE_TRAFFIC=1): the server traffic of this command on a
    /// distributed store, on stderr.
    static func reportTraffic(_ store: ModelStore) {
        guard ProcessInfo.processInfo.environment["TPSTORE_TRAFFIC"] == "1", let traffic = store.chunks.distributedTraffic else { return }
        FileHandle.standardError.write(Data("traffic: \(traffic.s3Requests) S3 requests, \(traffic.postgresRoundTrips) PostgreSQL round trips\n".utf8))
    }
}
