import CSQLite

/// A SQLite connection with one owner. Not thread-safe by itself: `Catalog` serializes access.
final class SQLiteDatabase {
    let handle: OpaquePointer
    let path: String

    init(path: String, readOnly: Bool = false, create: Bool = true) throws {
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(db)
            throw StoreError.catalog("cannot open \(path): \(message)")
        }
        handle = db
        self.path = path
        // Writers wait up to 30 s for each other instead of failing at once.
        sqlite3_busy_timeout(db, 30_000)
    }

    deinit { sqlite3_close_v2(handle) }

    /// Makes the close of this connection leave the WAL alone. For a connection whose file was
    /// renamed away: a checkpoint on close would delete `<path>-wal` by name, which by then is the
    /// WAL of the database that replaced it.
    func skipCheckpointOnClose() {
        _ = tenpak_sqlite_no_checkpoint_on_close(handle)
    }

    func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(error)
            throw SQLiteDatabase.error(rc, message)
        }
    }

    func prepare(_ sql: String) throws -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw SQLiteDatabase.error(rc, lastMessage) }
        return Statement(stmt, db: self)
    }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    static func error(_ rc: Int32, _ message: String) -> StoreError {
        switch rc & 0xFF {
        case SQLITE_BUSY, SQLITE_LOCKED: return .busy("catalog is locked (\(message))")
        case SQLITE_CORRUPT, SQLITE_NOTADB: return .corrupt("catalog database: \(message)")
        case SQLITE_FULL: return .catalog("disk full: \(message)")
        default: return .catalog(message)
        }
    }

    /// Runs `body` in a transaction (BEGIN IMMEDIATE: takes the write lock up front, so two writers
    /// queue on the busy timeout instead of deadlocking on lock upgrade).
    ///
    /// The transaction keeps its temporary storage in memory (`temp_store=MEMORY` from before it
    /// begins until after it ends), for its statement journals. A statement of many rows inside a
    /// transaction journals every existing page it changes, so that it can be undone alone; SQLite
    /// spills that journal to a temporary file past 64 KiB. A put's chunk rows land on random
    /// leaves of the chunk index (keyed by content hash), so in a large store the journal of that
    /// one statement is about a page per new chunk: written to a new file and thrown away on every
    /// put (SPEC 9). The pager reads the setting when the transaction begins, so it is set before
    /// `BEGIN`. A journal is bounded by the pages one statement changes (at most
    /// `SQLCatalog.rowsPerStatement` rows); sorts inside the transaction stay in memory too (the
    /// largest: the one-time upgrade to schema version 3 sorts the tensors of 128 revisions).
    /// Outside write transactions temporary storage stays the default, so a store-wide query (gc's
    /// mark) may still spill to disk.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("PRAGMA temp_store=MEMORY")
        defer { try? execute("PRAGMA temp_store=DEFAULT") }
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// A prepared statement. Values bind by 1-based index; columns read by 0-based index.
final class Statement {
    let stmt: OpaquePointer
    unowned let db: SQLiteDatabase
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(_ stmt: OpaquePointer, db: SQLiteDatabase) {
        self.stmt = stmt
        self.db = db
    }

    deinit { sqlite3_finalize(stmt) }

    @discardableResult
    func bind(_ values: SQLValue...) -> Statement { bind(values) }

