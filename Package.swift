// swift-tools-version:6.0
// TenPak: a chunked, content-addressed store for model weights. Linux (Glibc, /proc); Swift 6.
//
// Targets are layers; each depends only on layers above it in this list (SPEC.md section 2):
//
//   CZstd, CXXHash, CSQLite   system libraries (Debian: libzstd-dev, libxxhash-dev, libsqlite3-dev);
//   CMalloc                   glibc <malloc.h>, for the tpstore executable only
//   CTenPakKernels            TenPak's own C, x86 specifics: SHA-256 with the SHA extensions (two streams at
//                             once), clearing the AVX upper state after libxxhash's AVX-512, rANS decoding
//                             with AVX-512 (or AVX2) and the context-delta encoder's passes with AVX-512
//   TenPakFormat              bytes on disk: safetensors parsing, chunk frames, manifests, hashes
//   TenPakCodecs              chunk encodings: byte planes, XOR/subtraction deltas, zstd, entropy coding
//   TenPakChunkStore          the seams (PackStorage, Catalog, StoreLocking, CatalogRebuild), the one
//                             catalog `SQLCatalog` over its SQLConnection seam, the local backend
//                             behind them (directory + SQLite), dedup, frame checks
//   TenPakModelStore          models, revisions, chunking plans, base matching, put/get/rm, fsck/gc/repair
//   TenPakReader              random access to any byte range or tensor of a stored file
//   TenPakLFS                 git-lfs custom transfer agent: protocol, oid -> model mapping
//   TenPakOptimizer           quantization methods measured on stored models; annotations in the catalog
//   ---- backends and faces, composed at the edge ----
//   TenPakDistributed         the seams distributed: packs in an S3 bucket, catalog in PostgreSQL
//                             (PostgreSQL's SQLConnection under the same SQLCatalog)
//   TenPakStoreLocation       opens a store of either backend from a location (directory or config)
//   TenPakHTTP                the hub-compatible HTTP server over TenPakReader (Hummingbird), and web
//                             pages for people (swift-mustache); reads annotations through TenPakOptimizer
//   TenPakTransfer            the client of the transfer protocol (pull/push), on async-http-client
//   tpstore                   the command line, thin over the library
//
// Products: `TenPak` is the core with the local backend and links no PostgreSQL driver, HTTP
// client or HTTP server; `TenPakDistributed` adds the S3 + PostgreSQL backend and opening by
// location; `TenPakHTTP` is the hub-compatible HTTP server; `TenPakTransfer` the pull/push client.
import PackageDescription

