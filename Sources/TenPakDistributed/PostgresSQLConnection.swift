import NIOCore
import PostgresNIO
import TenPakChunkStore

extension SQLCatalog {
    /// The distributed store's catalog: `SQLCatalog` over one PostgreSQL session (which reconnects
    /// between transactions when the server dropped it). With `create`, the schema is created when
    /// missing, under a transaction-level advisory lock, so two nodes creating it at once do not collide.
    public static func postgres(config: PostgresConfig, create: Bool, roundTrips: Counter? = nil) throws -> SQLCatalog {
        try SQLCatalog(connection: PostgresSQLConnection(config: config, roundTrips: roundTrips ?? Counter()), create: create)
    }
}

/// The PostgreSQL side of the catalog seam (`SQLConnection`): `?` placeholders numbered `$1…`,
/// values bound with their types (int8, text, bytea), BEGIN/COMMIT on the session, the schema and
/// fence locks PostgreSQL needs that SQLite's write transaction gives by itself.
final class PostgresSQLConnection: SQLConnection {
    let session: PGSession
    let dialect = SQLDialect.postgres
    let place: String
    /// Statements with their placeholders numbered, by the text the catalog wrote.
    private var numbered: [String: String] = [:]

    init(config: PostgresConfig, roundTrips: Counter) throws {
        session = try PGSession(config: config, roundTrips: roundTrips, reconnects: true)
        place = "postgres://\(config.host):\(config.port)/\(config.database)"
    }

    /// PostgreSQL round trips made by this connection (for benchmarks).
    var roundTrips: Int { session.roundTrips.count }

    @discardableResult
    func query(_ sql: String, _ values: [SQLValue]) throws -> [SQLRow] {
        let text: String
        if let known = numbered[sql] {
            text = known
        } else {
            text = PostgresSQLConnection.numberPlaceholders(sql)
            if numbered.count >= 256 { numbered.removeAll() }
            numbered[sql] = text
        }
        let rows = try mapped { try session.query(text, values.map(PostgresSQLConnection.bind)) }
        return try rows.map(PostgresSQLConnection.row)
    }

    func transaction<T>(_ body: () throws -> T) throws -> T {
        try mapped { try session.begin() }
        do {
            let result = try body()
            try mapped { try session.commit() }
            return result
        } catch {
            _ = try? session.rollback()
            throw error
        }
    }

    func lockSchema() throws {
        try query("SELECT pg_advisory_xact_lock(?)", [.int(PostgresStoreLocking.schemaKey)])
    }

    /// SHARE conflicts with the ROW EXCLUSIVE lock of gc's INSERT into `gc_runs`: until this
    /// transaction ends no gc can start, and one that started before is seen by the fence check.
    func lockFence() throws {
        try query("LOCK TABLE gc_runs IN SHARE MODE")
    }

    /// SHARE conflicts with the ROW EXCLUSIVE lock of an INSERT into `revisions`.
    func lockRevisions() throws {
        try query("LOCK TABLE revisions IN SHARE MODE")
    }

    func tableExists(_ name: String) throws -> Bool {
        try query("SELECT to_regclass(?) IS NOT NULL", [.text(name)]).first?.bool(0) == true
    }

    /// An index is a relation like a table, in the same namespace.
    func indexExists(_ name: String) throws -> Bool { try tableExists(name) }

    /// PostgreSQL enforces the foreign keys and checks its pages itself: nothing more to ask it.
    func integrityProblems(tables: [String]) throws -> [String] { [] }

    /// Server errors as the seam's: a unique violation (SQLSTATE 23505) typed, the rest `catalog`.
    private func mapped<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PGError {
            if error.sqlState == "23505" { throw SQLUniqueViolation(PGSession.describe(error.error)) }
            throw StoreError.catalog(PGSession.describe(error.error))
        }
    }

    /// `?` → `$1`, `$2`, … outside quoted text and identifiers.
    static func numberPlaceholders(_ sql: String) -> String {
        var out = ""
        out.reserveCapacity(sql.utf8.count + 16)
        var n = 0
        var quote: Character?
        for ch in sql {
            if let open = quote {
                if ch == open { quote = nil }
                out.append(ch)
            } else if ch == "'" || ch == "\"" {
                quote = ch
                out.append(ch)
            } else if ch == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        return out
    }

    static func bind(_ value: SQLValue) -> PGValue {
        switch value {
        case .null: return .null
        case let .int(v): return .int(v)
        case let .text(s): return .text(s)
        case let .blob(b): return .bytes(b)
        }
    }

    /// A row as the seam's values: integers of any width as `.int`, booleans as 0 or 1.
    static func row(_ r: PostgresRandomAccessRow) throws -> SQLRow {
        var values: [SQLValue] = []
        values.reserveCapacity(r.count)
        for cell in r {
            guard cell.bytes != nil else {
                values.append(.null)
                continue
            }
            do {
                switch cell.dataType {
                case .int2, .int4, .int8: values.append(.int(try cell.decode(Int64.self)))
                case .bool: values.append(.int(try cell.decode(Bool.self) ? 1 : 0))
                case .bytea: values.append(.blob(Array(try cell.decode(ByteBuffer.self).readableBytesView)))
                default: values.append(.text(try cell.decode(String.self)))
                }
            } catch {
                throw StoreError.corrupt("catalog column \(cell.columnName) of type \(cell.dataType) cannot be read: \(error)")
            }
        }
        return SQLRow(values)
    }
}
