// Uploads through `tpstore serve` (with `--auth` write tokens or `--allow-uploads`): a new revision
// from one request. The router (Server.swift) has checked that the caller may write the model.
//
//     PUT /{model}/resolve/{revision}/{path}   body: one file; the revision holds that file
//     PUT /{model}/revisions/{revision}        body: a tar archive; the revision holds its files
//
// Query `?base=auto` (default), `?base=none` or `?base=NAME[@REV]` chooses the delta base as
// `tpstore put` does. The body is spooled to local disk as it arrives (memory stays bounded by one
// 1 MiB buffer), then stored with the ordinary put, so the guarantees are put's: the revision
// appears whole at its commit or not at all. Answers: 201 with a JSON receipt; 400 malformed
// names or archive; 408 a body too slow or stalled; 409 revision exists; 413 body over the limit;
// 503 store busy, a server unreachable, or every upload slot taken. Error messages never show
// the spool path.
import Foundation
import Hummingbird
import NIOCore
import TenPakChunkStore
import TenPakFormat
import TenPakModelStore

/// How a server takes uploads.
public struct UploadOptions: Sendable {
    /// Where request bodies are spooled before they are stored (one subdirectory per request,
    /// removed when the request ends; leftovers of a crashed server are removed at start).
    public var spoolDirectory: String
    /// When set (and the server has no `--auth` file), uploads need `Authorization: Bearer <token>`.
    public var token: String?
    /// Largest request body accepted, in bytes.
    public var maxBytes: Int
    /// Uploads spooling or waiting to be stored at once; more get 503. Spool disk use is bounded
    /// by this times `maxBytes`.
    public var maxConcurrent: Int
    /// How long a body may pause, and the rate it must keep (SPEC section 14): a slow or stalled
    /// client loses its upload slot instead of holding it forever.
    public var idleTimeout: Duration
    public var minimumRate: Int
    public var grace: Duration
    /// Disk space (allocated bytes) Xet xorbs may take in `<spoolDirectory>/tpstore-xet` (SPEC 14.9).
    public var xetSpaceBytes: Int

    public init(spoolDirectory: String = NSTemporaryDirectory(), token: String? = nil, maxBytes: Int = 1 << 40, maxConcurrent: Int = 4,
                idleTimeout: Duration = .seconds(30), minimumRate: Int = 16 << 10, grace: Duration = .seconds(10),
                xetSpaceBytes: Int = 64 << 30) {
        self.xetSpaceBytes = xetSpaceBytes
        self.spoolDirectory = spoolDirectory
        self.token = token
        self.maxBytes = maxBytes
        self.maxConcurrent = max(1, maxConcurrent)
        self.idleTimeout = idleTimeout
        self.minimumRate = minimumRate
        self.grace = grace
    }

    /// The limits of an upload body.
    var limits: BodyLimits { BodyLimits(maxBytes: maxBytes, idleTimeout: idleTimeout, minimumRate: minimumRate, grace: grace) }
}

/// What a successful upload answers (201, `application/json`).
struct UploadReceipt: Codable {
    struct File: Codable {
        let path: String
        let size: Int
        let storedBytes: Int
        let sharedChunks: Int
        let deltaChunks: Int
        let freshChunks: Int
    }

    let model: String
    let revision: String
    let files: [File]
    let bytes: Int
    let storedBytes: Int
    let base: String?
    let baseReason: String?
}

/// Takes `PUT` requests and stores their bodies as new revisions.
public struct UploadService: Sendable {
    public let store: ModelStore
    public let options: UploadOptions
    /// Shared with the hub API's commits and LFS uploads: one put at a time, at most
    /// `maxConcurrent` bodies spooling at once.
    let gate = WorkGate(width: 1)
    /// Pushed bundles landing behind the gate: one is written while the next is checked (19.5).
    let landings = LandingLane()
    let admitted = AdmissionCounter()
    static let bufferSize = 1 << 20

    public init(store: ModelStore, options: UploadOptions) {
        self.store = store
        self.options = options
    }

    /// What a PUT URL names.
    struct Target {
        enum Body { case file(path: String), tar }
        let model: String
        let revision: String
        let body: Body