/// Every target's imports are checked per file (a member used from a module the file does not
/// import is an error), so the dependency list above stays honest.
let honestImports: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "TenPak",
    products: [
        .library(name: "TenPak", targets: [
            "TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakModelStore", "TenPakReader", "TenPakLFS", "TenPakOptimizer",
        ]),
        .library(name: "TenPakDistributed", targets: ["TenPakDistributed", "TenPakStoreLocation"]),
        // The hub-compatible HTTP server on its own: only what embeds the server links Hummingbird,
        // swift-log's access log and the Prometheus exposition.
        .library(name: "TenPakHTTP", targets: ["TenPakHTTP"]),
        // The client of the transfer protocol (SPEC §19): links async-http-client, so not in `TenPak`.
        .library(name: "TenPakTransfer", targets: ["TenPakTransfer"]),
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
        // /metrics of `tpstore serve` (TenPakHTTP only).
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The web pages of `tpstore serve` (TenPakHTTP only): logic-less templates, HTML-escaped by default.
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // glibc's <malloc.h> (mallopt): the tpstore executable's allocator policy.
        .systemLibrary(name: "CMalloc"),
        // TenPak's own C: the SHA-NI kernel behind StreamingSHA256, VZEROUPPER after XXH3 (SPEC 2).
        .target(name: "CTenPakKernels"),
        .target(name: "TenPakFormat", dependencies: [
            "CXXHash", "CTenPakKernels", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "TenPakCodecs", dependencies: ["TenPakFormat", "CZstd", "CTenPakKernels"], exclude: ["Entropy/FORMAT.md"]),
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
        .target(name: "TenPakModelStore", dependencies: ["TenPakFormat", "TenPakCodecs", "TenPakChunkStore"]),
        .target(name: "TenPakReader", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore"]),
        .target(name: "TenPakLFS", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore"]),
        .target(name: "TenPakOptimizer", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore", "TenPakReader"]),
        .target(name: "TenPakStoreLocation", dependencies: ["TenPakChunkStore", "TenPakDistributed", "TenPakModelStore"]),
        .target(name: "TenPakHTTP", dependencies: [
            "TenPakFormat", "TenPakChunkStore", "TenPakModelStore", "TenPakReader", "TenPakOptimizer", "TenPakLFS",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Mustache", package: "swift-mustache"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "TenPakTransfer", dependencies: [
            "TenPakFormat", "TenPakChunkStore", "TenPakModelStore", "TenPakLFS",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            // NIOConnectionError: how a refused connection to a named host arrives.
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .executableTarget(name: "tpstore", dependencies: [
            "TenPakFormat", "TenPakChunkStore", "TenPakDistributed", "TenPakStoreLocation", "TenPakModelStore", "TenPakReader", "TenPakHTTP",
            "TenPakTransfer",
            "TenPakLFS", "TenPakOptimizer", "CMalloc", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Mutation fuzzer for every parser and decoder (a tool, not part of the library).
        .executableTarget(name: "tenpak-fuzz", dependencies: [
            "TenPakFormat", "TenPakCodecs", "TenPakModelStore", "TenPakReader", "TenPakLFS", "TenPakHTTP",
        ]),
        // Base choice and put cost against the number of stored revisions (a tool; prints numbers).
        .executableTarget(name: "bench-scale", dependencies: ["TenPakFormat", "TenPakChunkStore", "TenPakModelStore"], path: "Tools/bench_scale",
                         exclude: ["probe_ab.sh"]),
        // Per-codec microbenchmark on real chunks (a tool; prints MB/s, asserts nothing).
        .executableTarget(name: "tenpak-bench", dependencies: ["TenPakFormat", "TenPakCodecs"], path: "Tools/tenpak-bench"),
        // Tests by layer. Scratch space, fixtures, process runners and safetensors builders shared by both.
        .target(name: "TenPakTestSupport", dependencies: ["TenPakFormat"], path: "Tests/TenPakTestSupport"),
        // Unit tests of the lower floors: no NIO, PostgreSQL or Hummingbird is compiled for them.
        .testTarget(name: "TenPakUnitTests", dependencies: ["TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakTestSupport"]),
        // Everything above: the model store, the reader, the CLI as a process, git-lfs, the HTTP
        // service, the distributed backend against real SeaweedFS and PostgreSQL.
        .testTarget(name: "TenPakTests", dependencies: [
            "TenPakFormat", "TenPakCodecs", "TenPakChunkStore", "TenPakDistributed", "TenPakStoreLocation", "TenPakModelStore", "TenPakReader",
            "TenPakLFS", "TenPakOptimizer", "TenPakHTTP", "TenPakTransfer", "TenPakTestSupport",
        ]),
    ],
    swiftLanguageModes: [.v6]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + honestImports
}

// The data path (format, codecs, model store) is optimized in debug builds too: its hot loops are
// generic over the element type, and unspecialized (-Onone) they ran tens of times slower, which
// made the tests that move real model bytes (the corpus upload, transfers, git-lfs clones) most of
// CI's time. Testability is kept (`swift build` still passes -enable-testing in debug).
for target in package.targets where ["TenPakFormat", "TenPakCodecs", "TenPakModelStore"].contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-O"], .when(configuration: .debug))]
}
// Likewise the C kernels under the data path: at -O0 every intrinsic's result goes through the stack.
for target in package.targets where target.name == "CTenPakKernels" {
    target.cSettings = (target.cSettings ?? []) + [.unsafeFlags(["-O2"], .when(configuration: .debug))]
}
