// swift-tools-version:6.0
// TenPak: a chunked, content-addressed store for model weights.
//
// Targets are layers; each depends only on layers above it in this list:
//   CZstd, CXXHash, CSQLite   system libraries (Debian: libzstd-dev, libxxhash-dev, libsqlite3-dev)
//   TenPakFormat              bytes on disk: safetensors parsing, chunk frames, manifests, hashes
//   TenPakCodecs              chunk encodings: byte planes, XOR/subtraction deltas, zstd, entropy coding
//   TenPakChunkStore          packs + catalog behind one seam (local: directory + SQLite), dedup
//   TenPakDistributed         the same seam distributed: packs in an S3 bucket, catalog in PostgreSQL
//   TenPakModelStore          models, revisions, chunking plans, base matching, put/get/rm
//   TenPakReader              random access to any byte range or tensor of a stored file
//   TenPakLFS                 git-lfs custom transfer agent: protocol, oid -> model mapping
//   TenPakOptimizer           quantization methods measured on stored models; annotations in the catalog
//   TenPakHTTP                the HTTP range service over TenPakReader (Hummingbird)
//   tpstore                   the command line, thin over the library
import PackageDescription

let package = Package(
    name: "TenPak",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "TenPak", targets: [
            "TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakDistributed", "TenPakModelStore", "TenPakReader", "TenPakLFS", "TenPakOptimizer", "TenPakHTTP",
        ]),
        .executable(name: "tpstore", targets: ["tpstore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // Already pulled in by the two above; named because TenPakDistributed imports them directly.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "TenPakFormat", dependencies: [
            "CXXHash", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "TenPakCodecs", dependencies: ["TenPakFormat", "CZstd"], exclude: ["Entropy/FORMAT.md"]),
        .target(name: "TenPakChunkStore", dependencies: ["TenPakFormat", "TenPakCodecs", "CSQLite"]),
        .target(name: "TenPakDistributed", dependencies: [
            "TenPakFormat", "TenPakChunkStore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "TenPakModelStore", dependencies: ["TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakDistributed"]),
        .target(name: "TenPakReader", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore"]),
        .target(name: "TenPakLFS", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore"]),
        .target(name: "TenPakOptimizer", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore", "TenPakReader"]),
        .target(name: "TenPakHTTP", dependencies: [
            "TenPakFormat", "TenPakChunkStore", "TenPakModelStore", "TenPakReader",
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),
        .executableTarget(name: "tpstore", dependencies: [
            "TenPakFormat", "TenPakChunkStore", "TenPakDistributed", "TenPakModelStore", "TenPakReader", "TenPakHTTP", "TenPakLFS", "TenPakOptimizer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Mutation fuzzer for every parser and decoder (a tool, not part of the library).
        .executableTarget(name: "tenpak-fuzz", dependencies: ["TenPakFormat", "TenPakCodecs"]),
        // Per-codec microbenchmark on real chunks (a tool; prints MB/s, asserts nothing).
        .executableTarget(name: "tenpak-bench", dependencies: ["TenPakFormat", "TenPakCodecs"], path: "Tools/tenpak-bench"),
        .testTarget(name: "TenPakTests", dependencies: [
            "TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakDistributed", "TenPakModelStore", "TenPakReader", "TenPakLFS", "TenPakOptimizer", "TenPakHTTP",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
