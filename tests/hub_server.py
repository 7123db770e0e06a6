"""A minimal Hugging Face Hub stand-in for tests: stdlib HTTP on 127.0.0.1, repositories kept in memory.

TEST FIXTURE ONLY. No package on the registries provides a local Hub that accepts uploads, so this module answers
the handful of endpoints that the real `huggingface_hub` client (2.x) calls for `push_to_hub`/`upload_folder` and
for `from_pretrained`/`hf_hub_download` (see ../shared/notes/transformers-v5.md, "Hub offline"). Point a client at
it with `HF_ENDPOINT=server.url`, set before huggingface_hub is imported (so: in a subprocess).

Served (model repositories only; `{rev}` is a branch name or a commit sha, URL-quoted or not):

    POST /api/repos/create                      create "namespace/name"; 409 if it exists
    POST /api/validate-yaml                     model-card metadata check: the YAML header must parse to a mapping
    POST /api/models/{repo}/preupload/{rev}     every file "regular" (base64 in the commit body: no LFS, no Xet)
    POST /api/models/{repo}/commit/{rev}        NDJSON: a header line, then "file"/"deletedFile"/"deletedFolder" lines
    GET  /api/models/{repo}[/revision/{rev}]    model info: sha, siblings
    GET  /api/models/{repo}/tree/{rev}[/{path}] file listing (recursive=1 honoured)
    HEAD|GET /{repo}/resolve/{rev}/{path}       file bytes, with X-Repo-Commit, ETag and Content-Length

Errors carry the `X-Error-Code` header the client maps to exceptions (RepoNotFound, RevisionNotFound,
EntryNotFound). With `token=...`, writes need `Authorization: Bearer <token>` (401 otherwise); reads are public.
Each commit is kept as a full snapshot, so files can be read at any earlier commit sha, and `server.commits`
records what every commit changed, for tests to assert on.

Not a Hub: no LFS/Xet, no pull requests, no branches besides "main", no auth scopes, no gitignore handling.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


def git_blob_sha(content: bytes) -> str:
    """The git object id of a file, which the Hub sends as ETag for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    message: str
    added: list[str]
    deleted: list[str]
    files: dict[str, bytes]  # the whole repository at this commit


@dataclass
class Repo:
    repo_id: str
    history: list[Commit] = field(default_factory=list)

    @property
    def head(self) -> Commit:
        return self.history[-1]

    def at(self, revision: str) -> Commit | None:
        if revision == "main":
            return self.head
        return next((commit for commit in self.history if commit.sha == revision), None)


