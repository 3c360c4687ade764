import Foundation
import TenPakChunkStore

/// The configuration file of a distributed store (SPEC.md, "Distributed backend"):
///
///     {"s3": {"endpoint": "http://127.0.0.1:8333", "bucket": "tenpak", "region": "us-east-1",
///             "accessKey": "...", "secretKey": "..."},
///      "postgres": {"host": "127.0.0.1", "port": 5432, "user": "tenpak", "password": "...",
///                   "database": "tenpak"}}
public struct DistributedConfig: Codable, Sendable {
    public var s3: S3Config
    public var postgres: PostgresConfig

    public init(s3: S3Config, postgres: PostgresConfig) {
        self.s3 = s3
        self.postgres = postgres
    }

    /// Reads a config file; a clear error when it is not one.
    public static func load(path: String) throws -> DistributedConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError.notAStore(path: path, reason: "cannot read the config file")
        }
        do {
            var config = try JSONDecoder().decode(DistributedConfig.self, from: data)
            if config.s3.region.isEmpty { config.s3.region = "us-east-1" }
            return config
        } catch {
            throw StoreError.notAStore(path: path, reason: "not a distributed store config (JSON with \"s3\" and \"postgres\" objects): \(error)")
        }
    }

    /// Whether `location` names a config file rather than a store directory: a regular file.
    public static func isConfigFile(_ location: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: location, isDirectory: &isDirectory) && !isDirectory.boolValue
    }
}

/// Counters of a distributed store's server traffic (for benchmarks).
public struct DistributedTraffic: Sendable {
    public let s3Requests: Int
    public let postgresRoundTrips: Int
}

extension ChunkStore {
    /// Opens the distributed store a config describes. `root` names it in messages.
    public static func openDistributed(config: DistributedConfig, root: String, create: Bool = false) throws -> ChunkStore {
        let roundTrips = Counter()
        let packs = try S3PackStorage(config: config.s3, create: create)
        let catalog = try SQLCatalog.postgres(config: config.postgres, create: create, roundTrips: roundTrips)
        return ChunkStore(packs: packs, catalog: catalog, root: root,
                          locking: PostgresStoreLocking(config: config.postgres, roundTrips: roundTrips))
    }

    /// S3 requests and PostgreSQL round trips so far, when this is a distributed store.
    public var distributedTraffic: DistributedTraffic? {
        guard let s3 = packs as? S3PackStorage, let pg = (catalog as? SQLCatalog)?.backend as? PostgresSQLConnection else { return nil }
        return DistributedTraffic(s3Requests: s3.requestCount, postgresRoundTrips: pg.roundTrips)
    }

    public var isDistributed: Bool { packs is S3PackStorage }
}

extension RepairTarget {
    /// The distributed store `config` describes (`place` names it in messages), for `fsck
    /// --repair`: opened without its catalog, which may be the part that is lost.
    public static func distributed(config: DistributedConfig, place: String) throws -> RepairTarget {
        guard try S3Client(config: config.s3).bucketExists() else {
            throw StoreError.notAStore(path: place, reason: "bucket \(config.s3.bucket) does not exist")
        }
        return RepairTarget(packs: try S3PackStorage(config: config.s3), locking: PostgresStoreLocking(config: config.postgres, roundTrips: Counter()),
                            rebuild: try PostgresCatalogRebuild(config: config.postgres), place: place,
                            openLiveCatalog: { try SQLCatalog.postgres(config: config.postgres, create: false) })
    }
}

/// The distributed store's rebuild: the catalog's tables are built in a schema of their own
/// (`tenpak_rebuild`, in the same database), then one transaction moves the live tables aside into
/// a new schema `tenpak_damaged_<time>` and the rebuilt ones into the live schema. Only TenPak's
/// tables move: the live schema, its grants and anything else in it stay.
public struct PostgresCatalogRebuild: CatalogRebuild {
    public let config: PostgresConfig
    static let rebuildSchema = "tenpak_rebuild"

    public init(config: PostgresConfig) throws {
        if let schema = config.schema, schema == PostgresCatalogRebuild.rebuildSchema || schema.hasPrefix("tenpak_damaged_") {
            throw StoreError.invalidRequest("postgres.schema \(schema) is a name repair uses for its own schemas; choose another")
        }
        self.config = config
    }

    public func makeEmpty() throws -> any Catalog {
        let admin = try PGSession(config: config)
        try admin.query("DROP SCHEMA IF EXISTS \(PostgresCatalogRebuild.rebuildSchema) CASCADE")
        try admin.query("CREATE SCHEMA \(PostgresCatalogRebuild.rebuildSchema)")
        var rebuilt = config
        rebuilt.schema = PostgresCatalogRebuild.rebuildSchema
        return try SQLCatalog.postgres(config: rebuilt, create: true)
    }

    public func replaceLive() throws -> String {
        let admin = try PGSession(config: config)
        // The schema the live catalog is in: where `meta` resolves, else where it would be made.
        let found = try admin.query("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('meta')")
        let live = try PostgresConfig.checkedIdentifier(try found.first?.text(0) ?? config.schema ?? admin.query("SELECT current_schema()").first?.text(0) ?? "public")
        let aside = "tenpak_damaged_\(Int(Date().timeIntervalSince1970))_\(FileSystem.randomHex(bytes: 3))"
        // DDL is transactional in PostgreSQL: other nodes see the old catalog or the new one, never
        // neither; EXCLUSIVE on the old gc_runs waits out commits in flight and refuses new ones.
        try admin.begin()
        do {
            let present = Set(try admin.query("SELECT tablename FROM pg_tables WHERE schemaname = $1", [.text(live)]).map { try $0.text(0) })
            let moving = (SQLCatalog.tables + SQLCatalog.retiredTables).filter(present.contains)
            if present.contains("gc_runs") { try admin.query("LOCK TABLE \(live).gc_runs IN EXCLUSIVE MODE") }
            if !moving.isEmpty { try admin.query("CREATE SCHEMA \(aside)") }
            for table in moving { try admin.query("ALTER TABLE \(live).\(table) SET SCHEMA \(aside)") }
            for table in SQLCatalog.tables {
                try admin.query("ALTER TABLE \(PostgresCatalogRebuild.rebuildSchema).\(table) SET SCHEMA \(live)")
            }
            try admin.query("DROP SCHEMA \(PostgresCatalogRebuild.rebuildSchema)")
            try admin.commit()
            return moving.isEmpty ? "catalog rebuilt in schema \(live) (there was none)"
                : "catalog rebuilt in schema \(live); the previous tables are kept in schema \(aside)"
        } catch {
            _ = try? admin.rollback()
            throw error
        }
    }
}
