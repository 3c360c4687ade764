import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import TenPakChunkStore

/// Where a distributed store's catalog lives: a PostgreSQL database.
public struct PostgresConfig: Codable, Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// The schema holding the catalog's tables (default: the server's search path, normally `public`).
    public var schema: String?

    public init(host: String, port: Int = 5432, user: String, password: String? = nil, database: String, schema: String? = nil) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.schema = schema
    }

    /// `schema` checked to be a plain lowercase identifier (so it never needs quoting).
    static func checkedIdentifier(_ name: String) throws -> String {
        guard let first = name.utf8.first, first == UInt8(ascii: "_") || (UInt8(ascii: "a") ... UInt8(ascii: "z")).contains(first),
              name.utf8.count <= 63,
              name.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || (UInt8(ascii: "a") ... UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0") ... UInt8(ascii: "9")).contains($0) })
        else { throw StoreError.invalidRequest("PostgreSQL schema name \"\(name)\" must be lowercase letters, digits and _") }
        return name
    }
}

/// A value bound to a query parameter.
enum PGValue {
    case int(Int64)
    case text(String)
    case bytes([UInt8])
    case null

    static func int(_ v: Int) -> PGValue { .int(Int64(v)) }
}

/// One PostgreSQL session used synchronously.
///
/// Blocking: each query waits on its `EventLoopFuture` with `wait()`. Safe because callers are
/// the store's own threads, never an event-loop thread of `MultiThreadedEventLoopGroup.singleton`
/// (NIO traps if that rule is broken), and nothing runs on Swift's cooperative pool.
/// Queries on one session are serialized by `lock` (a session runs one query at a time anyway).
///
/// With `reconnects`, a session whose connection was closed (server restart, a statement timeout,
/// a terminated backend) opens a new one at the next statement outside a transaction; inside one it
/// fails, since the transaction is lost. Lock sessions never reconnect: their lock died with them.
final class PGSession: @unchecked Sendable {
    // Safe: `connection` and `transactionOpen` are only used inside `lock`.
    private var connection: PostgresConnection
    private var transactionOpen = false
    private let lock = NSLock()
    let config: PostgresConfig
    let roundTrips: Counter
    /// Longest wait for one statement's answer, in seconds.
    let timeout: Double
    let reconnects: Bool
    private static let logger = Logger(label: "tenpak.postgres", factory: { _ in SwiftLogNoOpLogHandler() })

    init(config: PostgresConfig, roundTrips: Counter = Counter(), timeout: Double = 300, reconnects: Bool = false) throws {
        self.config = config
        self.roundTrips = roundTrips
        self.timeout = timeout
        self.reconnects = reconnects
        connection = try PGSession.connect(config, roundTrips: roundTrips, timeout: timeout)
    }