class HubState:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []  # "METHOD path" of every request, for debugging a failing test

    def commit(self, repo: Repo, message: str, added: dict[str, bytes], deleted: list[str]) -> Commit:
        files = dict(repo.head.files) if repo.history else {}
        for path in deleted:
            for name in [name for name in files if name == path or name.startswith(path.rstrip("/") + "/")]:
                del files[name]
        files.update(added)
        parent = repo.head.sha if repo.history else ""
        tree = sorted((path, git_blob_sha(content)) for path, content in files.items())
        sha = hashlib.sha1(json.dumps([parent, message, tree]).encode()).hexdigest()
        commit = Commit(sha, message, sorted(added), sorted(deleted), files)
        repo.history.append(commit)
        return commit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer sets Content-Length
    server: "HubServer"

    def log_message(self, format, *args):  # quiet: the test output stays readable
        pass

    # ------------------------------------------------------------------ helpers
    @property
    def state(self) -> HubState:
        return self.server.state

    def _send(self, status: int, body: bytes = b"", content_type="application/json", headers=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers=None, head=False):
        self._send(status, json.dumps(payload).encode(), headers=headers, head=head)

    def _error(self, status: int, code: str | None, message: str, head=False):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers=headers, head=head)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.state.token is None or self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self._error(401, None, "Invalid credentials in Authorization header")
        return False

    def _repo_and_rest(self, path: str, marker: str) -> tuple[str, str] | None:
        """'/api/models/ns/name/<marker>/rest' -> ('ns/name', 'rest')."""
        before, found, rest = path.partition(f"/{marker}/")
        return (before, rest) if found else None

    def _lookup(self, repo_id: str, revision: str, head=False) -> tuple[Repo, Commit] | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.", head=head)
            return None
        commit = repo.at(unquote(revision))
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
            return None
        return repo, commit

    def _model_info(self, repo: Repo, commit: Commit) -> dict:
        return {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "private": False,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }

    # ------------------------------------------------------------------ routing
    def do_HEAD(self):
        self._route("HEAD")

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def _route(self, method: str):
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.state.requests.append(f"{method} {self.path}")
        with self.state.lock:
            if method == "POST":
                body = self._body()
                if path == "/api/repos/create":
                    return self._create_repo(body)
                if path == "/api/validate-yaml":
                    return self._validate_yaml(body)
                if path.startswith("/api/models/"):
                    if (found := self._repo_and_rest(path[len("/api/models/"):], "preupload")) is not None:
                        return self._preupload(*found, body)
                    if (found := self._repo_and_rest(path[len("/api/models/"):], "commit")) is not None:
                        return self._commit(*found, body)
            elif path.startswith("/api/models/"):
                rest = path[len("/api/models/"):]
                if (found := self._repo_and_rest(rest, "tree")) is not None:
                    return self._tree(*found, recursive=query.get("recursive", ["false"])[0] in ("1", "true", "True"))
                if (found := self._repo_and_rest(rest, "revision")) is not None:
                    return self._info(*found)
                return self._info(rest.rstrip("/"), "main")
            elif (found := self._repo_and_rest(path.lstrip("/"), "resolve")) is not None:
                repo_id, rest = found
                revision, _, file_path = rest.partition("/")
                return self._resolve(repo_id, revision, file_path, head=method == "HEAD")
            self._error(404, None, f"{method} {path} is not served by this test Hub", head=method == "HEAD")

    # ------------------------------------------------------------------ endpoints
    def _create_repo(self, body: bytes):
        if not self._authorized():
            return
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            return self._error(400, None, "this test Hub serves model repositories only")
        namespace = payload.get("organization") or "user"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.server.url}/{repo_id}"
        if repo_id in self.state.repos:
            return self._json(409, {"error": "You already created this model repo", "url": url})
        repo = Repo(repo_id)
        self.state.repos[repo_id] = repo
        gitattributes = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"  # as the Hub starts a repository
        self.state.commit(repo, "initial commit", {".gitattributes": gitattributes}, [])
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, body: bytes):
        content = json.loads(body or b"{}").get("content", "")
        if content.startswith("---"):
            header = content.split("---", 2)[1]
            try:
                metadata = yaml.safe_load(header)
            except yaml.YAMLError as error:
                return self._send(400, f"Invalid YAML in the model card header: {error}".encode(), "text/plain")
            if metadata is not None and not isinstance(metadata, dict):
                return self._send(400, b"The model card header must be a YAML mapping", "text/plain")
        self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, revision: str, body: bytes):
        if not self._authorized() or self._lookup(repo_id, revision) is None:
            return
        files = json.loads(body)["files"]
        self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})

    def _commit(self, repo_id: str, revision: str, body: bytes):
        if not self._authorized() or (found := self._lookup(repo_id, revision)) is None:
            return
        repo, _ = found
        if unquote(revision) != "main":
            return self._error(400, None, "this test Hub commits to main only")
        message, added, deleted = "", {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self._error(400, None, "file content must be base64")
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:  # lfsFile: never asked for, since preupload answers "regular"
                return self._error(400, None, f"unsupported commit operation {key!r}")
        commit = self.state.commit(repo, message, added, deleted)
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self.server.url}/{repo_id}/commit/{commit.sha}",
                "commitMessage": message,
                "pullRequestUrl": None,
            },
        )

    def _info(self, repo_id: str, revision: str):
        if (found := self._lookup(repo_id, revision)) is not None:
            self._json(200, self._model_info(*found))

    def _tree(self, repo_id: str, rest: str, recursive: bool):
        revision, _, folder = rest.partition("/")
        if (found := self._lookup(repo_id, revision)) is None:
            return
        _, commit = found
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries, folders = [], set()
        for path, content in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix):]
            if "/" in relative and not recursive:
                folders.add(prefix + relative.split("/")[0])
                continue
            entries.append({"type": "file", "path": path, "size": len(content), "oid": git_blob_sha(content)})
        if prefix and not entries and not folders:
            return self._error(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        entries += [{"type": "directory", "path": name, "oid": "0" * 40, "size": 0} for name in sorted(folders)]
        self._json(200, entries)

    def _resolve(self, repo_id: str, revision: str, file_path: str, head: bool):
        if (found := self._lookup(repo_id, revision, head=head)) is None:
            return
        _, commit = found
        content = commit.files.get(file_path)
        if content is None:
            headers = {"X-Repo-Commit": commit.sha, "X-Error-Code": "EntryNotFound",
                       "X-Error-Message": "Entry not found"}
            return self._json(404, {"error": "Entry not found"}, headers=headers, head=head)
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha(content)}"', "Accept-Ranges": "bytes"}
        self._send(200, content, "application/octet-stream", headers=headers, head=head)


class HubServer(ThreadingHTTPServer):
    """`with HubServer(token="secret") as hub:` serves on a free port of 127.0.0.1 from a background thread."""

    daemon_threads = True

    def __init__(self, token: str | None = None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = HubState(token)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, name="test-hub", daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        self._thread.join()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The repository's files at a revision (a sha or "main")."""
        commit = self.state.repos[repo_id].at(revision)
        if commit is None:
            raise KeyError(f"{repo_id} has no revision {revision}")
        return dict(commit.files)

    def commits(self, repo_id: str) -> list[Commit]:
        return list(self.state.repos[repo_id].history)


if __name__ == "__main__":  # run by hand: HF_ENDPOINT=<printed url> python -c "..."
    import time

    with HubServer() as hub:
        print(hub.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
