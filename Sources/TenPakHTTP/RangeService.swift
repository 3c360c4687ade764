// The HTTP range service: stored files served at hub-style URLs, with byte ranges, over
// Hummingbird (HTTP/1.1; parsing and framing are Hummingbird's and SwiftNIO's).
//
//     GET|HEAD /{model}/resolve/{revision}/{path}      model: "name" or "org/name"
//
// `revision` `main` means the revision named main if there is one, else the model's newest.
// Responses carry Content-Length, Accept-Ranges: bytes, ETag: "<SHA-256 hex>", and
// X-TenPak-Revision (the revision served). One `Range: bytes=` range gives 206 with Content-Range;
// a range starting past the end gives 416 with `Content-Range: bytes */SIZE`; a malformed one 400;
// several ranges at once are ignored (200, the whole file, as RFC 9110 allows). Unknown model,
// revision or path: 404. Names or paths with `.`/`..` components, backslashes or control
// characters: 400. Errors have a one-line text/plain body.
import Dispatch
import Foundation
import Hummingbird
import TenPakChunkStore
import TenPakFormat
import TenPakReader

/// Answers `/{model}/resolve/{revision}/{path}` requests from a `StoreReader`.
public struct RangeService: HTTPResponder {
    public typealias Context = BasicRequestContext

    public let reader: StoreReader
    /// Largest piece of a body read and written at once: a response of any length holds at most two
    /// pieces in memory (the one being written and the next, read ahead).
    public let pieceSize: Int

    public init(reader: StoreReader, pieceSize: Int = 4 << 20) {
        self.reader = reader
        self.pieceSize = max(pieceSize, 4096)
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        guard request.method == .get || request.method == .head else {
            var response = RangeService.error(.methodNotAllowed, "only GET and HEAD are supported")
            response.headers[.allow] = "GET, HEAD"
            return response
        }
        let target: Target
        do {
            target = try Target(path: request.uri.path)
        } catch let failure as Failure {
            return RangeService.error(failure.status, failure.message)
        }
        let file: FileReader
        do {
            file = try await RangeService.blocking { [reader] in try target.open(reader) }
        } catch {
            return RangeService.error(for: error)
        }
        var headers = HTTPFields()
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(file.sha256.hex)\""
        headers[.contentType] = "application/octet-stream"
        // HTTPField.Name is HTTPTypes', which Hummingbird does not re-export: built by inference.
        headers[.init("X-TenPak-Revision")!] = file.revision.revision
        var status = HTTPResponse.Status.ok
        var range = 0 ..< file.size
        if let value = request.headers[.range] {
            switch RangeService.parseRange(value, size: file.size) {
            case .whole:
                break
            case let .partial(r):
                status = .partialContent
                range = r
                headers[.contentRange] = "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(file.size)"
            case .unsatisfiable:
                var response = RangeService.error(.rangeNotSatisfiable, "range \(value) starts past the end of \(file.path) (\(file.size) bytes)")
                response.headers[.contentRange] = "bytes */\(file.size)"
                response.headers[.acceptRanges] = "bytes"
                return response
            case let .malformed(message):
                return RangeService.error(.badRequest, message)
            }
        }
        headers[.contentLength] = String(range.count)
        if request.method == .head {
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        return Response(status: status, headers: headers, body: body(file, range))
    }

    /// A streamed body: pieces of at most `pieceSize`, the next one read while this one is written.
    private func body(_ file: FileReader, _ range: Range<Int>) -> ResponseBody {
        let pieceSize = self.pieceSize
        return ResponseBody(contentLength: range.count) { writer in
            func readPiece(_ at: Int) -> Task<ByteBuffer, Error> {
                let n = min(pieceSize, range.upperBound - at)
                return Task {
                    try await RangeService.blocking {
                        var buffer = ByteBufferAllocator().buffer(capacity: n)
                        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { raw in
                            try file.read(offset: at, into: UnsafeMutableRawBufferPointer(rebasing: raw[0 ..< n]))
                            return n
                        }
                        return buffer
                    }
                }
            }
            var at = range.lowerBound
            var pending = at < range.upperBound ? readPiece(at) : nil
            while let task = pending {
                let buffer = try await task.value
                at += buffer.readableBytes
                pending = at < range.upperBound ? readPiece(at) : nil
                do {
                    try await writer.write(buffer)
                } catch {
                    pending?.cancel()
                    throw error
                }
            }
            try await writer.finish(nil)
        }
    }

    // MARK: ranges

    enum RangeAnswer: Equatable {
        case whole
        case partial(Range<Int>)
        case unsatisfiable
        case malformed(String)
    }

    /// Interprets a `Range` header value for a file of `size` bytes.
    static func parseRange(_ value: String, size: Int) -> RangeAnswer {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals].lowercased() == "bytes" else {
            return .malformed("malformed Range header \"\(Names.printable(value))\": expected bytes=START-END")
        }
        let spec = trimmed[trimmed.index(after: equals)...]
        if spec.contains(",") {
            // Several ranges: every one must parse, then the header is ignored (200, whole file).
            for part in spec.split(separator: ",", omittingEmptySubsequences: false) {
                if (try? ByteRange(parsing: part)) == nil {
                    return .malformed("malformed Range header \"\(Names.printable(value))\"")
                }
            }
            return .whole
        }
        let range: ByteRange
        do {
            range = try ByteRange(parsing: spec)
        } catch {
            return .malformed("malformed Range header \"\(Names.printable(value))\": expected bytes=START-END, bytes=START- or bytes=-SUFFIX")
        }
        guard let resolved = range.resolve(size: size, clampEnd: true) else { return .unsatisfiable }
        return .partial(resolved)
    }

