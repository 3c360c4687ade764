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
    /// Opens a store by location: a directory is a local store; a regular file is a distributed
    /// store's JSON config (packs in S3, catalog in PostgreSQL). With `create`, makes the store
    /// (local directory; or bucket and schema) when missing.
    public static func open(location: String, create: Bool = false) throws -> ChunkStore {
        if DistributedConfig.isConfigFile(location) {
            return try openDistributed(config: DistributedConfig.load(path: location), root: location, create: create)
        }
        return try openLocal(directory: location, create: create)
    }

    /// Opens the distributed store a config describes. `root` names it in messages.
    public static func openDistributed(config: DistributedConfig, root: String, create: Bool = false) throws -> ChunkStore {
        let roundTrips = Counter()
        let packs = try S3PackStorage(config: config.s3, create: create)
        let catalog = try PostgresCatalog(config: config.postgres, create: create, roundTrips: roundTrips)
        return ChunkStore(packs: packs, catalog: catalog, root: root,
                          locking: PostgresStoreLocking(config: config.postgres, roundTrips: roundTrips))
    }

    /// S3 requests and PostgreSQL round trips so far, when this is a distributed store.
    public var distributedTraffic: DistributedTraffic? {
        guard let s3 = packs as? S3PackStorage, let pg = catalog as? PostgresCatalog else { return nil }
        return DistributedTraffic(s3Requests: s3.requestCount, postgresRoundTrips: pg.roundTrips)
    }

    public var isDistributed: Bool { packs is S3PackStorage }
}

extension RepairTarget {
    /// The store at `location` (directory or distributed config file), for `fsck --repair`: opened
    /// without its catalog, which may be the part that is lost.
    public static func open(location: String) throws -> RepairTarget {
        guard DistributedConfig.isConfigFile(location) else { return try local(directory: location) }
        let config = try DistributedConfig.load(path: location)
        guard try S3Client(config: config.s3).bucketExists() else {
            throw StoreError.notAStore(path: location, reason: "bucket \(config.s3.bucket) does not exist")
        }
        return RepairTarget(packs: try S3PackStorage(config: config.s3), locking: PostgresStoreLocking(config: config.postgres, roundTrips: Counter()),
                            rebuild: PostgresCatalogRebuild(config: config.postgres), place: location)
    }
}

/// The distributed store's rebuild: a second schema in the same database, swapped in by renaming
/// both schemas in one transaction. The old catalog is kept as schema `tenpak_damaged_<time>`.
public struct PostgresCatalogRebuild: CatalogRebuild {
    public let config: PostgresConfig
    static let rebuildSchema = "tenpak_rebuild"

    public init(config: PostgresConfig) { self.config = config }

    public func makeEmpty() throws -> any Catalog {
        let admin = try PGSession(config: config)
        try admin.query("DROP SCHEMA IF EXISTS \(PostgresCatalogRebuild.rebuildSchema) CASCADE")
        try admin.query("CREATE SCHEMA \(PostgresCatalogRebuild.rebuildSchema)")
        var rebuilt = config
        rebuilt.schema = PostgresCatalogRebuild.rebuildSchema
        return try PostgresCatalog(config: rebuilt, create: true)
    }

    public func replaceLive() throws -> String {
        let admin = try PGSession(config: config)
        let live = try config.schema.map(PostgresConfig.checkedIdentifier)
            ?? admin.query("SELECT current_schema()").first?.text(0) ?? "public"
        let aside = "tenpak_damaged_\(Int(Date().timeIntervalSince1970))"
        let exists = try admin.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [.text(live)]).isEmpty == false
        // DDL is transactional in PostgreSQL: other nodes see the old schema or the new one, never neither.
        try admin.query("BEGIN")
        do {
            if exists { try admin.query("ALTER SCHEMA \(try PostgresConfig.checkedIdentifier(live)) RENAME TO \(aside)") }
            try admin.query("ALTER SCHEMA \(PostgresCatalogRebuild.rebuildSchema) RENAME TO \(live)")
            try admin.query("COMMIT")
        } catch {
            _ = try? admin.query("ROLLBACK")
            throw error
        }
        return exists ? "catalog rebuilt in schema \(live); the previous one is kept as schema \(aside)"
            : "catalog rebuilt in schema \(live) (there was none)"
    }
}