        init(path raw: String) throws {
            let segments = try RangeService.segments(of: raw)
            // The resolve forms first, in the order GET reads them, so one URL never names two things.
            let modelSegments: Int
            if segments.count >= 4, segments[1] == "resolve" {
                (modelSegments, body) = (1, .file(path: segments[3...].joined(separator: "/")))
            } else if segments.count == 3, segments[1] == "revisions" {
                (modelSegments, body) = (1, .tar)
            } else if segments.count == 4, segments[2] == "revisions" {
                (modelSegments, body) = (2, .tar)
            } else if segments.count >= 5, segments[2] == "resolve" {
                (modelSegments, body) = (2, .file(path: segments[4...].joined(separator: "/")))
            } else {
                throw RangeService.Failure(status: .notFound, message: "uploads go to PUT /{model}/resolve/{revision}/{path} (one file) or PUT /{model}/revisions/{revision} (a tar archive)")
            }
            model = segments[0 ..< modelSegments].joined(separator: "/")
            revision = segments[modelSegments + 1]
            do {
                try Names.validateModel(model)
                try Names.validateRevision(revision)
                if case let .file(path) = body { try Names.validatePath(path) }
            } catch {
                throw RangeService.Failure(status: .badRequest, message: "\(error)")
            }
        }
    }

    /// Stores one PUT. The caller has checked that the request may write to the target's model.
    public func respond(to request: Request, channel: (any Channel)?) async -> Response {
        var spoolPath: String?
        do {
            let target = try Target(path: request.uri.path)
            let base = try UploadService.baseChoice(request.uri.queryParameters["base"].map(String.init))
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > options.maxBytes {
                throw BodyFailure.tooLarge(limit: options.maxBytes)
            }
            // Refused before the body is read, so a large upload to a taken name costs nothing.
            if try await RangeService.blocking({ [store] in try UploadService.exists(store, target) }) {
                throw StoreError.revisionAlreadyExists(model: target.model, revision: target.revision)
            }
            let slot = try admit()
            defer { slot.leave() }
            let spool = try UploadSpool(parent: options.spoolDirectory, target: target)
            spoolPath = spool.directory
            defer { spool.remove() }
            try await receive(request.body, channel: channel, into: spool)
            let inputs = try await RangeService.blocking { try spool.finish() }
            let report = try await gate.run { [store] in
                try await RangeService.blocking {
                    try store.put(model: target.model, revision: target.revision, inputs: inputs, base: base)
                }
            }
            return UploadService.created(report)
        } catch {
            return UploadService.error(for: error, hiding: spoolPath)
        }
    }

    /// One of the `maxConcurrent` upload slots, or 503.
    func admit() throws -> AdmissionCounter.Slot {
        guard let slot = admitted.enter(limit: options.maxConcurrent) else {
            throw UploadSlotsFull(limit: options.maxConcurrent)
        }
        return slot
    }

    /// Copies the body into the spool in buffers of `bufferSize`, each written off the cooperative pool.
    private func receive(_ body: RequestBody, channel: (any Channel)?, into spool: UploadSpool) async throws {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(UploadService.bufferSize)
        try await BodyReader.read(body, limits: options.limits, channel: channel) { piece in
            piece.withUnsafeReadableBytes { buffer.append(contentsOf: $0) }
            if buffer.count >= UploadService.bufferSize {
                let full = buffer
                try await RangeService.blocking { try spool.write(full) }
                buffer.removeAll(keepingCapacity: true)
            }
        }
        let rest = buffer
        try await RangeService.blocking { try spool.write(rest) }
    }

    static func exists(_ store: ModelStore, _ target: Target) throws -> Bool {
        do {
            _ = try store.catalog.resolve(model: target.model, revision: target.revision)
            return true
        } catch StoreError.notFound {
            return false
        }
    }

    static func baseChoice(_ value: String?) throws -> BaseChoice {
        switch value {
        case nil, "auto", "automatic": return .automatic
        case "none": return .none
        case let .some(text):
            do {
                let (model, revision) = try Names.parseReference(text)
                return .explicit(model: model, revision: revision)
            } catch {
                throw RangeService.Failure(status: .badRequest, message: "base=\(Names.printable(text)): expected auto, none or NAME[@REV] (\(error))")
            }
        }
    }

