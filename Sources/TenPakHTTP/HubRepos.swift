// Repositories as the hub sees them, over TenPak models and revisions.
//
// Nouns:
// - repository: a TenPak model (`org/name`). It exists when it has at least one revision.
// - commit: a TenPak revision, addressed by a 40-hex commit id. A revision made by the hub API is
//   named by its commit id; any other revision (put with the CLI, named `v1`, say) gets a derived
//   id: the first 40 hex digits of SHA-256("tenpak-revision", model, name, manifest chunk id), so
//   the same revision always has the same id and no two revisions share one.
// - branch: only `main`, which points at the revision named `main` if there is one, else at the
//   newest revision. A revision name (e.g. `v1`) also resolves, as a tag would.
// - LFS object: a git-lfs object uploaded through `/{repo}.git/info/lfs`, kept as model
//   `lfs/<oid>`, revision `r` + 40 hex of SHA-256(repo) (one revision per repository that
//   uploaded it, so an object is only readable through a repository that holds it), one file
//   named `object`. Its chunks are shared with every commit that holds the same bytes.
import Crypto
import Foundation
import TenPakChunkStore
import TenPakFormat
import TenPakLFS
import TenPakModelStore

/// A hub lookup that found nothing, typed so the answer's status and `X-Error-Code` follow.
enum HubLookupError: Error, CustomStringConvertible {
    case repoNotFound(String)
    case revisionNotFound(repo: String, revision: String)
    case entryNotFound(repo: String, commit: String, path: String)

    var description: String {
        switch self {
        case let .repoNotFound(repo): return "Repository Not Found: \(repo)"
        case let .revisionNotFound(repo, revision): return "Invalid rev id: \(Names.printable(revision)) is not a revision of \(repo)"
        case let .entryNotFound(repo, commit, path): return "Entry not found: \(Names.printable(path)) in \(repo)@\(commit)"
        }
    }
}

/// Repository lookups over a model store.
struct HubRepos: Sendable {
    let store: ModelStore

    static func isCommitID(_ text: String) -> Bool {
        text.utf8.count == 40 && text.utf8.allSatisfy { (0x30 ... 0x39).contains($0) || (0x61 ... 0x66).contains($0) }
    }

    static func isObjectID(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30 ... 0x39).contains($0) || (0x61 ... 0x66).contains($0) }
    }

    static func commitID(_ record: RevisionRecord) -> String {
        if isCommitID(record.revision) { return record.revision }
        let text = "tenpak-revision\u{0}\(record.model)\u{0}\(record.revision)\u{0}\(record.manifest.description)"
        return String(SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined().prefix(40))
    }

    /// Every revision of a repository, oldest first; throws `repoNotFound` when it has none.
    func revisions(_ repo: String) throws -> [RevisionRecord] {
        let all = try store.catalog.revisions(model: repo)
        guard !all.isEmpty else { throw HubLookupError.repoNotFound(repo) }
        return all
    }

    /// The revision `main` (or `nil`) points at.
    static func head(of revisions: [RevisionRecord]) -> RevisionRecord? {
        revisions.last { $0.revision == "main" } ?? revisions.last
    }

    /// `main`, a revision name, or a 40-hex commit id.
    func resolve(_ repo: String, _ revision: String) throws -> RevisionRecord {
        let all = try revisions(repo)
        if revision == "main", let head = HubRepos.head(of: all) { return head }
        if let named = all.last(where: { $0.revision == revision }) { return named }
        if HubRepos.isCommitID(revision), let found = all.last(where: { HubRepos.commitID($0) == revision }) { return found }
        throw HubLookupError.revisionNotFound(repo: repo, revision: revision)
    }

    // MARK: LFS objects

    static func objectModel(_ oid: String) -> String { "lfs/" + oid }

    /// Whether a model name is that of an LFS object (`lfs/<oid>`).
    static func isObjectModel(_ model: String) -> Bool { model.hasPrefix("lfs/") && isObjectID(String(model.dropFirst(4))) }

    /// One formula for the server and the remote agent's cache (which pushes under this name).
    static func objectRevision(repo: String) -> String { LFSObjectStore.repositoryRevision(repo) }

    /// Where the bytes of LFS object `oid` held by `repo` can be read: the repository's own copy
    /// of the object, else a file of one of its commits with that SHA-256 (newest first).
    func locateObject(repo: String, oid: String) throws -> (record: RevisionRecord, file: FileRecord)? {
        guard HubRepos.isObjectID(oid) else { return nil }
        // Only "no such revision" falls through: a catalog that fails must not read as "absent".
        do {
            let record = try store.catalog.resolve(model: HubRepos.objectModel(oid), revision: HubRepos.objectRevision(repo: repo))
            if let file = try store.catalog.files(revision: record).first { return (record, file) }
        } catch StoreError.notFound {}
        guard let digest = Digest256(hex: oid) else { return nil }
        for record in try store.catalog.revisions(model: repo).reversed() {
            if let file = try store.catalog.files(revision: record).first(where: { $0.sha256 == digest }) {
                return (record, file)
            }
        }
        return nil
    }
}

/// git's view of a file stored by LFS: the pointer file git keeps in the tree, and its blob id.
enum GitPointer {
    static func text(sha256: String, size: Int) -> String {
        "version https://git-lfs.github.com/spec/v1\noid sha256:\(sha256)\nsize \(size)\n"
    }

    /// The git blob id (SHA-1 of "blob <n>\0" + content) of the pointer file.
    static func blobID(sha256: String, size: Int) -> (id: String, pointerSize: Int) {
        let pointer = Array(text(sha256: sha256, size: size).utf8)
        var sha1 = Insecure.SHA1()
        sha1.update(data: Array("blob \(pointer.count)\u{0}".utf8))
        sha1.update(data: pointer)
        return (sha1.finalize().map { String(format: "%02x", $0) }.joined(), pointer.count)
    }
}
