#!/usr/bin/env python3
"""Drives a running `tpstore serve --auth FILE` with the real huggingface_hub client.

Usage: hub_client_check.py ENDPOINT WRITE_TOKEN READ_TOKEN BASE_DIR FT_DIR WORK_DIR [PHASE]

PHASE (default: all):
  upload-base   create_repo org/base + upload_folder BASE_DIR (write token)
  upload-ft     create_repo org/ft + upload_folder FT_DIR (write token)
  read          snapshot_download, hf_hub_download by branch and by commit, model_info(files_metadata),
                list_repo_files, get_safetensors_metadata (read token), all compared bit for bit
  commit        create_commit with an addition and a deletion; the older commit stays readable
  refuse        anonymous, read-only and unknown tokens are refused for what they lack
  all           every phase above, in order

Prints one JSON object per phase on stdout ({"phase": ..., ...}); exits non-zero with the reason on
the first mismatch. The caller sets a private HF_HOME, and HF_HUB_DISABLE_XET=1 to upload by LFS
instead of Xet (upload_folder uses Xet when hf_xet is installed; the server takes both, SPEC 14.9).
Needs huggingface_hub (Tools/setup.sh installs it).
"""
import hashlib
import json
import os
import struct
import sys

from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError


def files_under(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            full = os.path.join(d, n)
            rel = os.path.relpath(full, root)
            if rel.startswith(".cache") or rel.startswith(".huggingface"):
                continue
            out[rel] = full
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_bytes(a, b):
    with open(a, "rb") as x, open(b, "rb") as y:
        return x.read() == y.read()


def fail(message):
    print(json.dumps({"error": message}), flush=True)
    sys.exit(1)


def expect(condition, message):
    if not condition:
        fail(message)


def expect_status(fn, statuses, what):
    try:
        fn()
    except HfHubHTTPError as e:
        code = e.response.status_code if e.response is not None else None
        expect(code in statuses, f"{what}: expected HTTP {statuses}, got {code}: {e}")
        return code
    fail(f"{what}: expected HTTP {statuses}, but it succeeded")


def main():
    endpoint, write_token, read_token, base_dir, ft_dir, work = sys.argv[1:7]
    phase = sys.argv[7] if len(sys.argv) > 7 else "all"
    writer = HfApi(endpoint=endpoint, token=write_token)
    reader = HfApi(endpoint=endpoint, token=read_token)
    state_path = os.path.join(work, "state.json")
    state = json.load(open(state_path)) if os.path.exists(state_path) else {}

    def upload(repo, folder):
        url = writer.create_repo(repo, exist_ok=True)
        expect(str(url).endswith(repo), f"create_repo answered {url}")
        # A second create without exist_ok is a conflict, as on the hub.
        expect_status(lambda: writer.create_repo(repo), [409], "create_repo of an existing repository")
        info = writer.upload_folder(repo_id=repo, folder_path=folder, commit_message=f"upload {repo}")
        expect(len(info.oid) == 40, f"commit id {info.oid}")
        state[repo] = info.oid
        print(json.dumps({"phase": "upload", "repo": repo, "commit": info.oid}), flush=True)

    if phase in ("upload-base", "all"):
        upload("org/base", base_dir)
    if phase in ("upload-ft", "all"):
        upload("org/ft", ft_dir)
    json.dump(state, open(state_path, "w"))

    if phase in ("read", "all"):
        for repo, folder in (("org/base", base_dir), ("org/ft", ft_dir)):
            local = files_under(folder)

            def listed(names):
                # The repository's own .gitattributes (from create_repo) unless the folder brought one.
                return set(names) if ".gitattributes" in local else set(names) - {".gitattributes"}

            commit = state[repo]
            snap = snapshot_download(repo_id=repo, endpoint=endpoint, token=read_token, cache_dir=os.path.join(work, "cache"))
            got = files_under(snap)
            expect(listed(got) == set(local), f"{repo}: snapshot files {sorted(got)} != {sorted(local)}")
            for rel, path in local.items():
                expect(same_bytes(path, got[rel]), f"{repo}: snapshot {rel} differs")
            expect(os.path.basename(snap) == commit, f"{repo}: snapshot folder {snap} is not commit {commit}")
            # By commit and by branch, into a fresh cache each time.
            for rev in (commit, "main"):
                p = hf_hub_download(repo_id=repo, filename="model.safetensors", revision=rev, endpoint=endpoint,
                                    token=read_token, cache_dir=os.path.join(work, "cache-" + rev[:8]))
                expect(same_bytes(p, local["model.safetensors"]), f"{repo}@{rev}: model.safetensors differs")
            info = reader.model_info(repo, files_metadata=True)
            expect(info.sha == commit, f"{repo}: model_info sha {info.sha} != {commit}")
            siblings = {s.rfilename: s for s in info.siblings}
            expect(listed(siblings) == set(local), f"{repo}: siblings {sorted(siblings)}")
            for rel, path in local.items():
                s = siblings[rel]
                expect(s.size == os.path.getsize(path), f"{repo}: {rel} size {s.size}")
                expect(s.lfs is not None and s.lfs.sha256 == sha256(path), f"{repo}: {rel} lfs sha256 {s.lfs}")
            files = reader.list_repo_files(repo)
            expect(listed(files) == set(local), f"{repo}: list_repo_files {files}")
            # A sub-directory's listing, one level and recursive.
            subdirs = sorted({rel.split("/")[0] for rel in local if "/" in rel})
            for sub in subdirs:
                deep = {e.path for e in reader.list_repo_tree(repo, path_in_repo=sub, recursive=True) if hasattr(e, "lfs")}
                expect(deep == {rel for rel in local if rel.startswith(sub + "/")}, f"{repo}: tree of {sub}: {sorted(deep)}")
                top = {e.path for e in reader.list_repo_tree(repo, path_in_repo=sub)}
                expect(all(p.count("/") == 1 for p in top) and top, f"{repo}: one level of {sub}: {sorted(top)}")
            meta = reader.get_safetensors_metadata(repo)
            with open(local["model.safetensors"], "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            tensors = meta.files_metadata["model.safetensors"].tensors
            expect(set(tensors) == {k for k in header if k != "__metadata__"}, f"{repo}: safetensors metadata names differ")
            for name, t in tensors.items():
                expect(t.dtype == header[name]["dtype"] and list(t.shape) == header[name]["shape"], f"{repo}: tensor {name}")
            print(json.dumps({"phase": "read", "repo": repo, "files": len(local), "parameters": meta.parameter_count}), flush=True)

    if phase in ("commit", "all"):
        before = state["org/ft"]
        victim = "config.json"
        info = writer.create_commit(
            repo_id="org/ft",
            operations=[CommitOperationAdd(path_in_repo="notes/added.txt", path_or_fileobj=b"added by create_commit\n"),
                        CommitOperationDelete(path_in_repo=victim)],
            commit_message="add one, delete one", parent_commit=before)
        files = reader.list_repo_files("org/ft")
        expect("notes/added.txt" in files and victim not in files, f"after the commit: {files}")
        # The older commit is immutable: the deleted file is still there.
        old = reader.list_repo_files("org/ft", revision=before)
        expect(victim in old, f"commit {before} lost {victim}: {old}")
        p = hf_hub_download(repo_id="org/ft", filename=victim, revision=before, endpoint=endpoint, token=read_token,
                            cache_dir=os.path.join(work, "cache-old"))
        expect(same_bytes(p, os.path.join(ft_dir, victim)), "old commit's file differs")
        # A parent that is no longer the head is refused (412), nothing committed.
        expect_status(lambda: writer.create_commit(repo_id="org/ft", operations=[CommitOperationDelete(path_in_repo="README.md")],
                                                   commit_message="stale", parent_commit=before), [412], "stale parent")
        expect(reader.model_info("org/ft").sha == info.oid, "a refused commit moved main")
        # upload_file: one more commit on top, read back through hf_hub_download.
        up = writer.upload_file(path_or_fileobj=b"uploaded with upload_file\n", path_in_repo="notes/uploaded.txt", repo_id="org/ft")
        expect(reader.model_info("org/ft").sha == up.oid, "upload_file did not move main")
        p = hf_hub_download(repo_id="org/ft", filename="notes/uploaded.txt", endpoint=endpoint, token=read_token,
                            cache_dir=os.path.join(work, "cache-up"))
        expect(open(p, "rb").read() == b"uploaded with upload_file\n", "upload_file's bytes differ")
        state["org/ft-2"] = up.oid
        json.dump(state, open(state_path, "w"))
        print(json.dumps({"phase": "commit", "commit": info.oid, "upload_file": up.oid}), flush=True)

    if phase in ("refuse", "all"):
        anonymous = HfApi(endpoint=endpoint, token=False)
        unknown = HfApi(endpoint=endpoint, token="hf_not_a_token_of_this_server")
        try:
            anonymous.model_info("org/base")
            fail("anonymous model_info of org/base succeeded")
        except RepositoryNotFoundError:
            pass
        # A repository that does not exist answers exactly like one the caller may not read.
        for api, who in ((anonymous, "anonymous"), (reader, "read token")):
            codes = []
            for repo in ("org/base", "org/absent", "secret/absent"):
                try:
                    api.model_info(repo)
                    codes.append(200)
                except HfHubHTTPError as e:
                    codes.append(e.response.status_code)
            print(json.dumps({"phase": "refuse", "who": who, "codes": codes}), flush=True)
        expect_status(lambda: unknown.model_info("org/base"), [401], "unknown token")
        expect_status(lambda: reader.create_repo("org/other"), [403], "read token creating a repository")
        expect_status(lambda: reader.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/base"), [403], "read token uploading")
        expect_status(lambda: anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/base"), [401], "anonymous upload")
        expect_status(lambda: writer.create_repo("secret/x"), [403, 404], "write token outside its patterns")
        expect(reader.model_info("org/base").sha == state["org/base"], "refused writes changed org/base")
        print(json.dumps({"phase": "refuse", "ok": True}), flush=True)


if __name__ == "__main__":
    main()
