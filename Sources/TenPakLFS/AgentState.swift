/// Where a transfer session is in the protocol. Every request goes through `transition(on:)`,
/// which either moves the session on or throws an `outOfOrder` error and leaves it where it was:
///
///     awaitingInit --init(op)--> ready(op) --upload/download matching op--> ready(op)
///          |                        |
///          +------terminate---------+-----terminate--> terminated (nothing may follow)
///
/// A failed init (the store cannot be opened) leaves the session in `awaitingInit`.
public enum AgentState: Equatable, Sendable {
    case awaitingInit
    case ready(LFSOperation)
    case terminated

    public mutating func transition(on request: LFSRequest) throws {
        switch (self, request) {
        case let (.awaitingInit, .initialize(operation, _, _)):
            self = .ready(operation)
        case (.awaitingInit, .upload), (.awaitingInit, .download):
            throw LFSProtocolError(.outOfOrder, "\(request.name) before init: git-lfs sends init first", oid: request.oid)
        case (.ready, .initialize):
            throw LFSProtocolError(.outOfOrder, "init sent twice")
        case (.ready(.upload), .upload), (.ready(.download), .download):
            break
        case let (.ready(operation), _) where request.oid != nil:
            throw LFSProtocolError(.outOfOrder, "\(request.name) in a session initialized for \(operation.rawValue)s", oid: request.oid)
        case (_, .terminate) where self != .terminated:
            self = .terminated
        default:
            throw LFSProtocolError(.outOfOrder, "\(request.name) after terminate", oid: request.oid)
        }
    }
}

extension LFSRequest {
    /// The object a transfer request names.
    var oid: String? {
        switch self {
        case let .upload(oid, _, _), let .download(oid, _): return oid.hex
        case .initialize, .terminate: return nil
        }
    }
}
