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
