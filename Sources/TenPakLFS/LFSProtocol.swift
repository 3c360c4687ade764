//! The git-lfs custom transfer protocol (git-lfs `docs/custom-transfers.md`), as this agent speaks it.
//!
//! Nouns: a **request** is one line of JSON git-lfs writes to the agent's stdin (`init`, `upload`,
//! `download`, `terminate`); a **response** is one line the agent writes to stdout (the `init`
//! confirmation, `progress`, `complete`, or a protocol error); an **oid** is the SHA-256 of an LFS
//! object's content as 64 lowercase hex digits.
import Foundation
import TenPakFormat

/// Which way a session moves objects; fixed by `init`.
public enum LFSOperation: String, Sendable, Equatable {
    case upload, download
}

/// One parsed request line.
public enum LFSRequest: Equatable, Sendable {
    case initialize(operation: LFSOperation, concurrent: Bool, concurrentTransfers: Int)
    /// `path` is the file git-lfs wants stored (in `.git/lfs/objects`).
    case upload(oid: LFSObjectID, size: Int, path: String)
    case download(oid: LFSObjectID, size: Int)
    case terminate

    var name: String {
        switch self {
        case .initialize: return "init"
        case .upload: return "upload"
        case .download: return "download"
        case .terminate: return "terminate"
        }
    }

    /// Parses one line. A line that is not a valid request throws an `LFSProtocolError` carrying
    /// the oid when the line had a usable one, so the answer can be that object's `complete`.
    public static func parse(_ line: String) throws -> LFSRequest {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed]),
              let fields = object as? [String: Any]
        else {
            throw LFSProtocolError(.malformedRequest, "not a JSON object: \(excerpt(line))")
        }
        guard let event = fields["event"] as? String else {
            throw LFSProtocolError(.malformedRequest, "request has no \"event\" string: \(excerpt(line))")
        }
        switch event {
        case "init":
            guard let op = fields["operation"] as? String, let operation = LFSOperation(rawValue: op) else {
                throw LFSProtocolError(.malformedRequest, "init: \"operation\" must be \"upload\" or \"download\"")
            }
            let concurrent = (fields["concurrent"] as? Bool) ?? false
            let transfers = (fields["concurrenttransfers"] as? NSNumber)?.intValue ?? 1
            return .initialize(operation: operation, concurrent: concurrent, concurrentTransfers: transfers)
        case "upload", "download":
            guard let text = fields["oid"] as? String else {
                throw LFSProtocolError(.malformedRequest, "\(event): no \"oid\" string")
            }
            guard let oid = LFSObjectID(text) else {
                throw LFSProtocolError(.badOid, "\(event): oid \"\(excerpt(text))\" is not 64 lowercase hex digits",
                                       oid: text.utf8.count <= 200 ? text : nil)
            }
            guard let number = fields["size"] as? NSNumber, number.int64Value >= 0,
                  number.doubleValue == Double(number.int64Value), number.int64Value <= Int64(Int.max)
            else {
                throw LFSProtocolError(.malformedRequest, "\(event) \(oid): \"size\" must be a non-negative integer", oid: oid.hex)
            }
            let size = Int(number.int64Value)
            if event == "download" { return .download(oid: oid, size: size) }
            guard let path = fields["path"] as? String, !path.isEmpty, !path.contains("\0") else {
                throw LFSProtocolError(.malformedRequest, "upload \(oid): no \"path\" to read the object from", oid: oid.hex)
            }
            return .upload(oid: oid, size: size, path: path)
        case "terminate":
            return .terminate
        default:
            throw LFSProtocolError(.unknownEvent, "unknown event \"\(excerpt(event))\"; this agent knows init, upload, download and terminate")
        }
    }

    static func excerpt(_ s: String) -> String {
        let clean = Names.printable(s)
        return clean.count > 120 ? String(clean.prefix(120)) + "…" : clean
    }
}

/// An LFS object id: the SHA-256 of the object's content, 64 lowercase hex digits (nothing else
/// is accepted, so an oid can never spell a path or a model name other than its own).
public struct LFSObjectID: Hashable, Sendable, CustomStringConvertible {
    public let hex: String
    public let digest: Digest256