    /// A new connection, with the config's schema as its search path.
    private static func connect(_ config: PostgresConfig, roundTrips: Counter, timeout: Double) throws -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(host: config.host, port: config.port, username: config.user,
                                                             password: config.password, database: config.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        let connection: PostgresConnection
        do {
            connection = try PGSession.wait(for: PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                                                                             id: 1, logger: PGSession.logger), seconds: 30) {}
        } catch {
            throw StoreError.unavailable("PostgreSQL at \(config.host):\(config.port) (database \(config.database), user \(config.user)) is unreachable: \(PGSession.describe(error)) (is the server running and reachable?)")
        }
        if let schema = config.schema {
            do {
                roundTrips.add()
                let set = PostgresQuery(unsafeSQL: "SET search_path TO \(try PostgresConfig.checkedIdentifier(schema))", binds: PostgresBindings())
                _ = try PGSession.wait(for: connection.query(set, logger: PGSession.logger), seconds: timeout) {}
            } catch {
                let _: EventLoopFuture<Void> = connection.close()
                throw error
            }
        }
        return connection
    }

    deinit {
        // Closing ends the session, which releases its advisory locks. PostgresConnection must be
        // closed before it is released; wait for that unless (never expected) this runs on an
        // event-loop thread, where waiting would trap.
        let closing: EventLoopFuture<Void> = connection.close()
        if MultiThreadedEventLoopGroup.currentEventLoop == nil { _ = try? PGSession.wait(for: closing, seconds: 10) {} }
    }

    struct NoAnswer: Error {}

    /// Blocks until `future` completes or `seconds` pass (then runs `onTimeout` and throws).
    /// Safe: callers are never on an event-loop thread (see the type's doc comment).
    static func wait<T: Sendable>(for future: EventLoopFuture<T>, seconds: Double, onTimeout: () -> Void) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        future.whenComplete { result in
            box.set(result)
            done.signal()
        }
        guard done.wait(timeout: .now() + seconds) == .success, let result = box.get() else {
            onTimeout()
            throw StoreError.unavailable("PostgreSQL gave no answer within \(Int(seconds)) s (server unreachable or overloaded)")
        }
        return try result.get()
    }

    static func describe(_ error: Error) -> String {
        if let e = error as? PSQLError {
            if let message = e.serverInfo?[.message] { return message + (e.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "") }
            return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }

    static func sqlState(_ error: Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Runs one statement and returns its rows. A statement that gets no answer within `timeout`
    /// (a server cut off without a TCP reset, a session the server terminated) fails with
    /// `StoreError.unavailable` instead of blocking forever.
    @discardableResult
    func query(_ sql: String, _ values: [PGValue] = []) throws -> [PostgresRandomAccessRow] {
        try run(sql, values, step: .statement)
    }

    /// Starts a transaction; `commit` or `rollback` ends it. The session tracks it by these calls
    /// (a session whose connection dropped mid-transaction must not reconnect into a new one).
    func begin() throws { try run("BEGIN", [], step: .begin) }
    func commit() throws { try run("COMMIT", [], step: .end) }
    /// Ends the transaction; on a connection already gone there is nothing to roll back.
    func rollback() throws { try run("ROLLBACK", [], step: .rollback) }

    /// What a statement does to the session's transaction.
    private enum Step { case statement, begin, end, rollback }

    @discardableResult
    private func run(_ sql: String, _ values: [PGValue], step: Step) throws -> [PostgresRandomAccessRow] {
        var binds = PostgresBindings(capacity: values.count)
        for v in values {
            switch v {
            case let .int(i): binds.append(i)
            case let .text(s): binds.append(s)
            case let .bytes(b): binds.append(ByteBuffer(bytes: b))
            case .null: binds.appendNull()
            }
        }
        let q = PostgresQuery(unsafeSQL: sql, binds: binds)
        return try lock.withLock {
            roundTrips.add()
            if connection.isClosed {
                guard reconnects, !transactionOpen || step == .rollback else {
                    if step == .end || step == .rollback { transactionOpen = false }
                    throw StoreError.unavailable("PostgreSQL at \(config.host):\(config.port): the connection was closed (server restarted, or the session was terminated)")
                }
                // A closed connection has no transaction left to roll back.
                transactionOpen = false
                if step == .rollback { return [] }
                connection = try PGSession.connect(config, roundTrips: roundTrips, timeout: timeout)
            }
            switch step {
            case .begin: transactionOpen = true
            case .end, .rollback: transactionOpen = false
            case .statement: break
            }
            do {
                let result = try PGSession.wait(for: connection.query(q, logger: PGSession.logger), seconds: timeout) { [connection] in
                    // The session is unusable after a lost answer: close it, so the next query fails at once.
                    let _: EventLoopFuture<Void> = connection.close()
                }
                return result.rows.map { $0.makeRandomAccess() }
            } catch let error as PSQLError {
                throw PGError(error: error)
            } catch {
                throw StoreError.unavailable("PostgreSQL at \(config.host):\(config.port): \(PGSession.describe(error))")
            }
        }
    }
}

/// A server-side error, with its SQLSTATE for callers that handle some (unique violations).
struct PGError: Error, CustomStringConvertible {
    let error: PSQLError
    var sqlState: String? { error.serverInfo?[.sqlState] }
    var description: String { "catalog: \(PGSession.describe(error))" }
}

extension PostgresRandomAccessRow {
    func int(_ i: Int) throws -> Int64 { try self[i].decode(Int64.self) }
    func text(_ i: Int) throws -> String { try self[i].decode(String.self) }
    func bool(_ i: Int) throws -> Bool { try self[i].decode(Bool.self) }
}

/// gc/put exclusion across machines: PostgreSQL session-level advisory locks on one key.
///
/// put/get/rm and reads take `pg_advisory_lock_shared(key)`, gc takes `pg_advisory_lock(key)`
/// (exclusive), each on a session of its own that holds the lock as long as the lock token lives.
/// The server releases a session's advisory locks when the session ends, however it ends (process
/// killed, machine gone, network cut: the server notices the dead TCP connection), so a crashed
/// writer never leaves the store locked, and no shared file system is needed.
///
/// A released shared lock's session is kept for the next shared lock (after
/// `pg_advisory_unlock_shared`), so a process that takes the lock per operation pays a few round
/// trips per operation, not a new connection. At most `idleLimit` idle sessions are kept.
///
/// Writer-preferring, as the local `StoreLock`: acquirers pass a second key, the gate, on the way
/// in. A shared acquirer holds the gate shared only while it takes the main key; gc (or repair)
/// takes the gate exclusively first, so a store that is never idle cannot starve it.
public struct PostgresStoreLocking: StoreLocking {
    public let config: PostgresConfig
    /// The advisory lock key ("TenPak" in ASCII).
    public static let key: Int64 = 0x5465_6E50_616B
    /// The gate's key, next to the lock's.
    public static let gateKey: Int64 = key + 1
    /// The key of the transaction-level lock that schema creation and upgrades take
    /// (`PostgresSQLConnection.lockSchema`). Its own key: on the gate's, a node opening an old
    /// catalog while it holds the lock shared would wait for a gc that holds the gate while it
    /// waits for that node's lock to be released.
    public static let schemaKey: Int64 = key + 2
    let roundTrips: Counter
    private let idle: IdleSessions

    init(config: PostgresConfig, roundTrips: Counter, idleLimit: Int = 8) {
        self.config = config
        self.roundTrips = roundTrips
        idle = IdleSessions(limit: idleLimit)
    }

    public func acquire(_ mode: StoreLock.Mode, timeout: Double) throws -> AnyObject {
        var session = try (mode == .shared ? idle.take() : nil) ?? PGSession(config: config, roundTrips: roundTrips, timeout: 30)
        let key = PostgresStoreLocking.key, gate = PostgresStoreLocking.gateKey
        let take = mode == .shared ? "SELECT pg_try_advisory_lock_shared($1)" : "SELECT pg_try_advisory_lock($1)"
        let release = mode == .shared ? "SELECT pg_advisory_unlock_shared($1)" : "SELECT pg_advisory_unlock($1)"
        var waited = 0.0
        var fresh = mode == .exclusive
        var holdingGate = false
        while true {
            let granted: Bool
            do {
                // Shared: through the gate, the main key, out of the gate, each try. Exclusive:
                // the gate is held from its first grant until the main key is.
                if !holdingGate { holdingGate = try session.query(take, [.int(gate)]).first?.bool(0) == true }
                granted = try holdingGate && session.query(take, [.int(key)]).first?.bool(0) == true
                if holdingGate, mode == .shared || granted {
                    _ = try session.query(release, [.int(gate)])
                    holdingGate = false
                }
            } catch where !fresh {
                // A kept session the server has since dropped (restart, idle timeout): use a new one.
                session = try PGSession(config: config, roundTrips: roundTrips, timeout: 30)
                fresh = true
                holdingGate = false
                continue
            }
            fresh = true
            if granted {
                return mode == .shared ? SharedLockToken(session: session, idle: idle) : session
            }
            guard waited < timeout else {
                if mode == .shared { idle.give(session) }
                throw StoreError.busy("the store in PostgreSQL database \(config.database) is locked \(mode == .shared ? "by a running gc" : "by running puts or reads") after waiting \(Int(timeout)) s")
            }
            usleep(100_000)
            waited += 0.1
        }
    }
}

/// Holds one shared advisory lock; releasing it unlocks and hands the session back for reuse.
/// If the unlock fails the session is dropped (closing it releases the lock on the server anyway).
final class SharedLockToken: @unchecked Sendable {
    // Safe: immutable after init; `PGSession` serializes its own queries.
    private let session: PGSession
    private let idle: IdleSessions

    init(session: PGSession, idle: IdleSessions) {
        self.session = session
        self.idle = idle
    }

    deinit {
        let unlocked = (try? session.query("SELECT pg_advisory_unlock_shared($1)", [.int(PostgresStoreLocking.key)]))?.first
        if (try? unlocked?.bool(0)) == true { idle.give(session) }
    }
}

/// Sessions holding no lock, kept for the next shared lock.
final class IdleSessions: @unchecked Sendable {
    // Safe: `sessions` is touched only inside `lock`.
    private var sessions: [PGSession] = []
    private let lock = NSLock()
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    func take() -> PGSession? { lock.withLock { sessions.popLast() } }

    func give(_ session: PGSession) {
        // A session past the limit is closed by its deinit, outside the lock.
        let kept: Bool = lock.withLock {
            guard sessions.count < limit else { return false }
            sessions.append(session)
            return true
        }
        if !kept { withExtendedLifetime(session) {} }
    }
}

/// A result handed from an event-loop callback to a waiting thread.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    // Safe: `value` is touched only inside `lock`.
    private var value: Result<T, Error>?
    private let lock = NSLock()
    func set(_ result: Result<T, Error>) { lock.withLock { value = result } }
    func get() -> Result<T, Error>? { lock.withLock { value } }
}
