import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import TenPakChunkStore

/// Where a distributed store's packs live: an S3-compatible bucket (path-style addressing).
public struct S3Config: Codable, Sendable {
    /// Base URL of the S3 API, e.g. `http://127.0.0.1:8333`.
    public var endpoint: String
    public var bucket: String
    public var region: String
    public var accessKey: String
    public var secretKey: String

    public init(endpoint: String, bucket: String, region: String = "us-east-1", accessKey: String, secretKey: String) {
        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.accessKey = accessKey
        self.secretKey = secretKey
    }
}

/// One S3 response, body read whole.
struct S3Response {
    let status: Int
    let headers: HTTPHeaders
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A minimal, synchronous S3 client: AWS Signature V4 (HMAC-SHA256 from swift-crypto) over
/// async-http-client.
///
/// Blocking: every call waits on an `EventLoopFuture` with `wait()`. That is safe because callers
/// are the store's own threads (the CLI's main thread, Dispatch workers of a put, the HTTP
/// service's request threads), never one of the event-loop threads of
/// `MultiThreadedEventLoopGroup.singleton` that perform the I/O; NIO traps (rather than
/// deadlocks) if that rule is ever broken. Nothing runs on Swift's cooperative pool, so blocking
/// cannot starve it.
final class S3Client: Sendable {
    let config: S3Config
    private let scheme: String
    private let host: String
    private let port: Int?
    /// Counts requests (for benchmarks).
    let requestCount = Counter()

    /// One client per process: HTTPClient must be shut down before it is released, and a
    /// process-lifetime client never is.
    private static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(60))
        configuration.connectionPool = .init(idleTimeout: .seconds(30))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    static let requestTimeout: TimeAmount = .seconds(60)

    init(config: S3Config) throws {
        self.config = config
        guard let url = URL(string: config.endpoint), let scheme = url.scheme, let host = url.host, !host.isEmpty else {
            throw StoreError.invalidRequest("S3 endpoint \(config.endpoint) is not a URL like http://host:port")
        }
        self.scheme = scheme
        self.host = host
        self.port = url.port
        guard !config.bucket.isEmpty else { throw StoreError.invalidRequest("the S3 bucket name is empty") }
    }

    var hostHeader: String { port.map { "\(host):\($0)" } ?? host }

    // MARK: signing