    public init?(_ text: String) {
        guard text.utf8.count == 64,
              text.utf8.allSatisfy({ (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a") ... UInt8(ascii: "f")).contains($0) }),
              let digest = Digest256(hex: text)
        else { return nil }
        hex = text
        self.digest = digest
    }

    public var description: String { hex }
}

/// The error codes this agent puts in `error.code`. git-lfs shows them but does not interpret
/// them; they follow HTTP's meanings so they read like the LFS batch API's.
public enum LFSErrorCode: Int, Sendable {
    /// The line is not JSON, not an object, or lacks a field the event needs.
    case malformedRequest = 400
    /// Remote mode: the server wants a token (none given, or one it does not know).
    case unauthorized = 401
    /// Remote mode: the token may not read (download) or write (upload) the repository.
    case forbidden = 403
    /// The object is not in the store (download), or the remote repository does not hold it.
    case notFound = 404
    /// The event is not allowed now: a transfer before `init`, `init` twice, an upload in a
    /// download session or the other way round.
    case outOfOrder = 409
    /// The oid is not 64 lowercase hex digits.
    case badOid = 422
    /// The object's content does not match its oid or its declared size (upload), or the stored
    /// object does not match the request (download).
    case contentMismatch = 412
    /// An event the protocol does not define.
    case unknownEvent = 501
    /// The store failed: I/O, a damaged pack (the object is reported, never returned wrong),
    /// a busy store. The message says which.
    case storeFailure = 500
    /// Remote mode: the server could not be reached, or its answer broke the transfer protocol.
    case remoteFailure = 502
}

/// A protocol error: answered on stdout, never fatal to the agent.
public struct LFSProtocolError: Error, CustomStringConvertible, Equatable {
    public let code: LFSErrorCode
    public let message: String
    /// The oid the request named, when it named one (even a malformed one): the answer is then
    /// that object's `complete`, which is what git-lfs is waiting for.
    public let oid: String?

    public init(_ code: LFSErrorCode, _ message: String, oid: String? = nil) {
        self.code = code
        self.message = message
        self.oid = oid
    }

    public var description: String { "[\(code.rawValue)] \(message)" }
}

/// One line the agent writes.
public enum LFSResponse: Equatable, Sendable {
    /// `{}`: init accepted.
    case initialized
    /// `{"error": {...}}`: init refused, or a line that could not be tied to an object.
    case error(code: Int, message: String)
    case progress(oid: String, bytesSoFar: Int, bytesSinceLast: Int)
    /// `path` is set for a successful download.
    case complete(oid: String, path: String?)
    case failed(oid: String, code: Int, message: String)

    private struct ErrorBody: Encodable { let code: Int; let message: String }
    private struct Empty: Encodable {}
    private struct ErrorLine: Encodable { let error: ErrorBody }
    private struct ProgressLine: Encodable { let event = "progress"; let oid: String; let bytesSoFar: Int; let bytesSinceLast: Int }
    private struct CompleteLine: Encodable { let event = "complete"; let oid: String; let path: String? }
    private struct FailedLine: Encodable { let event = "complete"; let oid: String; let error: ErrorBody }

    /// The single line of JSON, without the line feed.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data: Data?
        switch self {
        case .initialized: data = try? encoder.encode(Empty())
        case let .error(code, message): data = try? encoder.encode(ErrorLine(error: ErrorBody(code: code, message: message)))
        case let .progress(oid, soFar, since): data = try? encoder.encode(ProgressLine(oid: oid, bytesSoFar: soFar, bytesSinceLast: since))
        case let .complete(oid, path): data = try? encoder.encode(CompleteLine(oid: oid, path: path))
        case let .failed(oid, code, message): data = try? encoder.encode(FailedLine(oid: oid, error: ErrorBody(code: code, message: message)))
        }
        // Safe: these structs of strings and integers always encode.
        return String(decoding: data ?? Data("{}".utf8), as: UTF8.self)
    }
}
