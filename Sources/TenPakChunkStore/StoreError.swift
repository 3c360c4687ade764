import TenPakFormat

/// Errors a store reports. A program decides by the case and its fields, never by the message;
/// each message (`description`) is one line saying what went wrong and, where there is one, what to do.
public enum StoreError: Error, CustomStringConvertible {
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32)
    /// The directory is not a TenPak store.
    case notAStore(path: String, reason: String)
    /// A model, revision, file or input path the caller named does not exist.
    case notFound(Missing)
    /// The caller asked for something the store refuses (bad name, over a limit, ...).
    case invalidRequest(String)
    /// Stored bytes or catalog rows are damaged: never returned as if they were right.
    case corrupt(Damage)
    /// The revision already exists (revisions are immutable).
    case revisionExists(model: String, revision: String)
    /// A commit refused because a gc started after the writer's fence (it had lost its lock).
    case fenced(FencedWrite)
    /// Another process holds what this one needs, past the retry deadline.
    case busy(String)
    /// The SQLite catalog reported an error.
    case catalog(String)
    /// A server the store lives on (S3, PostgreSQL) could not be reached or refused a request.
    case unavailable(String)

    public var description: String {
        switch self {
        case let .io(operation, path, errno):
            return "\(operation) \(path): \(String(cString: strerror(errno)))"
        case let .notAStore(path, reason):
            return "\(path) is not a TenPak store (\(reason)); create one with `tpstore init --store \(path)`"
        case let .notFound(missing):
            return missing.description
        case let .invalidRequest(message), let .unavailable(message):
            return message
        case let .corrupt(damage):
            return "\(damage); the store is damaged: run `tpstore fsck --read-data` to see what is affected"
        case let .revisionExists(model, revision):
            return "\(model)@\(revision) already exists; revisions are immutable, choose another revision name"
        case let .fenced(write):
            return "\(write) not committed: a gc started while this writer had lost the store lock, so chunks it relies on may be gone; nothing was stored, run it again"
        case let .busy(message):
            return "\(message); another tpstore is working on this store, try again shortly"
        case let .catalog(message):
            return "catalog: \(message)"
        }
    }
}

/// What a `StoreError.fenced` refused to commit.
public enum FencedWrite: Sendable, Equatable, CustomStringConvertible {
    /// A put, copy or transfer commit of one revision.
    case revision(model: String, revision: String)
    /// Chunks received ahead of their revision (transfer protocol, section 19).
    case chunks(count: Int)

    public var description: String {
        switch self {
        case let .revision(model, revision): return "\(model)@\(revision) was"
        case let .chunks(count): return "\(count) received chunks were"
        }
    }
}

/// What a `StoreError.notFound` is about.
public enum Missing: Sendable, Equatable, CustomStringConvertible, ExpressibleByStringInterpolation {
    /// No model of that name.
    case model(String)
    /// The model exists and has no such revision.
    case revision(model: String, revision: String)
    /// The revision has no file at that path.
    case file(model: String, revision: String, path: String)
    /// Another process removed the revision (or the file) while this one was using it.
    case removed(model: String, revision: String)
    /// A local file or directory given as input does not exist.
    case localPath(String)
    /// Anything else, in words.
    case other(String)

    public init(stringLiteral value: String) { self = .other(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self = .other(String(stringInterpolation: stringInterpolation)) }

    public var description: String {
        switch self {
        case let .model(model): return "no model named \(Names.printable(model)) in this store (see `tpstore ls`)"
        case let .revision(model, revision): return "model \(model) has no revision \(Names.printable(revision)) (see `tpstore ls \(model)`)"
        case let .file(model, revision, path): return "\(model)@\(revision) has no file \(Names.printable(path)) (see `tpstore show \(model)@\(revision)`)"
        case let .removed(model, revision): return "\(model)@\(revision) was removed by another process while this one was using it"
        case let .localPath(path): return "\(path): no such file or directory"
        case let .other(message): return message
        }
    }
}

/// Where stored bytes or catalog rows are damaged, with what was expected and found where known.
/// Fields a check does not know stay nil; `detail` is the sentence a user reads.
public struct Damage: Sendable, Equatable, CustomStringConvertible, ExpressibleByStringInterpolation {
    /// The chunk whose frame or bytes are wrong.
    public var chunk: ChunkID?
    /// The pack, and the offset in it, where the damage was found.
    public var pack: String?
    public var offset: Int?
    /// What the catalog or the frame promised, and what was found (lengths, ids, digests as text).
    public var expected: String?
    public var actual: String?
    public var detail: String

    public init(chunk: ChunkID? = nil, pack: String? = nil, offset: Int? = nil, expected: String? = nil, actual: String? = nil, _ detail: String) {
        self.chunk = chunk
        self.pack = pack
        self.offset = offset
        self.expected = expected
        self.actual = actual
        self.detail = detail
    }

    public init(stringLiteral value: String) { self.init(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(String(stringInterpolation: stringInterpolation)) }

    public var description: String { detail }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension StoreError {
    /// Whether a failed catalog write may nonetheless have been applied: the server was lost before
    /// it answered. Whoever wrote packs for it must then leave them to gc rather than delete them.
    public static func outcomeUnknown(_ error: Error) -> Bool {
        if case StoreError.unavailable = error { return true }
        return false
    }
}

extension StoreError {
    /// A put or copy to a revision name that is taken.
    public static func revisionAlreadyExists(model: String, revision: String) -> StoreError {
        .revisionExists(model: model, revision: revision)
    }

    /// A commit refused by the gc fence (SPEC section 11).
    public static func fencedCommit(model: String, revision: String) -> StoreError {
        .fenced(.revision(model: model, revision: revision))
    }

    /// A model the catalog does not know, or a revision it does not have (`revision` nil: any).
    public static func unknownRevision(model: String, revision: String?, modelKnown: Bool) -> StoreError {
        modelKnown ? .notFound(.revision(model: model, revision: revision ?? "")) : .notFound(.model(model))
    }
}