    /// AWS `UriEncode`: unreserved characters stay, everything else is %XX (upper-case hex).
    static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "A") ... UInt8(ascii: "Z"), UInt8(ascii: "a") ... UInt8(ascii: "z"),
                 UInt8(ascii: "0") ... UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    /// The `Authorization` header for a request (Signature V4, signed headers: host,
    /// x-amz-content-sha256, x-amz-date).
    static func authorization(method: String, canonicalPath: String, canonicalQuery: String, host: String,
                              payloadHash: String, amzDate: String, config: S3Config) -> String {
        let day = String(amzDate.prefix(8))
        let signedHeaders = "host;x-amz-content-sha256;x-amz-date"
        let canonicalRequest = [method, canonicalPath, canonicalQuery,
                                "host:\(host)\nx-amz-content-sha256:\(payloadHash)\nx-amz-date:\(amzDate)\n",
                                signedHeaders, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(config.region)/s3/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(SHA256.hash(data: Array(canonicalRequest.utf8)))].joined(separator: "\n")
        var key = hmac(Array("AWS4\(config.secretKey)".utf8), day)
        key = hmac(key, config.region)
        key = hmac(key, "s3")
        key = hmac(key, "aws4_request")
        let signature = hex(hmac(key, stringToSign))
        return "AWS4-HMAC-SHA256 Credential=\(config.accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
    }

    static func amzDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date)
    }

    // MARK: requests

    /// Sends one signed request for `key` in the bucket (nil: the bucket itself).
    func send(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [],
              body: [UInt8]? = nil) throws -> S3Response {
        var path = "/" + config.bucket
        if let key { path += "/" + key }
        let canonicalPath = S3Client.uriEncode(path, keepSlash: true)
        var encoded: [(String, String)] = query.map { pair in
            (S3Client.uriEncode(pair.0, keepSlash: false), S3Client.uriEncode(pair.1, keepSlash: false))
        }
        encoded.sort { a, b in a.0 != b.0 ? a.0 < b.0 : a.1 < b.1 }
        let canonicalQuery = encoded.map { pair in pair.0 + "=" + pair.1 }.joined(separator: "&")
        let payloadHash = S3Client.hex(SHA256.hash(data: body ?? []))
        let amzDate = S3Client.amzDate(Date())
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "x-amz-date", value: amzDate)
        headers.add(name: "x-amz-content-sha256", value: payloadHash)
        headers.add(name: "Authorization", value: S3Client.authorization(
            method: method.rawValue, canonicalPath: canonicalPath, canonicalQuery: canonicalQuery, host: hostHeader,
            payloadHash: payloadHash, amzDate: amzDate, config: config))
        for (name, value) in extra { headers.add(name: name, value: value) }
        var url = "\(scheme)://\(hostHeader)\(canonicalPath)"
        if !canonicalQuery.isEmpty { url += "?" + canonicalQuery }
        let what = "S3 \(method.rawValue) \(config.endpoint)/\(config.bucket)/\(key ?? "")"
        let request: HTTPClient.Request
        do {
            request = try HTTPClient.Request(url: url, method: method, headers: headers, body: body.map { .bytes($0) })
        } catch {
            throw StoreError.invalidRequest("\(what): bad request: \(error)")
        }
        requestCount.add()
        do {
            // Safe: never called on an event-loop thread (see the type's doc comment).
            let response = try S3Client.http.execute(request: request, deadline: .now() + S3Client.requestTimeout).wait()
            let bytes = response.body.map { Array($0.readableBytesView) } ?? []
            return S3Response(status: Int(response.status.code), headers: response.headers, body: bytes)
        } catch {
            throw StoreError.unavailable("\(what) failed: \(error) (is the S3 server at \(config.endpoint) running and reachable?)")
        }
    }

    /// Fails with the server's message unless the status is one of `expected`.
    @discardableResult
    func check(_ response: S3Response, _ expected: Set<Int>, _ what: String) throws -> S3Response {
        guard expected.contains(response.status) else {
            let code = S3Client.xmlValues(response.text, tag: "Code").first ?? ""
            let message = S3Client.xmlValues(response.text, tag: "Message").first ?? String(response.text.prefix(200))
            throw StoreError.unavailable("S3 \(what): HTTP \(response.status) \(code) \(message)")
        }
        return response
    }

    /// The text of every `<tag>...</tag>` in a small XML document, unescaped.
    static func xmlValues(_ xml: String, tag: String) -> [String] {
        var out: [String] = []
        var rest = xml[...]
        let open = "<\(tag)>", close = "</\(tag)>"
        while let start = rest.range(of: open), let end = rest.range(of: close, range: start.upperBound ..< rest.endIndex) {
            out.append(String(rest[start.upperBound ..< end.lowerBound])
                .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
                .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&amp;", with: "&"))
            rest = rest[end.upperBound...]
        }
        return out
    }

    // MARK: operations

    func ensureBucket() throws {
        let head = try send(.HEAD, key: nil)
        if head.status == 200 { return }
        let made = try send(.PUT, key: nil)
        guard made.status == 200 || S3Client.xmlValues(made.text, tag: "Code").first == "BucketAlreadyOwnedByYou" else {
            try check(made, [200], "create bucket \(config.bucket)")
            return
        }
    }

    /// Deletes every object and then the bucket (tests and benchmarks clean up with it).
    func deleteBucket() throws {
        for key in try list(prefix: "") { try delete(key: key) }
        try check(try send(.DELETE, key: nil), [200, 204, 404], "DELETE bucket \(config.bucket)")
    }

    func bucketExists() throws -> Bool {
        let head = try send(.HEAD, key: nil)
        if head.status == 404 { return false }
        try check(head, [200], "HEAD bucket \(config.bucket)")
        return true
    }

    func put(key: String, body: [UInt8]) throws {
        try check(try send(.PUT, key: key, body: body), [200], "PUT \(key)")
    }

    func get(key: String) throws -> [UInt8]? {
        let r = try send(.GET, key: key)
        if r.status == 404 { return nil }
        return try check(r, [200], "GET \(key)").body
    }

    func getRange(key: String, offset: Int, length: Int) throws -> S3Response {
        try send(.GET, key: key, headers: [("Range", "bytes=\(offset)-\(offset + length - 1)")])
    }

    /// Size of an object, nil when it does not exist.
    func head(key: String) throws -> Int? {
        let r = try send(.HEAD, key: key)
        if r.status == 404 { return nil }
        try check(r, [200], "HEAD \(key)")
        guard let length = r.headers.first(name: "Content-Length").flatMap({ Int($0) }) else {
            throw StoreError.unavailable("S3 HEAD \(key): no Content-Length")
        }
        return length
    }

    func delete(key: String) throws {
        try check(try send(.DELETE, key: key), [200, 204, 404], "DELETE \(key)")
    }

    /// Every key under `prefix` (ListObjectsV2, following continuation tokens).
    func list(prefix: String) throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let r = try check(try send(.GET, key: nil, query: query), [200], "list \(prefix)")
            keys += S3Client.xmlValues(r.text, tag: "Key")
            token = S3Client.xmlValues(r.text, tag: "IsTruncated").first == "true" ? S3Client.xmlValues(r.text, tag: "NextContinuationToken").first : nil
        } while token != nil
        return keys
    }

    /// Every key under `prefix` with its LastModified time (nil when the server gives none).
    func listWithDates(prefix: String) throws -> [(key: String, modified: Date?)] {
        var out: [(key: String, modified: Date?)] = []
        var token: String?
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let r = try check(try send(.GET, key: nil, query: query), [200], "list \(prefix)")
            for entry in S3Client.xmlValues(r.text, tag: "Contents") {
                guard let key = S3Client.xmlValues(entry, tag: "Key").first else { continue }
                let stamp = S3Client.xmlValues(entry, tag: "LastModified").first
                out.append((key, stamp.flatMap { parser.date(from: $0) ?? plain.date(from: $0) }))
            }
            token = S3Client.xmlValues(r.text, tag: "IsTruncated").first == "true" ? S3Client.xmlValues(r.text, tag: "NextContinuationToken").first : nil
        } while token != nil
        return out
    }

    func createMultipart(key: String) throws -> String {
        let r = try check(try send(.POST, key: key, query: [("uploads", "")]), [200], "start multipart upload of \(key)")
        guard let id = S3Client.xmlValues(r.text, tag: "UploadId").first else {
            throw StoreError.unavailable("S3 start multipart upload of \(key): no UploadId in the reply")
        }
        return id
    }

    func uploadPart(key: String, uploadID: String, number: Int, body: [UInt8]) throws -> String {
        let r = try check(try send(.PUT, key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)], body: body),
                          [200], "upload part \(number) of \(key)")
        guard let etag = r.headers.first(name: "ETag") else { throw StoreError.unavailable("S3 upload part \(number) of \(key): no ETag") }
        return etag
    }

    func completeMultipart(key: String, uploadID: String, etags: [String]) throws {
        var xml = "<CompleteMultipartUpload>"
        for (i, etag) in etags.enumerated() {
            xml += "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(etag)</ETag></Part>"
        }
        xml += "</CompleteMultipartUpload>"
        let r = try check(try send(.POST, key: key, query: [("uploadId", uploadID)], body: Array(xml.utf8)), [200],
                          "complete multipart upload of \(key)")
        // S3 may report a failure inside a 200 reply.
        if r.text.contains("<Error>") { try check(S3Response(status: 500, headers: r.headers, body: r.body), [200], "complete multipart upload of \(key)") }
    }

    /// Multipart uploads in progress (started, neither completed nor aborted): key and upload id.
    /// The first page of ListMultipartUploads (up to 1,000); used by tests to find a writer's upload.
    func multipartUploads() throws -> [(key: String, uploadID: String)] {
        let r = try check(try send(.GET, key: nil, query: [("uploads", "")]), [200], "list multipart uploads")
        return Array(zip(S3Client.xmlValues(r.text, tag: "Key"), S3Client.xmlValues(r.text, tag: "UploadId"))).map { (key: $0.0, uploadID: $0.1) }
    }

    func abortMultipart(key: String, uploadID: String) {
        _ = try? send(.DELETE, key: key, query: [("uploadId", uploadID)])
    }
}

/// A thread-safe counter.
public final class Counter: @unchecked Sendable {
    // Safe: `value` is only touched under `lock`.
    private let lock = NSLock()
    private var value = 0
    public init() {}
    public func add(_ n: Int = 1) { lock.lock(); value += n; lock.unlock() }
    public var count: Int { lock.lock(); defer { lock.unlock() }; return value }
}