    @discardableResult
    func bind(_ values: [SQLValue]) -> Statement {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .null: sqlite3_bind_null(stmt, index)
            case let .int(v): sqlite3_bind_int64(stmt, index, v)
            case let .text(s): sqlite3_bind_text(stmt, index, s, -1, Statement.transient)
            case let .blob(b):
                // Safe: SQLITE_TRANSIENT makes SQLite copy the bytes before the closure returns; an
                // empty blob gets a non-null address (a null one would bind NULL) that is never read.
                b.withUnsafeBytes { raw in
                    _ = sqlite3_bind_blob(stmt, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(raw.count), Statement.transient)
                }
            }
        }
        return self
    }

    /// Steps once; true while a row is available.
    func step() throws -> Bool {
        let rc = sqlite3_step(stmt)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            // The extended code tells a unique constraint from the other constraints.
            let extended = sqlite3_extended_errcode(db.handle)
            if extended == Statement.constraintUnique || extended == Statement.constraintPrimaryKey {
                sqlite3_reset(stmt)
                throw SQLUniqueViolation(db.lastMessage)
            }
            throw SQLiteDatabase.error(rc, db.lastMessage)
        }
    }

    /// SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY (composite C macros, which do not
    /// import into Swift): SQLITE_CONSTRAINT (19) | 8 << 8 and | 6 << 8.
    static let constraintUnique: Int32 = 19 | 8 << 8
    static let constraintPrimaryKey: Int32 = 19 | 6 << 8

    /// The current row, every column as the type SQLite stored it in.
    func row() -> SQLRow {
        let count = sqlite3_column_count(stmt)
        var values: [SQLValue] = []
        values.reserveCapacity(Int(count))
        for column in 0 ..< count {
            switch sqlite3_column_type(stmt, column) {
            case SQLITE_NULL: values.append(.null)
            case SQLITE_TEXT: values.append(.text(text(column)))
            case SQLITE_BLOB: values.append(.blob(blob(column)))
            default: values.append(.int(int(column)))  // INTEGER (the catalog stores no REAL)
            }
        }
        return SQLRow(values)
    }

    /// Runs a statement that returns no rows.
    func run() throws {
        while try step() {}
        sqlite3_reset(stmt)
    }

    /// All rows, each mapped by `row`.
    func rows<T>(_ row: (Statement) throws -> T) throws -> [T] {
        var out: [T] = []
        while try step() { out.append(try row(self)) }
        sqlite3_reset(stmt)
        return out
    }

    func firstRow<T>(_ row: (Statement) throws -> T) throws -> T? {
        defer { sqlite3_reset(stmt) }
        return try step() ? try row(self) : nil
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(stmt, column) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(stmt, column) == SQLITE_NULL }
    func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(stmt, column) else { return "" }
        // Safe: SQLite's text is NUL-terminated and valid until the next step or reset; copied here.
        return String(cString: p)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(stmt, column))
        guard count > 0, let p = sqlite3_column_blob(stmt, column) else { return [] }
        // Safe: SQLite guarantees `count` readable bytes at `p` until the next step or reset; copied here.
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}

/// The SQLite side of the catalog seam: one connection to `catalog.db` in WAL mode with
/// `synchronous=FULL` and foreign keys on (SPEC §9). Not thread-safe: `SQLCatalog` serializes it.
public final class SQLiteConnection: SQLConnection {
    private let db: SQLiteDatabase
    /// The file this connection opened, read right after the open: if the file is swapped later
    /// (a repair renamed a rebuilt catalog over it), the two differ.
    private let identity: FileIdentity?
    /// Prepared statements by text, reused (the catalog's statements differ only in their list lengths).
    private var statements: [String: Statement] = [:]
    public let path: String
    public let dialect = SQLDialect.sqlite
    public var place: String { FileSystem.parentDirectory(path) }

    /// Opens the database at `path`. Only `create` may make the file: a reconnect that raced a
    /// repair's rename must fail, not leave an empty database where the rebuilt one is about to go.
    public init(path: String, create: Bool) throws {
        db = try SQLiteDatabase(path: path, create: create)
        self.path = path
        identity = FileSystem.identity(path)
        try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
    }

    deinit {
        // Finalized before the connection closes (sqlite3_close_v2 would wait for them anyway).
        statements.removeAll()
    }

    @discardableResult
    public func query(_ sql: String, _ values: [SQLValue]) throws -> [SQLRow] {
        let statement: Statement
        if let cached = statements[sql] {
            statement = cached
        } else {
            statement = try db.prepare(sql)
            if statements.count >= 128 { statements.removeAll() }
            statements[sql] = statement
        }
        return try statement.bind(values).rows { $0.row() }
    }

    public func transaction<T>(_ body: () throws -> T) throws -> T { try db.transaction(body) }

    /// BEGIN IMMEDIATE already holds the database's write lock.
    public func lockSchema() throws {}

    /// BEGIN IMMEDIATE already holds the database's write lock, which `beginCollection` needs too.
    public func lockFence() throws {}

    /// BEGIN IMMEDIATE already excludes every other writer.
    public func lockRevisions() throws {}

    public func tableExists(_ name: String) throws -> Bool {
        try !query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [.text(name)]).isEmpty
    }

    public func indexExists(_ name: String) throws -> Bool {
        try !query("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", [.text(name)]).isEmpty
    }

    public func integrityProblems(tables: [String]) throws -> [String] {
        let pages = try query("PRAGMA integrity_check").map { try $0.text(0) }.filter { $0 != "ok" }
        let keys = try query("PRAGMA foreign_key_check").map {
            "foreign key: table \(try $0.text(0)) row \(try $0.optionalInt(1).map(String.init) ?? "?") references missing \(try $0.text(2))"
        }
        return pages + keys
    }

    /// A new connection when `catalog.db` is no longer the file this one opened. One `stat`.
    public func replacement() throws -> (any SQLConnection)? {
        guard let now = FileSystem.identity(path) else { return nil }
        if let identity, identity.isSameFile(as: now) { return nil }
        // This connection must close without a checkpoint: that would delete `catalog.db-wal` by
        // name, which is now the new catalog's WAL.
        statements.removeAll()
        db.skipCheckpointOnClose()
        return try SQLiteConnection(path: path, create: false)
    }
}
