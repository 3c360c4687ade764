// The HTTP range service: stored files served at hub-style URLs, with byte ranges, over
// Hummingbird (HTTP/1.1; parsing and framing are Hummingbird's and SwiftNIO's).
//
//     GET|HEAD /{model}/resolve/{revision}/{path}      model: "name" or "org/name"
//
// `revision` `main` means the revision named main if there is one, else the model's newest.
// Responses carry Content-Length, Accept-Ranges: bytes, ETag: "<SHA-256 hex>", X-TenPak-Revision
// (the revision served) and the headers huggingface_hub relies on: X-Repo-Commit (the 40-hex commit
// id), X-Linked-Etag and X-Linked-Size. Status and length are decided before the first body byte:
// the first piece is read before the head is sent, so a damaged or busy start is a 500/503, and an
// error later in the body closes the connection (the client sees fewer bytes than Content-Length,
// never a short response it could trust). One `Range: bytes=` range gives 206 with Content-Range;
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
import TenPakModelStore

/// Answers `/{model}/resolve/{revision}/{path}` requests from a `StoreReader`.
public struct RangeService: Sendable {
    public let reader: StoreReader
    /// Largest piece of a body read and written at once: a response of any length holds at most two
    /// pieces in memory (the one being written and the next, read ahead).
    public let pieceSize: Int
    let metrics: ServerMetrics?

    public init(reader: StoreReader, pieceSize: Int = 4 << 20) {
        self.init(reader: reader, pieceSize: pieceSize, metrics: nil)
    }

    init(reader: StoreReader, pieceSize: Int, metrics: ServerMetrics?) {
        self.reader = reader
        self.pieceSize = max(pieceSize, 4096)
        self.metrics = metrics
    }

    /// A GET or HEAD of a file the caller may read (the router checked the model).
    func respond(to request: Request, target: Target) async -> Response {
        let repos = HubRepos(store: reader.store)
        let opened: (file: FileReader, commit: String)
        do {
            opened = try await RangeService.blocking { [reader] in
                let record = try repos.resolve(target.model, target.revision)
                let commit = HubRepos.commitID(record)
                let files = try reader.files(model: target.model, revision: record.revision).files
                guard files.contains(where: { $0.path == target.path }) else {
                    throw HubLookupError.entryNotFound(repo: target.model, commit: commit, path: target.path)
                }
                return (try reader.open(model: target.model, revision: record.revision, path: target.path), commit)
            }
        } catch {
            return RangeService.error(for: error)
        }
        return await serve(file: opened.file, commit: opened.commit, request: request)
    }

    /// GET or HEAD of an opened file: whole, or one range.
    func serve(file: FileReader, commit: String?, request: Request) async -> Response {
        var headers = HTTPFields()
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = "\"\(file.sha256.hex)\""
        headers[.contentType] = "application/octet-stream"
        // HTTPField.Name is HTTPTypes', which Hummingbird does not re-export: built by inference.
        headers[.init("X-TenPak-Revision")!] = file.revision.revision
        if let commit { headers[.init("X-Repo-Commit")!] = commit }
        headers[.init("X-Linked-Etag")!] = "\"\(file.sha256.hex)\""
        headers[.init("X-Linked-Size")!] = String(file.size)
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
        // The first piece before the head: a damaged first chunk or a store held by gc answers
        // 500/503 instead of a 200 followed by nothing.
        let first: ByteBuffer
        do {
            first = try await readPiece(file, at: range.lowerBound, end: range.upperBound).value
        } catch {
            return RangeService.error(for: error)
        }
        return Response(status: status, headers: headers, body: body(file, range, first: first))
    }

    private func readPiece(_ file: FileReader, at: Int, end: Int) -> Task<ByteBuffer, Error> {
        let n = min(pieceSize, end - at)
        let metrics = self.metrics
        return Task {
            try await RangeService.blocking {
                let clock = ContinuousClock()
                let started = clock.now
                var buffer = ByteBufferAllocator().buffer(capacity: n)
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { raw in
                    // Safe: `raw` holds at least `n` writable bytes (minimumWritableBytes).
                    try file.read(offset: at, into: UnsafeMutableRawBufferPointer(rebasing: raw[0 ..< n]))
                    return n
                }
                metrics?.recordRead(clock.now - started)
                return buffer
            }
        }
    }

    /// A streamed body: pieces of at most `pieceSize`, the next one read while this one is written.
    /// An error after the head throws out of the writer, and Hummingbird closes the connection.
    private func body(_ file: FileReader, _ range: Range<Int>, first: ByteBuffer) -> ResponseBody {
        ResponseBody(contentLength: range.count) { writer in
            var at = range.lowerBound + first.readableBytes
            var pending = at < range.upperBound ? readPiece(file, at: at, end: range.upperBound) : nil
            do {
                try await writer.write(first)
            } catch {
                pending?.cancel()
                throw error
            }
            while let task = pending {
                let buffer = try await task.value
                at += buffer.readableBytes
                pending = at < range.upperBound ? readPiece(file, at: at, end: range.upperBound) : nil
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
    }

    /// The answer to an error, its message passed through `message` (which may hide details).
    static func error(for error: Error, message: (String) -> String = { $0 }) -> Response {
        func answer(_ status: HTTPResponse.Status, code: String? = nil) -> Response {
            var response = RangeService.error(status, message("\(error)"))
            if let code { response.headers[.init("X-Error-Code")!] = code }
            return response
        }
        switch error {
        case let failure as Failure:
            return RangeService.error(failure.status, message(failure.message))
        case let lookup as HubLookupError:
            switch lookup {
            case .repoNotFound: return answer(.notFound, code: "RepoNotFound")
            case .revisionNotFound: return answer(.notFound, code: "RevisionNotFound")
            case let .entryNotFound(_, commit, _):
                var response = answer(.notFound, code: "EntryNotFound")
                response.headers[.init("X-Repo-Commit")!] = commit
                return response
            }
        case let error as StoreError:
            if case .notFound = error { return answer(.notFound) }
            if case .invalidRequest = error { return answer(.badRequest) }
            if case .busy = error {
                var response = answer(.serviceUnavailable)
                response.headers[.retryAfter] = "10"
                return response
            }
            if case .unavailable = error { return answer(.serviceUnavailable) }
            return answer(.internalServerError)
        case let error as ReaderError:
            if case .outOfRange = error { return answer(.rangeNotSatisfiable) }
            if case .malformedRange = error { return answer(.badRequest) }
            return answer(.notFound)
        case is FormatError:
            return answer(.badRequest)
        default:
            return answer(.internalServerError)
        }
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let line = message.replacingOccurrences(of: "\n", with: " ") + "\n"
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: line)))
    }

    /// Runs blocking work (catalog queries, chunk decodes) on Dispatch's pool instead of the
    /// cooperative thread pool, which must not block. Work that `waits` for other work (a pushed
    /// bundle's landing) gets a thread of its own (`startBlocking`): the pool is as wide as the
    /// machine has cores, and a worker waiting there holds back the requests queued behind it.
    static func blocking<T: Sendable>(waits: Bool = false, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let run: @Sendable () -> Void = { continuation.resume(with: Result { try body() }) }
            if waits { startBlocking(run) } else { DispatchQueue.global().async(execute: run) }
        }
    }
}
