// The seam under `SQLCatalog`: what the one catalog implementation needs from a SQL database, so
// that its statements and schema are written once. SQLite implements it here (`SQLiteConnection`),
// PostgreSQL in TenPakDistributed (`PostgresConnection`), so this module links no PostgreSQL driver.
//
// Statements are written in the SQL both databases read alike (`INSERT … ON CONFLICT DO NOTHING`,
// `RETURNING`, row values in `VALUES`, `CAST(… AS BIGINT)`), with `?` placeholders; a connection
// rewrites them if its database wants `$1`. What differs and cannot be written alike is a
// `SQLDialect` value (type names, ordering of text) or a method here (transactions, locks, checks).

/// A value bound to a placeholder or read from a column.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case text(String)
    case blob([UInt8])

    public static func int(_ v: Int) -> SQLValue { .int(Int64(v)) }
    public static func optionalInt(_ v: Int64?) -> SQLValue { v.map { .int($0) } ?? .null }
}

/// One row of a result, its columns read by 0-based index. A column of the wrong type is a damaged
/// catalog row (`StoreError.corrupt`), never a trap.
public struct SQLRow: Sendable {
    public let values: [SQLValue]

    public init(_ values: [SQLValue]) { self.values = values }

    private func value(_ column: Int) throws -> SQLValue {
        guard values.indices.contains(column) else { throw StoreError.corrupt("catalog row has \(values.count) columns, not \(column + 1)") }
        return values[column]
    }

    public func int(_ column: Int) throws -> Int64 {
        guard case let .int(v) = try value(column) else { throw mismatch(column, "an integer") }
        return v
    }

    public func optionalInt(_ column: Int) throws -> Int64? {
        if case .null = try value(column) { return nil }
        return try int(column)
    }

    public func text(_ column: Int) throws -> String {
        guard case let .text(v) = try value(column) else { throw mismatch(column, "text") }
        return v
    }

    public func blob(_ column: Int) throws -> [UInt8] {
        guard case let .blob(v) = try value(column) else { throw mismatch(column, "a blob") }
        return v
    }

    public func optionalBlob(_ column: Int) throws -> [UInt8]? {
        if case .null = try value(column) { return nil }
        return try blob(column)
    }

    /// A truth value: SQLite answers comparisons and EXISTS with 0 or 1, PostgreSQL with a boolean
    /// (which its connection reads as 0 or 1).
    public func bool(_ column: Int) throws -> Bool { try int(column) != 0 }

    private func mismatch(_ column: Int, _ wanted: String) -> StoreError {
        .corrupt("catalog column \(column) holds \(values[column]), not \(wanted)")
    }
}

/// A unique constraint refused a write (typed, so that the catalog can tell a revision name taken by
/// a concurrent commit from any other failure).
public struct SQLUniqueViolation: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "catalog: \(message)" }
}

/// What differs in the text of the schema and the statements.
public struct SQLDialect: Sendable {
    /// A 64-bit integer column: `INTEGER` (SQLite's integers are 64-bit), `BIGINT`.
    public let integer: String
    /// A byte string column: `BLOB`, `BYTEA`.
    public let blob: String
    /// An id column numbered by the database: `INTEGER PRIMARY KEY` (SQLite's rowid), `BIGSERIAL PRIMARY KEY`.
    public let rowID: String
    /// After a table whose rows need no rowid of their own: ` WITHOUT ROWID` in SQLite, empty elsewhere.
    public let withoutRowID: String
    /// `offset` as a column name (a reserved word in PostgreSQL, so quoted there).
    public let offsetColumn: String
    /// Appended to a text expression in ORDER BY so that text sorts by its bytes (UTF-8 code point
    /// order) on every database: SQLite's default collation already does, PostgreSQL needs `COLLATE "C"`.
    public let byteOrder: String
    /// Most placeholders one statement may carry (statements over long lists are split below it).
    public let maxBindings: Int

    public init(integer: String, blob: String, rowID: String, withoutRowID: String, offsetColumn: String, byteOrder: String, maxBindings: Int) {
        self.integer = integer
        self.blob = blob
        self.rowID = rowID
        self.withoutRowID = withoutRowID
        self.offsetColumn = offsetColumn
        self.byteOrder = byteOrder
        self.maxBindings = maxBindings
    }

    public static let sqlite = SQLDialect(integer: "INTEGER", blob: "BLOB", rowID: "INTEGER PRIMARY KEY", withoutRowID: " WITHOUT ROWID",
                                          offsetColumn: "offset", byteOrder: "", maxBindings: 32766)
    public static let postgres = SQLDialect(integer: "BIGINT", blob: "BYTEA", rowID: "BIGSERIAL PRIMARY KEY", withoutRowID: "",
                                            offsetColumn: "\"offset\"", byteOrder: " COLLATE \"C\"", maxBindings: 65535)
}

/// A connection to the catalog's database, used by one `SQLCatalog`, which serializes every call.
///
/// Errors are `StoreError`s (`busy` when another writer holds the database past its wait,
/// `unavailable` when a server is lost, `corrupt` when the database says it is damaged, `catalog`
/// otherwise), except `SQLUniqueViolation`.
public protocol SQLConnection: AnyObject {
    var dialect: SQLDialect { get }
    /// Where the catalog lives, for messages (a store directory, `postgres://host:port/database`).
    var place: String { get }

    /// Runs one statement with `?` placeholders and returns its rows.
    @discardableResult
    func query(_ sql: String, _ values: [SQLValue]) throws -> [SQLRow]

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws. A
    /// transaction that writes must not wait on another writer half way (SQLite takes the write
    /// lock at BEGIN, so two writers queue instead of deadlocking).
    func transaction<T>(_ body: () throws -> T) throws -> T

    /// Inside a transaction: serializes schema creation and upgrades between processes (SQLite's
    /// write transaction already does; PostgreSQL takes a transaction-level advisory lock).
    func lockSchema() throws

    /// Inside a transaction, before the gc fence is read: no gc can start (`beginCollection`) until
    /// this transaction ends. SQLite's write transaction already excludes it; PostgreSQL locks
    /// `gc_runs` in SHARE mode, which conflicts with gc's INSERT.
    func lockFence() throws

    /// Inside a transaction: no other transaction commits a revision until this one ends. SQLite's
    /// write transaction already excludes it; PostgreSQL locks `revisions` in SHARE mode.
    func lockRevisions() throws

    func tableExists(_ name: String) throws -> Bool

    /// Whether the catalog has an index named `name`.
    func indexExists(_ name: String) throws -> Bool

    /// Problems the database itself finds in the catalog's `tables` (empty when healthy).
    func integrityProblems(tables: [String]) throws -> [String]

    /// A connection to the catalog that replaced this one's under it (a repair renamed a rebuilt
    /// SQLite file over it), or nil when it was not replaced. After it returns one, this connection
    /// is only closed.
    func replacement() throws -> (any SQLConnection)?
}

extension SQLConnection {
    @discardableResult
    public func query(_ sql: String) throws -> [SQLRow] { try query(sql, []) }

    /// A catalog whose tables are swapped in place (PostgreSQL's repair moves tables inside the live
    /// schema) is never replaced under its connections.
    public func replacement() throws -> (any SQLConnection)? { nil }
}
