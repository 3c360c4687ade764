import Foundation
import Hummingbird

/// The service's parsers of request bytes, as one `package` surface for the fuzzer
/// (Sources/tenpak-fuzz): each parses and drops its result, so the types behind stay internal.
/// A refusal is a thrown error; a trap or a hang in any of them is a bug the fuzzer reports.
package enum RequestParsers {
    /// The router: a method and a URL path (percent-encoded, as it arrives).
    package static func route(method: String, path: String) throws {
        guard let method = HTTPRequest.Method(method) else { return }
        _ = try HubServer.route(method, path)
    }

    /// The hub API's commit body (NDJSON).
    package static func commit(_ body: [UInt8]) throws {
        _ = try HubAPI.parseCommit(body)
    }

    /// A transfer `missing` / `frames` request body (`{"ids": […]}`).
    package static func chunkIDs(_ body: [UInt8]) throws {
        _ = try TransferService.ids(body)
    }

    /// A Xet xorb: its chunk headers, then every chunk decoded (LZ4, byte grouping).
    package static func xorb(_ body: [UInt8]) throws {
        let xorb = try Xorb(body)
        for i in xorb.chunks.indices { _ = try xorb.chunk(i) }
    }

    /// A Xet shard's file section.
    package static func shard(_ body: [UInt8]) throws {
        _ = try XetShard(body)
    }

    /// A `Range` header against a file of `size` bytes; true when it was well-formed.
    package static func range(_ header: String, size: Int) -> Bool {
        if case .malformed = RangeService.parseRange(header, size: size) { return false }
        return true
    }
}
