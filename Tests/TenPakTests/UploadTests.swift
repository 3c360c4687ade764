import Foundation
import TenPakChunkStore
@testable import TenPakHTTP
import TenPakModelStore
import TenPakTestSupport
import XCTest

/// `tpstore serve --allow-uploads`: PUT of one file or of a tar archive, through the binary and curl.
final class UploadTests: XCTestCase {
    var store = ""
    var spool = ""

    override func setUpWithError() throws {
        let dir = TestSupport.temporaryDirectory(self, "upload")
        store = dir + "/store"
        spool = dir + "/spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["init", "--store", store]).status, 0)
    }

    func server(_ extra: [String] = []) throws -> String {
        try TestSupport.startServer(self, store: store, extra: ["--allow-uploads", "--spool-dir", spool] + extra)
    }

    func curl(_ args: String...) throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try TestSupport.curl(self, args)
    }

    func json(_ body: [UInt8]) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], String(decoding: body, as: UTF8.self))
    }

    /// A tar of `directory`'s files made by Python's tarfile in `format` (the oracle for the format).
    func makeTar(_ directory: String, format: String, extra: String = "") throws -> String {
        let out = TestSupport.temporaryDirectory(self, "tar") + "/upload.tar"
        let py = try XCTUnwrap(TestSupport.python3())
        let r = try TestSupport.run(py, ["-c", """
            import os, sys, tarfile
            src, out, fmt = sys.argv[1], sys.argv[2], getattr(tarfile, sys.argv[3])
            with tarfile.open(out, 'w', format=fmt) as t:
                for root, dirs, files in sorted(os.walk(src)):
                    for d in sorted(dirs): t.add(os.path.join(root, d), os.path.relpath(os.path.join(root, d), src), recursive=False)
                    for f in sorted(files): t.add(os.path.join(root, f), os.path.relpath(os.path.join(root, f), src))
            \(extra)
            """, directory, out, format])
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    func assertStored(_ model: String, _ revision: String, equals directory: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = TestSupport.temporaryDirectory(self, "got")
        let r = try TestSupport.run(TestSupport.tpstore, ["get", "--store", store, "\(model)@\(revision)", out])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        XCTAssertEqual(TestSupport.files(under: out), TestSupport.files(under: directory), file: file, line: line)
        for path in TestSupport.files(under: directory) {
            XCTAssertEqual(try TestSupport.read(out + "/" + path), try TestSupport.read(directory + "/" + path), path, file: file, line: line)
        }
    }

    func testPutOneFileThenReadItBack() throws {
        let url = try server()
        let source = TestSupport.fixtures + "/models/tiny-base/model.safetensors"
        var r = try curl("-T", source, url + "/org/tiny@v1x/resolve/v1/model.safetensors")
        XCTAssertEqual(r.status, 400, "@ is not allowed in a model name")
        r = try curl("-T", source, url + "/org/tiny/resolve/v1/model.safetensors?base=none")
        XCTAssertEqual(r.status, 201, String(decoding: r.body, as: UTF8.self))
        let receipt = try json(r.body)
        XCTAssertEqual(receipt["model"] as? String, "org/tiny")
        XCTAssertEqual(receipt["revision"] as? String, "v1")
        XCTAssertEqual(receipt["bytes"] as? Int, try TestSupport.read(source).count)
        XCTAssertEqual(r.headers["location"], "/org/tiny/resolve/v1/")
        r = try curl(url + "/org/tiny/resolve/v1/model.safetensors")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, try TestSupport.read(source))
        // Revisions are immutable: a second PUT to the same revision is refused and changes nothing.
        r = try curl("-T", TestSupport.fixtures + "/models/tiny-ft/model.safetensors", url + "/org/tiny/resolve/v1/model.safetensors")
        XCTAssertEqual(r.status, 409)
        XCTAssertTrue(String(decoding: r.body, as: UTF8.self).contains("already exists"))
        r = try curl(url + "/org/tiny/resolve/v1/model.safetensors")
        XCTAssertEqual(r.body, try TestSupport.read(source))
        // A fine-tune PUT with an automatic base is stored as deltas against it.
        r = try curl("-T", TestSupport.fixtures + "/models/tiny-ft/model.safetensors", url + "/org/tiny-ft/resolve/v1/model.safetensors")
        XCTAssertEqual(r.status, 201, String(decoding: r.body, as: UTF8.self))
        let ft = try json(r.body)
        XCTAssertEqual(ft["base"] as? String, "org/tiny@v1")
        let files = try XCTUnwrap(ft["files"] as? [[String: Any]])
        XCTAssertGreaterThan(files.first?["deltaChunks"] as? Int ?? 0, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [], "the spool is emptied after each upload")
    }

    func testPutTarArchivesInEveryFormat() throws {
        let url = try server()
        let source = TestSupport.fixtures + "/models/tiny-ft"
        for (i, format) in ["PAX_FORMAT", "GNU_FORMAT", "USTAR_FORMAT"].enumerated() {
            let tar = try makeTar(source, format: format)
            let r = try curl("-T", tar, url + "/tiny-ft/revisions/r\(i)")
            XCTAssertEqual(r.status, 201, "\(format): \(String(decoding: r.body, as: UTF8.self))")
            try assertStored("tiny-ft", "r\(i)", equals: source)
        }
        // GNU tar through a pipe (chunked transfer encoding, no Content-Length), with ./ prefixes.
        let r = try TestSupport.run("/bin/bash", ["-c", "tar -C '\(source)' -cf - . | curl -s -o /dev/null -w '%{http_code}' -T - '\(url)/tiny-ft/revisions/piped'"])
        XCTAssertEqual(r.stdout, "201", r.stderr)
        try assertStored("tiny-ft", "piped", equals: source)

        // A path longer than ustar's 100-byte name field travels in a pax record (or GNU 'L' entry).
        let deep = TestSupport.temporaryDirectory(self, "deep")
        let long = (0 ..< 6).map { "directory-level-\($0)-with-a-long-name" }.joined(separator: "/")
        try FileManager.default.createDirectory(atPath: deep + "/" + long, withIntermediateDirectories: true)
        try TestSupport.write(Array("deep".utf8), to: deep + "/" + long + "/file.txt")
        try TestSupport.write([], to: deep + "/empty")
        for format in ["PAX_FORMAT", "GNU_FORMAT"] {
            let response = try curl("-T", try makeTar(deep, format: format), url + "/deep/revisions/\(format.lowercased())")
            XCTAssertEqual(response.status, 201, String(decoding: response.body, as: UTF8.self))
            try assertStored("deep", format.lowercased(), equals: deep)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [])
    }

    func testBadUploadsAreRefusedAndStoreNothing() throws {
        let url = try server(["--max-upload-mib", "1"])
        let garbage = TestSupport.temporaryDirectory(self, "bad") + "/garbage"
        try TestSupport.write(Array(repeating: 7, count: 2048), to: garbage)
        var r = try curl("-T", garbage, url + "/m/revisions/r1")
        // 400: a `TarError` (its kinds are checked on the extractor itself, below).
        XCTAssertEqual(r.status, 400, String(decoding: r.body, as: UTF8.self))
        // A symlink, a path escaping the revision, a truncated archive.
        let cases: [(String, String)] = [
            ("symlink", """
                i = tarfile.TarInfo('link'); i.type = tarfile.SYMTYPE; i.linkname = '/etc/passwd'
                with tarfile.open(out, 'a') as t: t.addfile(i)
                """),
            ("escape", """
                import io
                i = tarfile.TarInfo('../evil.txt'); i.size = 4
                with tarfile.open(out, 'a') as t: t.addfile(i, io.BytesIO(b'evil'))
                """),
            ("truncated", "open(out, 'r+b').truncate(700)"),
            ("clash", """
                import io
                i = tarfile.TarInfo('notes.txt/inner'); i.size = 2
                with tarfile.open(out, 'a') as t: t.addfile(i, io.BytesIO(b'hi'))
                """),
        ]
        for (name, script) in cases {
            let tar = try makeTar(TestSupport.fixtures + "/misc", format: "PAX_FORMAT", extra: script)
            r = try curl("-T", tar, url + "/m/revisions/\(name)")
            XCTAssertEqual(r.status, 400, "\(name): \(String(decoding: r.body, as: UTF8.self))")
        }
        // Over the limit: refused by Content-Length, and while streaming when there is none.
        let big = TestSupport.temporaryDirectory(self, "bad") + "/big.bin"
        try TestSupport.write(Array(repeating: 1, count: (1 << 20) + 1), to: big)
        r = try curl("-T", big, url + "/m/resolve/r1/big.bin")
        XCTAssertEqual(r.status, 413)
        let piped = try TestSupport.run("/bin/bash", ["-c", "cat '\(big)' | curl -s -o /dev/null -w '%{http_code}' -T - '\(url)/m/resolve/r1/big.bin'"])
        XCTAssertEqual(piped.stdout, "413")
        r = try curl("-X", "DELETE", url + "/m/resolve/r1/big.bin")
        XCTAssertEqual(r.status, 405)
        XCTAssertEqual(r.headers["allow"], "GET, HEAD, PUT")

        // None of it stored anything, and the spool is empty.
        let list = try TestSupport.run(TestSupport.tpstore, ["ls", "--store", store])
        XCTAssertFalse(list.stdout.contains("m@") || list.stdout.contains("\nm "), list.stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: spool), [])
        XCTAssertEqual(try TestSupport.run(TestSupport.tpstore, ["fsck", "--store", store]).status, 0)
    }

    func testClientCutOffMidUploadStoresNothing() throws {
        let url = try server()
        let port = try XCTUnwrap(url.split(separator: ":").last)
        let py = try XCTUnwrap(TestSupport.python3())
        // Announces 8 MiB, sends 3 MiB, then closes the connection.
        let r = try TestSupport.run(py, ["-c", """
            import socket, sys
            s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
            s.sendall(b'PUT /cut/resolve/r1/w.bin HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 8388608\\r\\n\\r\\n')
            s.sendall(b'\\x01' * (3 << 20))
            s.close()
            """, String(port)])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The server notices the cut, drops the spool and stores nothing; it keeps serving.
        var spooled = ["?"]
        for _ in 0 ..< 100 {
            spooled = try FileManager.default.contentsOfDirectory(atPath: spool)
            if spooled.isEmpty { break }
            usleep(100_000)
        }
        XCTAssertEqual(spooled, [])
        let head = try curl("-I", url + "/cut/resolve/r1/w.bin")
        XCTAssertEqual(head.status, 404)
        let ok = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", url + "/cut/resolve/r1/notes.txt")
        XCTAssertEqual(ok.status, 201)
    }

    func testBearerTokenIsRequiredWhenConfigured() throws {
        let tokenFile = TestSupport.temporaryDirectory(self, "token") + "/token"
        try TestSupport.write(Array("s3cret-token\n".utf8), to: tokenFile)
        let url = try server(["--upload-token-file", tokenFile])
        let file = TestSupport.fixtures + "/misc/notes.txt"
        var r = try curl("-T", file, url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 401)
        XCTAssertEqual(r.headers["www-authenticate"], "Bearer")
        r = try curl("-T", file, "-H", "Authorization: Bearer wrong", url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 401)
        r = try curl("-T", file, "-H", "Authorization: Bearer s3cret-token", url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 201)
        // Reads need no token.
        r = try curl(url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.body, try TestSupport.read(file))
    }

    func testReadOnlyServerRefusesPut() throws {
        let url = try TestSupport.startServer(self, store: store)
        let r = try curl("-T", TestSupport.fixtures + "/misc/notes.txt", url + "/t/resolve/r1/notes.txt")
        XCTAssertEqual(r.status, 405)
        XCTAssertEqual(r.headers["allow"], "GET, HEAD")
    }

    // MARK: the tar reader on its own

    func testTarExtractorTakesAnyFeedSizeAndChecksHeaders() throws {
        let source = TestSupport.fixtures + "/models/tiny-base"
        let bytes = try TestSupport.read(try makeTar(source, format: "PAX_FORMAT"))
        for feed in [1, 511, 512, 513, 65536, bytes.count] {
            let dir = TestSupport.temporaryDirectory(self, "x")
            let extractor = TarExtractor(directory: dir)
            var at = 0
            while at < bytes.count {
                let n = min(feed, bytes.count - at)
                try bytes[at ..< at + n].withUnsafeBytes { try extractor.feed($0) }
                at += n
            }
            let files = try extractor.finish()
            XCTAssertEqual(files.map(\.path).sorted(), TestSupport.files(under: source), "feed \(feed)")
            for f in files { XCTAssertEqual(try TestSupport.read(f.location), try TestSupport.read(source + "/" + f.path)) }
        }
        // One flipped header byte fails the checksum.
        var damaged = bytes
        damaged[20] ^= 0x01
        let extractor = TarExtractor(directory: TestSupport.temporaryDirectory(self, "x"))
        XCTAssertThrowsError(try damaged.withUnsafeBytes { try extractor.feed($0) }) { error in
            XCTAssertEqual((error as? TarError)?.kind, .notATar, "\(error)")
        }
        // Octal and base-256 numbers.
        XCTAssertEqual(try TarExtractor.number(Array("0000644 \0".utf8)[...], field: "mode"), 0o644)
        XCTAssertEqual(try TarExtractor.number(([0x80] + [UInt8](repeating: 0, count: 6) + [0, 0, 0, 2, 0, 0])[...], field: "size", base256: true), 2 << 16)
        func assertRefused(_ kind: TarError.Kind, _ body: () throws -> Void, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { XCTAssertEqual(($0 as? TarError)?.kind, kind, "\($0)", line: line) }
        }
        assertRefused(.badNumber(field: "size")) { _ = try TarExtractor.number(([0x80] + [UInt8](repeating: 0xFF, count: 11))[...], field: "size", base256: true) }
        assertRefused(.notATar) { _ = try TarExtractor.number(([0x80] + [UInt8](repeating: 0, count: 7))[...], field: "checksum") }
        assertRefused(.notATar) { _ = try TarExtractor.number(Array("12x4".utf8)[...], field: "size") }
        XCTAssertEqual(try TarExtractor.paxRecords(Array("18 path=a/b/c.txt\n9 size=7\n".utf8)).map { "\($0.0)=\($0.1)" }, ["path=a/b/c.txt", "size=7"])
        assertRefused(.badMetadata) { _ = try TarExtractor.paxRecords(Array("99 path=x\n".utf8)) }
        assertRefused(.badMetadata) { _ = try TarExtractor.paxRecords(Array("9 size=7\n9223372036854775807 path=x\n".utf8)) }
        // Not a tar at all (what the upload test sends), and an archive cut short.
        let garbage = TarExtractor(directory: TestSupport.temporaryDirectory(self, "x"))
        assertRefused(.notATar) { try [UInt8](repeating: 7, count: 2048).withUnsafeBytes { try garbage.feed($0) } }
        let short = TarExtractor(directory: TestSupport.temporaryDirectory(self, "x"))
        assertRefused(.truncated) {
            try bytes[0 ..< 700].withUnsafeBytes { try short.feed($0) }
            _ = try short.finish()
        }
        // Hostile headers are refused, never a crash: a checksum field in base-256 form, and a
        // directory claiming Int.max bytes through a pax record.
        var hostile = [UInt8](repeating: 0, count: 512)
        hostile[0] = UInt8(ascii: "a")
        hostile[148] = 0x80
        let first = TarExtractor(directory: TestSupport.temporaryDirectory(self, "x"))
        assertRefused(.notATar) { try hostile.withUnsafeBytes { try first.feed($0) } }
        func header(_ name: String, type: UInt8, size: Int) -> [UInt8] {
            var h = [UInt8](repeating: 0, count: 512)
            h.replaceSubrange(0 ..< name.utf8.count, with: Array(name.utf8))
            let octal = Array(String(size, radix: 8).utf8)
            h.replaceSubrange((135 - octal.count) ..< 135, with: octal)
            h[156] = type
            h.replaceSubrange(257 ..< 263, with: Array("ustar\0".utf8))
            for i in 148 ..< 156 { h[i] = 32 }
            let sum = Array(String(h.reduce(0) { $0 + Int($1) }, radix: 8).utf8)
            h.replaceSubrange((155 - sum.count) ..< 155, with: sum)
            return h
        }
        let record = Array("28 size=9223372036854775807\n".utf8)
        var pax = header("pax", type: UInt8(ascii: "x"), size: record.count) + record
        pax += [UInt8](repeating: 0, count: 512 - record.count) + header("dir", type: UInt8(ascii: "5"), size: 0)
        let second = TarExtractor(directory: TestSupport.temporaryDirectory(self, "x"))
        XCTAssertThrowsError(try pax.withUnsafeBytes { try second.feed($0) }) { error in
            XCTAssertEqual((error as? TarError)?.kind, .refusedEntry(path: "dir"), "\(error)")
        }
    }
}
