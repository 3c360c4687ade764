import TenPakFormat

/// Errors a store reports. Each message says what went wrong and, where there is one, what to do.
public enum StoreError: Error, CustomStringConvertible {
    /// A system call failed.
    case io(operation: String, path: String, errno: Int32)
    /// The directory is not a TenPak store.
    case notAStore(path: String, reason: String)
    /// A model, revision or file the user named does not exist.
    case notFound(String)
    /// The user asked for something the store refuses (bad name, duplicate revision, ...).
    case invalidRequest(String)
    /// Stored bytes or catalog rows are damaged: never returned as if they were right.
    case corrupt(String)
    /// The revision already exists (revisions are immutable).
    case revisionExists(String)
    /// A commit refused because a gc started after the writer's fence (it had lost its lock).
    case fenced(String)
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
        case let .notFound(message), let .invalidRequest(message), let .revisionExists(message), let .fenced(message):
            return message
        case let .corrupt(message):
            return "\(message); the store is damaged: run `tpstore fsck --read-data` to see what is affected"
        case let .busy(message):
            return "\(message); another tpstore is working on this store, try again shortly"
        case let .catalog(message):
            return "catalog: \(message)"
        case let .unavailable(message):
            return message
        }
    }
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
        .revisionExists("\(model)@\(revision) already exists; revisions are immutable, choose another revision name")
    }

    /// A commit refused by the gc fence (SPEC section 11).
    public static func fencedCommit(model: String, revision: String) -> StoreError {
        .fenced("\(model)@\(revision) was not committed: a gc started while this writer had lost the store lock, so chunks it relies on may be gone; nothing was stored, run it again")
    }

    /// A model the catalog does not know, or a revision it does not have (`revision` nil: any).
    public static func unknownRevision(model: String, revision: String?, modelKnown: Bool) -> StoreError {
        modelKnown ? .notFound("model \(model) has no revision \(revision ?? "") (see `tpstore ls \(model)`)")
            : .notFound("no model named \(model) in this store (see `tpstore ls`)")
    }
}
