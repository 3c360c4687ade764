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
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
    var changes: Int { Int(sqlite3_changes(handle)) }

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
    func transaction<T>(_ body: () throws -> T) throws -> T {
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
        default: throw SQLiteDatabase.error(rc, db.lastMessage)
        }
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
        return String(cString: p)
    }
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(stmt, column))
        guard count > 0, let p = sqlite3_column_blob(stmt, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }
}

enum SQLValue {
    case null
    case int(Int64)
    case text(String)
    case blob([UInt8])

    static func int(_ v: Int) -> SQLValue { .int(Int64(v)) }
    static func optionalInt(_ v: Int64?) -> SQLValue { v.map { .int($0) } ?? .null }
}