    static func created(_ report: PutReport) -> Response {
        let receipt = UploadReceipt(
            model: report.revision.model, revision: report.revision.revision,
            files: report.files.map { .init(path: $0.path, size: $0.size, storedBytes: $0.storedBytes, sharedChunks: $0.sharedChunks,
                                            deltaChunks: $0.deltaChunks, freshChunks: $0.freshChunks) },
            bytes: report.rawBytes, storedBytes: report.storedBytes,
            base: report.base.map { "\($0.revision.model)@\($0.revision.revision)" }, baseReason: report.base?.reason)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? encoder.encode(receipt)) ?? Data("{}".utf8)
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.location] = "/\(report.revision.model)/resolve/\(report.revision.revision)/"
        return Response(status: .created, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: Array(json) + [10])))
    }

    /// The answer to a failed upload. Messages never show where the body was spooled: `hiding`
    /// (the request's spool directory) is replaced by "(upload)".
    static func error(for error: Error, hiding spool: String? = nil) -> Response {
        let text = { (message: String) -> String in
            guard let spool else { return message }
            return message.replacingOccurrences(of: spool + "/files/", with: "").replacingOccurrences(of: spool, with: "(upload)")
        }
        switch error {
        case let error as StoreError:
            if case .revisionExists = error { return RangeService.error(.conflict, text("\(error)")) }
            if case .unavailable = error { return RangeService.error(.serviceUnavailable, text("\(error)")) }
            if case .fenced = error { return RangeService.error(.serviceUnavailable, text("\(error)")) }
        case let error as TarError:
            return RangeService.error(.badRequest, text("\(error)"))
        case let failure as UploadSlotsFull:
            var response = RangeService.error(.serviceUnavailable, failure.description)
            response.headers[.retryAfter] = "5"
            return response
        case let failure as BodyFailure:
            if case .tooLarge = failure { return RangeService.error(.contentTooLarge, failure.description) }
            return RangeService.error(.requestTimeout, failure.description)
        default:
            break
        }
        return RangeService.error(for: error, message: text)
    }
}

/// Every upload slot is taken (503, `Retry-After`).
struct UploadSlotsFull: Error, CustomStringConvertible {
    let limit: Int
    var description: String { "this server is already receiving \(limit) uploads, its limit: try again in a few seconds" }
}

/// One request's spool directory and what is being written into it.
final class UploadSpool: @unchecked Sendable {
    // Safe: a request writes its spool from one task at a time, each step awaited before the next.
    let directory: String
    private let spool: SpoolDirectory
    private let target: UploadService.Target
    private let tar: TarExtractor?
    private var file: OpenFile?
    private var written = 0

    init(parent: String, target: UploadService.Target) throws {
        spool = try SpoolDirectory(parent: parent)
        directory = spool.path
        self.target = target
        do {
            switch target.body {
            case .tar:
                tar = TarExtractor(directory: directory + "/files")
                try FileSystem.makeDirectories(directory + "/files")
            case .file:
                tar = nil
                file = try OpenFile(path: directory + "/file", mode: .createExclusive)
            }
        } catch {
            spool.remove()
            throw error
        }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            if let tar {
                try tar.feed(raw)
            } else if let file {
                try file.write(raw, at: written)
            }
        }
        written += bytes.count
    }

    /// The files to put, each named by its path in the revision.
    func finish() throws -> [PutInput] {
        switch target.body {
        case let .file(path):
            file = nil
            return [PutInput(source: directory + "/file", path: path)]
        case .tar:
            guard let tar else { return [] }
            return try tar.finish().map { PutInput(source: $0.location, path: $0.path) }
        }
    }

    func remove() {
        file = nil
        spool.remove()
    }
}

/// At most `width` bodies at once; the others wait their turn, first come first served. Puts take
/// one of width 1 (a put already uses every core, and queued uploads wait with their bodies spooled
/// instead of competing for memory); the transfer routes' frame reads one of width 2 (each holds up
/// to a bundle's frames in memory, so the width bounds what a crowd of pulls can take).
actor WorkGate {
    let width: Int
    private var running = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(width: Int) { self.width = max(1, width) }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if running < width {
            running += 1
        } else {
            // The slot is handed over by the finishing body (`running` stays as it is).
            await withCheckedContinuation { waiters.append($0) }
        }
        defer {
            if waiters.isEmpty { running -= 1 } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

/// How many uploads a server is taking now.
final class AdmissionCounter: @unchecked Sendable {
    // Safe: `count` is touched only inside `lock`.
    private var count = 0
    private let lock = NSLock()

    /// A taken slot; `leave` gives it back (once).
    final class Slot: @unchecked Sendable {
        // Safe: `left` is touched only inside the counter's lock.
        private let counter: AdmissionCounter
        private var left = false
        init(_ counter: AdmissionCounter) { self.counter = counter }
        func leave() { counter.release(self) }
        fileprivate func markLeft() -> Bool { if left { return false }; left = true; return true }
    }

    func enter(limit: Int) -> Slot? {
        lock.withLock {
            guard count < limit else { return nil }
            count += 1
            return Slot(self)
        }
    }

    fileprivate func release(_ slot: Slot) { lock.withLock { if slot.markLeft() { count -= 1 } } }

    var inUse: Int { lock.withLock { count } }
}
