import Foundation
@testable import TenPakHTTP
import TenPakFormat
import TenPakTestSupport
import XCTest

/// The web pages of `tpstore serve --auth FILE` (SPEC section 14.8), against a store holding a
/// base, its fine-tune (annotated by the optimizer), a model with `<script>` in its model card and
/// in a path, and a repository only one token may read. Figures are checked against
/// `tpstore show --json`, `tpstore stats --json` and `tpstore annotations --json`.
final class WebPagesTests: XCTestCase {
    var root = ""
    var store = ""
    var authFile = ""
    let adminToken = "web_admin_0123456789"
    let orgToken = "web_org_0123456789ab"
    let html = "Accept: text/html,application/xhtml+xml,*/*;q=0.8"

    override func setUpWithError() throws {
        root = TestSupport.temporaryDirectory(self, "web")
        store = root + "/store"
        XCTAssertEqual(try tp(["init", "--store", store]).status, 0)
        // The admin reads everything (and may write scratch/*, for the cookie-on-POST check); the
        // org token and anonymous callers read org/* only, so secret/hidden is not theirs.
        let auth = """
            {"tokens": [{"token": "\(adminToken)", "name": "admin", "read": ["**"], "write": ["scratch/*"]},
                        {"token": "\(orgToken)", "name": "org-reader", "read": ["org/*"]}],
             "anonymous": {"read": ["org/*"]}}
            """
        authFile = root + "/auth.json"
        try TestSupport.write(Array(auth.utf8), to: authFile)
        let fixtures = TestSupport.fixtures + "/models"
        for (model, dir) in [("org/base", "tiny-base"), ("org/ft", "tiny-ft"), ("secret/hidden", "tiny-sharded")] {
            let r = try tp(["put", "--store", store, model, fixtures + "/" + dir])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // Attacker-controlled text: a model card and a path (directory `x<script>alert(2)<`, file `script>`).
        let evil = root + "/evil"
        try FileManager.default.createDirectory(atPath: evil + "/x<script>alert(2)<", withIntermediateDirectories: true)
        try TestSupport.write(Array("# Evil\n<script>alert(1)</script>\n<img src=x onerror=alert(3)>\n".utf8), to: evil + "/README.md")
        try TestSupport.write(Array("payload".utf8), to: evil + "/x<script>alert(2)</script>")
        let r = try tp(["put", "--store", store, "org/evil", evil])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func tp(_ args: [String]) throws -> TestSupport.RunResult { try TestSupport.run(TestSupport.tpstore, args) }

    func json(_ args: [String]) throws -> Any {
        let r = try tp(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
    }

    func server(_ extra: [String] = []) throws -> String {
        try TestSupport.startServer(self, store: store, extra: ["--auth", authFile] + extra)
    }

    func get(_ url: String, _ extra: String...) throws -> (status: Int, headers: [String: String], text: String) {
        let r = try TestSupport.curl(self, ["-H", html] + extra + [url])
        return (r.status, r.headers, String(decoding: r.body, as: UTF8.self))
    }

    /// The text of the element with this id (`id="x">text<`).
    func element(_ id: String, in page: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        guard let start = page.range(of: "id=\"\(id)\">") else {
            XCTFail("no element \(id) on the page", file: file, line: line)
            return nil
        }
        return String(page[start.upperBound...].prefix { $0 != "<" })
    }

    func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;").replacingOccurrences(of: "'", with: "&#39;")
    }

    // MARK: figures

    func testModelPageShowsTheBaseRatioAndRecommendationOfShow() throws {
        let optimize = try tp(["optimize", "--store", store, "org/ft"])
        XCTAssertEqual(optimize.status, 0, optimize.stderr)
        let url = try server()
        let show = try XCTUnwrap(try json(["show", "--store", store, "org/ft", "--json"]) as? [String: Any])
        let revision = try XCTUnwrap(show["revision"] as? [String: Any])
        let base = try XCTUnwrap(revision["base"] as? String, "the fine-tune is stored against a base")
        XCTAssertTrue(base.hasPrefix("org/base@"), base)
        let reason = try XCTUnwrap(revision["baseReason"] as? String)
        let size = try XCTUnwrap(show["size"] as? Int), stored = try XCTUnwrap(show["storedBytes"] as? Int)
        let files = try XCTUnwrap(show["files"] as? [[String: Any]])
        let sums = ["sharedChunks", "deltaChunks", "freshChunks"].map { key in files.reduce(0) { $0 + (($1[key] as? Int) ?? 0) } }
        XCTAssertGreaterThan(sums[1], 0, "the fine-tune has delta chunks")

        let page = try get(url + "/org/ft")
        XCTAssertEqual(page.status, 200, page.text)
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertEqual(element("stored-ratio", in: page.text), String(format: "%.3f", Double(stored) / Double(size)))
        XCTAssertEqual(element("stored-bytes", in: page.text), "\(stored)")
        XCTAssertEqual(element("size-bytes", in: page.text), "\(size)")
        XCTAssertEqual(element("shared-chunks", in: page.text), "\(sums[0])")
        XCTAssertEqual(element("delta-chunks", in: page.text), "\(sums[1])")
        XCTAssertEqual(element("fresh-chunks", in: page.text), "\(sums[2])")
        // The revision list gives each revision's ratio too (here the one revision, main).
        XCTAssertTrue(page.text.contains("<td class=\"n\">\(String(format: "%.3f", Double(stored) / Double(size)))</td>"), page.text)
        XCTAssertTrue(page.text.contains(">\(base)</a>: \(escaped(reason))</p>"), "base and why it was chosen:\n\(page.text)")
        for file in files {
            XCTAssertTrue(page.text.contains(">\(escaped(file["path"] as? String ?? "?"))</a>"), "file \(file["path"] ?? "?") listed")
        }
        // The optimizer's recommendation, as `tpstore annotations --json` holds it.
        let annotations = try XCTUnwrap(try json(["annotations", "--store", store, "org/ft", "--json"]) as? [[String: Any]])
        let recommendation = try XCTUnwrap(annotations.first?["recommendation"] as? [String: Any], "a tiny model fits the error bar")
        let method = try XCTUnwrap(recommendation["method"] as? String)
        let dollars = try XCTUnwrap(recommendation["dollarsPerMonth"] as? Double)
        XCTAssertTrue(page.text.contains("class=\"recommended\">\(method)</b> at <b class=\"monthly\">\(String(format: "$%.0f", dollars))</b>"), page.text)
        // The chain of bases: here the base, which has none.
        XCTAssertTrue(page.text.contains("id=\"base-chain\">Chain of bases: <a href=\"/org/base/tree/\(base.dropFirst("org/base@".count))\">\(base)</a></p>"), page.text)
        // The base itself: no base, no annotation yet.
        let basePage = try get(url + "/org/base")
        XCTAssertEqual(basePage.status, 200)
        XCTAssertEqual(element("base", in: basePage.text), "No base: stored on its own.")
        XCTAssertTrue(basePage.text.contains("Not annotated yet"))

        // A fine-tune of the fine-tune: its chain runs through org/ft to org/base.
        var r = try tp(["put", "--store", store, "--base", "org/ft", "org/ft2", TestSupport.fixtures + "/models/tiny-ft"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ftRevision = try XCTUnwrap(revision["revision"] as? String)
        let baseLink = "<a href=\"/org/base/tree/\(base.dropFirst("org/base@".count))\">\(base)</a>"
        let ft2 = try get(url + "/org/ft2").text
        XCTAssertTrue(ft2.contains("Chain of bases: <a href=\"/org/ft/tree/\(ftRevision)\">org/ft@\(ftRevision)</a> → \(baseLink)</p>"), ft2)

        // The files of a revision, by name and by commit; an unknown revision is 404.
        let rev = String(base.dropFirst("org/base@".count))
        let tree = try get(url + "/org/base/tree/\(rev)")
        XCTAssertEqual(tree.status, 200, tree.text)
        XCTAssertTrue(tree.text.contains(">model.safetensors</a>"), tree.text)
        XCTAssertTrue(tree.text.contains(">sub/"), "nested paths listed: \(tree.text)")
        XCTAssertEqual(try get(url + "/org/base/tree/main/sub").status, 200)
        XCTAssertEqual(try get(url + "/org/base/tree/main/no-such-dir").status, 404)
        XCTAssertEqual(try get(url + "/org/base/tree/nope").status, 404)
        XCTAssertEqual(try get(url + "/org/base/tree/main/..", "--path-as-is").status, 400)

        // With org/base removed (its chunks stay: org/ft's deltas need them), the chain says so.
        r = try tp(["rm", "--store", store, base])
        XCTAssertEqual(r.status, 0, r.stderr)
        let after = try get(url + "/org/ft2").text
        XCTAssertTrue(after.contains(">org/ft@\(ftRevision)</a> → \(base) (removed; its chunks stay while they are needed)</p>"), after)
    }

    func testDashboardTotalsEqualStatsAndPricesApply() throws {
        for bad in ["--price-storage-gb-month=-1", "--price-egress-gb=nan"] {
            let r = try tp(["serve", "--store", store, "--listen", "127.0.0.1:0", bad])
            XCTAssertNotEqual(r.status, 0, bad)
            XCTAssertTrue(r.stderr.contains("--price-storage-gb-month and --price-egress-gb must be 0 or more"), r.stderr)
        }
        let url = try server(["--price-storage-gb-month", "125", "--price-egress-gb", "25"])
        let stats = try XCTUnwrap(try json(["stats", "--store", store, "--json"]) as? [String: Any])
        func int(_ key: String) throws -> Int { try XCTUnwrap(stats[key] as? Int, key) }
        func ratio(_ key: String) throws -> String { String(format: "%.2f", try XCTUnwrap(stats[key] as? Double, key)) }

        let page = try get(url + "/~/dashboard", "-H", "Authorization: Bearer \(adminToken)")
        XCTAssertEqual(page.status, 200, page.text)
        XCTAssertEqual(element("total-logical", in: page.text), "\(try int("logicalBytes"))")
        XCTAssertEqual(element("total-stored-chunks", in: page.text), "\(try int("storedChunkBytes"))")
        XCTAssertEqual(element("total-pack-bytes", in: page.text), "\(try int("packBytes"))")
        XCTAssertEqual(element("overall-ratio", in: page.text), try ratio("overallRatio"))
        XCTAssertEqual(element("dedup-ratio", in: page.text), try ratio("dedupRatio"))
        XCTAssertEqual(element("compression-ratio", in: page.text), try ratio("compressionRatio"))
        let saved = Double(try int("logicalBytes") - int("packBytes"))
        XCTAssertGreaterThan(saved, 2e5, "the fixtures save something")
        // At $125/GB-month and $25/GB these savings are cents (a bare $0.00 would hide them).
        XCTAssertEqual(element("storage-worth", in: page.text), String(format: "$%.2f", saved / 1e9 * 125))
        XCTAssertEqual(element("egress-worth", in: page.text), String(format: "$%.2f", saved / 1e9 * 25))
        XCTAssertTrue(page.text.contains("storage at $125.00/GB-month"), page.text)
        XCTAssertTrue(page.text.contains("at $25.00/GB egress"), page.text)
        // One point per put, and every readable model in the savings table.
        XCTAssertTrue(page.text.contains("<svg viewBox="), page.text)
        XCTAssertTrue(page.text.contains("4 puts;"), page.text)
        XCTAssertEqual(page.text.components(separatedBy: "<circle ").count - 1, 8, "two dots per put")
        for model in ["org/base", "org/ft", "org/evil", "secret/hidden"] {
            XCTAssertTrue(page.text.contains(">\(model)</a></td>"), "\(model) in the savings table")
        }
        XCTAssertTrue(page.text.contains("name=\"viewport\""), "readable on a phone")
        // The chart's last point is the store: stats' logical bytes and stored chunk bytes.
        XCTAssertEqual(element("timeline-logical", in: page.text), "\(try int("logicalBytes"))")
        XCTAssertEqual(element("timeline-stored", in: page.text), "\(try int("storedChunkBytes"))")

        // A put after the dashboard was shown extends its figures; a removal recomputes them: both
        // still agree with stats.
        func agrees(_ puts: Int, _ what: String) throws {
            let now = try XCTUnwrap(try json(["stats", "--store", store, "--json"]) as? [String: Any])
            let page = try get(url + "/~/dashboard", "-H", "Authorization: Bearer \(adminToken)")
            XCTAssertTrue(page.text.contains("\(puts) puts;"), "\(what): \(page.text)")
            for (id, key) in [("total-logical", "logicalBytes"), ("timeline-logical", "logicalBytes"), ("total-stored-chunks", "storedChunkBytes"),
                              ("timeline-stored", "storedChunkBytes"), ("total-pack-bytes", "packBytes")] {
                XCTAssertEqual(element(id, in: page.text), "\(now[key] as? Int ?? -1)", "\(what): \(id)")
            }
        }
        var r = try tp(["put", "--store", store, "org/ft@v2", TestSupport.fixtures + "/models/tiny-sharded"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try agrees(5, "after a put")
        let listed = try XCTUnwrap(try json(["ls", "--store", store, "org/base", "--json"]) as? [[String: Any]])
        let baseRevision = try XCTUnwrap(listed.first?["revision"] as? String)
        r = try tp(["rm", "--store", store, "org/base@\(baseRevision)"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try agrees(4, "after rm")
        r = try tp(["gc", "--store", store])
        XCTAssertEqual(r.status, 0, r.stderr)
        try agrees(4, "after gc")

        // A token that may not read every model sees no store totals and nothing of secret/*.
        let partial = try get(url + "/~/dashboard", "-H", "Authorization: Bearer \(orgToken)")
        XCTAssertEqual(partial.status, 200)
        XCTAssertFalse(partial.text.contains("total-logical"), partial.text)
        XCTAssertFalse(partial.text.contains("secret"), partial.text)
        XCTAssertTrue(partial.text.contains("3 puts;"), partial.text)
        XCTAssertTrue(partial.text.contains(">org/ft</a></td>"))
    }

    // MARK: access

    func testUnreadableRepositoriesAreNeitherServedNorListed() throws {
        let url = try server()
        // Anonymous: 401 with a basic-auth challenge (the browser asks for the token), like an absent repo.
        for path in ["/secret/hidden", "/secret/hidden/tree/main", "/secret/absent"] {
            let page = try get(url + path)
            XCTAssertEqual(page.status, 401, path)
            XCTAssertEqual(page.headers["www-authenticate"], "Basic realm=\"tpstore\", charset=\"UTF-8\"", path)
            XCTAssertFalse(page.text.contains("tiny-sharded"), path)
        }
        // A token that may not read it: 404, whether it exists or not; the same by cookie.
        for auth in [["-H", "Authorization: Bearer \(orgToken)"], ["-b", "tpstore_token=\(orgToken)"], ["-u", "me:\(orgToken)"]] {
            let hidden = try TestSupport.curl(self, ["-H", html] + auth + [url + "/secret/hidden"])
            let absent = try TestSupport.curl(self, ["-H", html] + auth + [url + "/secret/absent"])
            XCTAssertEqual(hidden.status, 404, "\(auth)")
            XCTAssertEqual(absent.status, 404, "\(auth)")
            let list = try TestSupport.curl(self, ["-H", html] + auth + [url + "/"])
            XCTAssertEqual(list.status, 200)
            let text = String(decoding: list.body, as: UTF8.self)
            XCTAssertFalse(text.contains("secret"), "\(auth): \(text)")
            XCTAssertTrue(text.contains("signed in as org-reader"), text)
            XCTAssertTrue(text.contains("href=\"/org/ft\""), text)
        }
        // The admin, by cookie and by basic auth, reads it and finds it listed.
        for auth in [["-b", "tpstore_token=\(adminToken)"], ["-u", "me:\(adminToken)"]] {
            XCTAssertEqual(try TestSupport.curl(self, ["-H", html] + auth + [url + "/secret/hidden"]).status, 200, "\(auth)")
            let list = String(decoding: try TestSupport.curl(self, ["-H", html] + auth + [url + "/"]).body, as: UTF8.self)
            XCTAssertTrue(list.contains("href=\"/secret/hidden\""), list)
        }
        // An unknown token is refused, not taken for anonymous.
        for path in ["/org/ft", "/", "/~/dashboard"] {
            XCTAssertEqual(try get(url + path, "-b", "tpstore_token=not-a-token-at-all").status, 401, path)
        }
        // The cookie never writes: a POST carrying only the admin's cookie is anonymous.
        let create = ["-X", "POST", "-H", "Content-Type: application/json", "--data", "{\"name\":\"x\",\"organization\":\"scratch\"}", url + "/api/repos/create"]
        XCTAssertEqual(try TestSupport.curl(self, ["-b", "tpstore_token=\(adminToken)"] + create).status, 401)
        XCTAssertEqual(try TestSupport.curl(self, ["-H", "Authorization: Bearer \(adminToken)"] + create).status, 200)

        // Sign-in sets the cookie only for a token some entry holds.
        let good = try TestSupport.curl(self, ["--data-urlencode", "token=\(adminToken)", url + "/~/login"])
        XCTAssertEqual(good.status, 303)
        XCTAssertEqual(good.headers["set-cookie"], "tpstore_token=\(adminToken); Path=/; HttpOnly; SameSite=Strict")
        let bad = try TestSupport.curl(self, ["--data-urlencode", "token=wrong-token-123", url + "/~/login"])
        XCTAssertEqual(bad.status, 401)
        XCTAssertNil(bad.headers["set-cookie"])
        let out = try TestSupport.curl(self, ["-X", "POST", url + "/~/logout"])
        XCTAssertEqual(out.status, 303)
        XCTAssertEqual(out.headers["set-cookie"], "tpstore_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
        let getOut = try TestSupport.curl(self, [url + "/~/logout"])
        XCTAssertEqual(getOut.status, 405, "signing out takes a POST")
        XCTAssertEqual(getOut.headers["allow"], "POST")
    }

    func testOtherClientsKeepTheirAnswers() throws {
        let url = try server()
        // Without text/html: the answers these URLs had before pages existed.
        let plain = try TestSupport.curl(self, [url + "/org/ft"])
        XCTAssertEqual(plain.status, 404)
        XCTAssertEqual(plain.headers["content-type"], "text/plain; charset=utf-8")
        XCTAssertEqual(try TestSupport.curl(self, [url + "/"]).status, 404)
        // With text/html, the API, files, git-lfs and metrics answer as they did.
        let info = try get(url + "/api/models/org/ft")
        XCTAssertEqual(info.status, 200)
        XCTAssertEqual(info.headers["content-type"]?.hasPrefix("application/json"), true)
        let file = try TestSupport.curl(self, ["-H", html, url + "/org/ft/resolve/main/config.json"])
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(file.body, try TestSupport.read(TestSupport.fixtures + "/models/tiny-ft/config.json"))
        let tree = try get(url + "/api/models/org/ft/tree/main")
        XCTAssertEqual(tree.headers["content-type"]?.hasPrefix("application/json"), true)
        XCTAssertEqual(try get(url + "/metrics").status, 200)
        let batch = try TestSupport.curl(self, ["-H", html, "-H", "Content-Type: application/vnd.git-lfs+json", "--data",
                                                "{\"operation\":\"download\",\"objects\":[]}", url + "/org/ft.git/info/lfs/objects/batch"])
        XCTAssertEqual(batch.status, 200)
        // A request target that is no path (`*`) is refused, and the server goes on.
        let star = try TestSupport.curl(self, ["-H", html, "--request-target", "*", url + "/"])
        XCTAssertTrue((400 ..< 500).contains(star.status), "\(star.status)")
        // Pages are counted under their own route kind.
        XCTAssertEqual(try get(url + "/org/ft").status, 200)
        let metrics = String(decoding: try TestSupport.curl(self, [url + "/metrics"]).body, as: UTF8.self)
        XCTAssertTrue(metrics.contains("tpstore_http_requests_total{route=\"web\",status=\"2xx\"} 1"), metrics)
        // The absolute form of a target names the same page.
        let absolute = try TestSupport.curl(self, ["-H", html, "--request-target", "http://elsewhere.example/org/ft", url + "/"])
        XCTAssertEqual(absolute.status, 200)
        XCTAssertTrue(String(decoding: absolute.body, as: UTF8.self).contains("id=\"model-name\">org/ft<"))
    }

    // MARK: injection, search, caching

    func testAttackerTextIsEscaped() throws {
        let url = try server()
        let pages = [try get(url + "/org/evil"), try get(url + "/org/evil/tree/main"),
                     try get(url + "/?q=%3Cscript%3Ealert(4)%3C/script%3E")]
        for page in pages {
            XCTAssertEqual(page.status, 200)
            XCTAssertFalse(page.text.lowercased().contains("<script"), page.text)
            XCTAssertFalse(page.text.contains("<img src=x"), page.text)
            XCTAssertTrue(page.headers["content-security-policy"]?.contains("default-src 'none'") == true)
        }
        XCTAssertTrue(pages[0].text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), pages[0].text)
        XCTAssertTrue(pages[0].text.contains("&lt;img src=x onerror=alert(3)&gt;"))
        XCTAssertTrue(pages[1].text.contains(">x&lt;script&gt;alert(2)&lt;/script&gt;</a>"), pages[1].text)
        // The link to the file is percent-encoded and serves it.
        XCTAssertTrue(pages[1].text.contains("/resolve/"), pages[1].text)
        XCTAssertTrue(pages[2].text.contains("value=\"&lt;script&gt;alert(4)&lt;/script&gt;\""), pages[2].text)
        let file = try TestSupport.curl(self, [url + "/org/evil/resolve/main/x%3Cscript%3Ealert(2)%3C/script%3E"])
        XCTAssertEqual(String(decoding: file.body, as: UTF8.self), "payload")
        // No template writes a value unescaped.
        for (name, text) in WebTemplates.all {
            XCTAssertFalse(text.contains("{{{") || text.contains("{{&"), "template \(name) has an unescaped value")
            XCTAssertTrue(WebTemplates.parsed(name), "template \(name) parses")
        }
    }

    func testADamagedModelCardLeavesTheRestOfThePage() throws {
        // A model that is only a card, big and varied enough that its frame fills most of its pack.
        let dir = root + "/carded"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var random = SplitMix64(seed: 7)
        let card = (0 ..< 4000).map { _ in String(random.next() % 1_000_000_007) }.joined(separator: " ")
        try TestSupport.write(Array(("# Card\n" + card).utf8), to: dir + "/README.md")
        let before = Set(TestSupport.files(under: store + "/packs"))
        XCTAssertEqual(try tp(["put", "--store", store, "org/carded", dir]).status, 0)
        let added = Set(TestSupport.files(under: store + "/packs")).subtracting(before)
        let pack = store + "/packs/" + (try XCTUnwrap(added.first))
        XCTAssertEqual(added.count, 1)
        var bytes = try TestSupport.read(pack)
        bytes[bytes.count / 2] ^= 0x20
        try TestSupport.write(bytes, to: pack)

        let url = try server()
        let page = try get(url + "/org/carded")
        XCTAssertEqual(page.status, 200, page.text)
        XCTAssertTrue(page.text.contains("README.md could not be read"), page.text)
        XCTAssertFalse(page.text.contains(String(card.prefix(40))), "no damaged text is shown as the card")
        XCTAssertNotNil(element("stored-ratio", in: page.text))
        // The file itself is refused, never served wrong.
        let file = try TestSupport.curl(self, [url + "/org/carded/resolve/main/README.md"])
        XCTAssertGreaterThanOrEqual(file.status, 500)
    }

    func testSearchOrderAndETags() throws {
        let url = try server()
        let all = try get(url + "/")
        XCTAssertEqual(all.status, 200)
        // Newest first: evil (put last), then hidden is not readable, then ft, then base.
        let order = ["href=\"/org/evil\"", "href=\"/org/ft\"", "href=\"/org/base\""].map { all.text.range(of: $0)?.lowerBound }
        XCTAssertTrue(order.allSatisfy { $0 != nil }, all.text)
        XCTAssertTrue(zip(order, order.dropFirst()).allSatisfy { ($0.0 ?? all.text.endIndex) < ($0.1 ?? all.text.startIndex) }, all.text)
        let search = try get(url + "/?q=FT")
        XCTAssertTrue(search.text.contains("href=\"/org/ft\""))
        XCTAssertFalse(search.text.contains("href=\"/org/base\""), search.text)
        XCTAssertTrue(try get(url + "/?q=nothing-matches").text.contains("No readable model"))

        // ETag: the same page is 304 for the browser that holds it, and changes with the catalog.
        let tag = try XCTUnwrap(all.headers["etag"])
        let again = try get(url + "/", "-H", "If-None-Match: \(tag)")
        XCTAssertEqual(again.status, 304)
        XCTAssertEqual(again.text, "")
        XCTAssertEqual(try get(url + "/", "-H", "If-None-Match: \"other\"").status, 200)
        let r = try tp(["put", "--store", store, "org/later", TestSupport.fixtures + "/models/tiny-base"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let changed = try get(url + "/", "-H", "If-None-Match: \(tag)")
        XCTAssertEqual(changed.status, 200)
        XCTAssertNotEqual(changed.headers["etag"], tag)
        XCTAssertTrue(changed.text.contains("href=\"/org/later\""))
        // Pages depend on who asks: never stored by a shared cache.
        XCTAssertEqual(changed.headers["cache-control"], "private, no-cache")
        XCTAssertEqual(changed.headers["vary"], "Accept, Authorization, Cookie")
    }

    // MARK: routing

    func testWhichURLsArePages() throws {
        typealias Page = WebPages.Page
        func page(_ path: String, html: Bool = true, read: Bool = true, query: String? = nil) throws -> Page? {
            try WebPages.route(path: path, html: html, read: read, query: query)
        }
        XCTAssertEqual(try page("/", query: "ft"), .models(query: "ft"))
        XCTAssertEqual(try page("/org"), .model(repo: "org"))
        XCTAssertEqual(try page("/org/ft"), .model(repo: "org/ft"))
        XCTAssertEqual(try page("/org/ft/"), .model(repo: "org/ft"))
        XCTAssertEqual(try page("/org/ft/tree/main"), .tree(repo: "org/ft", revision: "main", directory: ""))
        XCTAssertEqual(try page("/org/ft/tree/v1/sub/dir"), .tree(repo: "org/ft", revision: "v1", directory: "sub/dir"))
        XCTAssertEqual(try page("/ft/tree/main/sub"), .tree(repo: "ft", revision: "main", directory: "sub"))
        XCTAssertEqual(try page("/org/tree/tree/main"), .tree(repo: "org/tree", revision: "main", directory: ""), "as the API: the third segment decides")
        XCTAssertEqual(try page("/org/ft/tree/main/sub%2Fdir"), .tree(repo: "org/ft", revision: "main", directory: "sub/dir"))
        XCTAssertEqual(try page("/~/dashboard", html: false, read: false), .dashboard)
        XCTAssertEqual(try page("/~/login", html: false, read: false), .login)
        XCTAssertEqual(try page("/~/logout", html: false, read: false), .logout)
        // Not pages: other clients, writes, the server's own routes, the hub's file and git routes.
        for (path, html, read) in [("/org/ft", false, true), ("/org/ft", true, false), ("/", false, true), ("/metrics", true, true),
                                   ("/api/models/org/ft", true, true), ("/api", true, true), ("/org/ft/resolve/main/a.bin", true, true),
                                   ("/org/ft.git/info/lfs/objects/batch", true, true), ("/org/ft/blob/main/a", true, true),
                                   ("/bad name", true, true), ("/a/b/c", true, true), ("/~/other", true, true), ("/org//ft", true, true)] {
            XCTAssertNil(try page(path, html: html, read: read), "\(path) html \(html) read \(read)")
        }
        // Bad input is 400, not a page and not a crash.
        XCTAssertThrowsError(try page("/org/ft/tree/main/..")) { XCTAssertTrue(($0 as? HubFailure)?.description.hasPrefix("invalid path") == true, "\($0)") }
        XCTAssertThrowsError(try page("/", query: String(repeating: "x", count: 201)))
        XCTAssertThrowsError(try page("/org/%zz"))
        XCTAssertTrue(WebPages.wantsHTML("text/html,application/xhtml+xml,*/*;q=0.8"))
        XCTAssertTrue(WebPages.wantsHTML("TEXT/HTML; q=0.9"))
        XCTAssertFalse(WebPages.wantsHTML("*/*"))
        XCTAssertFalse(WebPages.wantsHTML(nil))
        XCTAssertFalse(WebPages.wantsHTML("application/json, text/htmlx"))
    }

    // MARK: a real browser

    /// Headless Chromium (Debian's `chromium`, installed by Tools/setup.sh) loads the pages as an
    /// anonymous visitor: the DOM it built holds the figures and no script element from the
    /// model card; screenshots at phone and desktop widths are written (TENPAK_WEB_SCREENSHOTS=DIR
    /// keeps them).
    func testChromiumRendersThePages() throws {
        let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        guard let chromium = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            XCTFail("chromium is not installed: run Tools/setup.sh (apt package chromium)")
            return
        }
        let url = try server()
        let shots = ProcessInfo.processInfo.environment["TENPAK_WEB_SCREENSHOTS"] ?? TestSupport.temporaryDirectory(self, "shots")
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        let profile = TestSupport.temporaryDirectory(self, "chromium-profile")
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--user-data-dir=\(profile)", "--hide-scrollbars"]
        func dom(_ path: String) throws -> String {
            let r = try TestSupport.run(chromium, common + ["--dump-dom", url + path], environment: ["HOME": profile])
            XCTAssertEqual(r.status, 0, r.stderr)
            return r.stdout
        }
        let show = try XCTUnwrap(try json(["show", "--store", store, "org/ft", "--json"]) as? [String: Any])
        let size = try XCTUnwrap(show["size"] as? Int), stored = try XCTUnwrap(show["storedBytes"] as? Int)
        let model = try dom("/org/ft")
        XCTAssertTrue(model.contains("id=\"stored-ratio\">\(String(format: "%.3f", Double(stored) / Double(size)))<"), model)
        XCTAssertTrue(model.contains("Stored against"), model)
        let list = try dom("/")
        XCTAssertTrue(list.contains("org/ft") && !list.contains("secret/hidden"), list)
        let evil = try dom("/org/evil")
        XCTAssertFalse(evil.lowercased().contains("<script"), "the model card became a script element: \(evil)")
        XCTAssertTrue(evil.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), evil)
        let dashboard = try dom("/~/dashboard")
        XCTAssertTrue(dashboard.contains("<svg") && dashboard.contains("polyline"), dashboard)

        for (name, path) in [("models", "/"), ("model", "/org/ft"), ("dashboard", "/~/dashboard")] {
            for (width, height) in [(390, 844), (1280, 900)] {
                let png = "\(shots)/\(name)-\(width).png"
                let r = try TestSupport.run(chromium, common + ["--screenshot=\(png)", "--window-size=\(width),\(height)", url + path],
                                            environment: ["HOME": profile])
                XCTAssertEqual(r.status, 0, r.stderr)
                let bytes = try TestSupport.read(png)
                XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "\(png) is a PNG")
                XCTAssertGreaterThan(bytes.count, 5000, "\(png) shows something")
            }
        }
    }
}