    // MARK: targets and errors

    struct Failure: Error {
        let status: HTTPResponse.Status
        let message: String
    }

    /// A URL path's segments after the leading "/", each percent-decoded (empty ones kept, so
    /// validation sees them).
    static func segments(of path: String) throws -> [String] {
        try path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { part in
            guard let decoded = part.removingPercentEncoding else {
                throw Failure(status: .badRequest, message: "malformed percent-encoding in the URL path")
            }
            return decoded
        }
    }

    /// The model, revision and path a URL names.
    struct Target: Sendable {
        let model: String
        let revision: String
        let path: String

        init(path raw: String) throws {
            let segments = try RangeService.segments(of: raw)
            let modelSegments: Int
            if segments.count >= 4, segments[1] == "resolve" {
                modelSegments = 1
            } else if segments.count >= 5, segments[2] == "resolve" {
                modelSegments = 2
            } else {
                throw Failure(status: .notFound, message: "no such resource: URLs are /{model}/resolve/{revision}/{path}")
            }
            model = segments[0 ..< modelSegments].joined(separator: "/")
            revision = segments[modelSegments + 1]
            path = segments[(modelSegments + 2)...].joined(separator: "/")
            do {
                try Names.validateModel(model)
                try Names.validateRevision(revision)
                try Names.validatePath(path)
            } catch {
                throw Failure(status: .badRequest, message: "\(error)")
            }
        }

        /// `main` is the revision named main if there is one, else the newest.
        func open(_ reader: StoreReader) throws -> FileReader {
            if revision == "main" {
                do {
                    return try reader.open(model: model, revision: "main", path: path)
                } catch let error as StoreError {
                    guard case let .notFound(message) = error, message.contains("has no revision") else { throw error }
                    return try reader.open(model: model, revision: nil, path: path)
                }
            }
            return try reader.open(model: model, revision: revision, path: path)
        }
    }

    static func error(for error: Error) -> Response {
        switch error {
        case let failure as Failure:
            return RangeService.error(failure.status, failure.message)
        case let error as StoreError:
            if case .notFound = error { return RangeService.error(.notFound, "\(error)") }
            if case .invalidRequest = error { return RangeService.error(.badRequest, "\(error)") }
            if case .busy = error { return RangeService.error(.serviceUnavailable, "\(error)") }
            return RangeService.error(.internalServerError, "\(error)")
        case let error as ReaderError:
            if case .outOfRange = error { return RangeService.error(.rangeNotSatisfiable, "\(error)") }
            if case .malformedRange = error { return RangeService.error(.badRequest, "\(error)") }
            return RangeService.error(.notFound, "\(error)")
        case let error as FormatError:
            return RangeService.error(.badRequest, "\(error)")
        default:
            return RangeService.error(.internalServerError, "\(error)")
        }
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let line = message.replacingOccurrences(of: "\n", with: " ") + "\n"
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: line)))
    }

    /// Runs blocking work (catalog queries, chunk decodes) on Dispatch's pool instead of the
    /// cooperative thread pool, which must not block.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// Routes a request: PUT to the `UploadService` when the server takes uploads, everything else
/// to the `RangeService`.
public struct StoreService: HTTPResponder {
    public typealias Context = BasicRequestContext
    public let ranges: RangeService
    public let uploads: UploadService?

    public init(ranges: RangeService, uploads: UploadService?) {
        self.ranges = ranges
        self.uploads = uploads
    }

    public func respond(to request: Request, context: Context) async throws -> Response {
        if request.method == .put, let uploads {
            return await uploads.respond(to: request, context: context)
        }
        if request.method != .get, request.method != .head {
            var response = RangeService.error(.methodNotAllowed, uploads == nil
                ? "only GET and HEAD are supported (this server takes no uploads: start it with --allow-uploads)"
                : "only GET, HEAD and PUT are supported")
            response.headers[.allow] = uploads == nil ? "GET, HEAD" : "GET, HEAD, PUT"
            return response
        }
        return try await ranges.respond(to: request, context: context)
    }
}

/// The `tpstore serve` server: a `StoreService` on one address until SIGINT or SIGTERM.
public enum RangeServer {
    /// Serves until SIGINT/SIGTERM (graceful: running responses finish). `onListening` gets the
    /// bound host and port (the real port when `port` is 0). With `uploads`, PUT stores revisions.
    public static func run(reader: StoreReader, uploads: UploadOptions? = nil, host: String, port: Int,
                           onListening: @escaping @Sendable (String, Int) -> Void) async throws {
        let service = StoreService(ranges: RangeService(reader: reader),
                                   uploads: uploads.map { UploadService(store: reader.store, options: $0) })
        let app = Application(
            responder: service,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "tpstore"),
            onServerRunning: { channel in
                onListening(host, channel.localAddress?.port ?? port)
            }
        )
        try await app.runService()
    }
}
