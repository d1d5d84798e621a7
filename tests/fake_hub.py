"""An in-memory HTTP fake of the Hugging Face Hub, for tests of pushing models.

It answers the endpoints that ``huggingface_hub`` (2.x) calls for ``create_repo`` +
``create_commit`` / ``upload_folder``, and for reading files back (``repo_info``,
``hf_hub_download``, ``snapshot_download``):

- ``POST /api/repos/create``                      create a repo (409 when it exists)
- ``GET  /api/models/{ns}/{name}[/revision/{rev}]`` repo info (sha, private, siblings)
- ``GET  /api/models/{ns}/{name}/tree/{rev}``   file listing (``snapshot_download``)
- ``POST /api/validate-yaml``                      README.md front-matter check
- ``POST /api/models/{ns}/{name}/preupload/{rev}`` upload modes: always ``"regular"``, so
  file contents travel base64-encoded inside the commit and no LFS/Xet upload happens
- ``POST /api/models/{ns}/{name}/commit/{rev}``    the NDJSON commit (header + file lines)
- ``HEAD/GET /{ns}/{name}/resolve/{rev}/{path}``   raw file contents

Every request needs ``Authorization: Bearer <token>`` with a known token (401 otherwise)
and is recorded as ``(method, path)`` in :attr:`FakeHub.requests`. Faults can be injected
with :meth:`FakeHub.fail`. Usage::

    with fake_hub(tokens={"hf_test_token": "alice"}) as hub:
        push(..., endpoint=hub.url, token="hf_test_token")
        hub.repos["alice/model"]["files"]["README.md"]   # bytes
        hub.endpoints()                                  # ["POST /api/repos/create", ...]
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["FakeHub", "fake_hub", "git_blob_sha1"]


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's oid)."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    message: str
    times: int


@dataclass
class FakeHub:
    tokens: dict[str, str]                      # token -> user name
    orgs: dict[str, set[str]] = field(default_factory=dict)  # org -> members who may write
    url: str = ""
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    validated_yaml: list[str] = field(default_factory=list)
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test helpers
    def endpoints(self) -> list[str]:
        """Every request so far, as ``"METHOD /path"``, in order."""
        return [f"{m} {p}" for m, p in self.requests]

    def reset_requests(self) -> None:
        self.requests.clear()

    def fail(self, method: str, path_regex: str, status: int, message: str = "Injected failure",
             times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` and ``{"error": message}``."""
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, message, times))

    # -- the application
    def app(self) -> Any:
        app = FastAPI()
        hub = self

        def error(status: int, message: str, code: str | None = None) -> JSONResponse:
            headers = {"X-Error-Message": message, "X-Request-Id": f"fake-{time.monotonic_ns()}"}
            if code:
                headers["X-Error-Code"] = code
            return JSONResponse({"error": message}, status_code=status, headers=headers)

        @app.middleware("http")
        async def record_and_authenticate(request: Request, call_next: Any) -> Any:
            method, path = request.method, request.url.path
            with hub._lock:
                hub.requests.append((method, path))
                for fault in hub._faults:
                    if fault.times > 0 and fault.method == method and fault.path.search(path):
                        fault.times -= 1
                        return error(fault.status, fault.message)
            auth = request.headers.get("authorization", "")
            if not auth.lower().startswith("bearer "):
                return error(401, "Invalid username or password.")
            user = hub.tokens.get(auth[7:].strip())
            if user is None:
                return error(401, "Invalid credentials in Authorization header")
            request.state.user = user
            return await call_next(request)

        def may_write(user: str, namespace: str) -> bool:
            return namespace == user or user in hub.orgs.get(namespace, set())

        def repo_or_error(namespace: str, name: str, user: str) -> tuple[dict[str, Any] | None, Any]:
            repo_id = f"{namespace}/{name}"
            repo = hub.repos.get(repo_id)
            if repo is None or (repo["private"] and not may_write(user, namespace)):
                return None, error(404, "Repository not found", "RepoNotFound")
            return repo, None

        def revision_ok(repo: dict[str, Any], revision: str) -> bool:
            return revision in ("main", repo["sha"])

        @app.post("/api/repos/create")
        async def create_repo(request: Request) -> Any:
            body = await request.json()
            user = request.state.user
            name, namespace = body.get("name"), body.get("organization") or user
            if body.get("type", "model") != "model":
                return error(400, "This fake only hosts model repos")
            if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                return error(400, f"Invalid repo name: {name!r}")
            repo_id = f"{namespace}/{name}"
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return JSONResponse({"error": "You already created this model repo", "url": url}, status_code=409)
            if not may_write(user, namespace):
                return error(403, f"You don't have the rights to create a model under the namespace \"{namespace}\"")
            visibility = body.get("visibility")
            private = visibility == "private" if visibility is not None else bool(body.get("private", False))
            with hub._lock:
                hub.repos[repo_id] = {"private": private, "files": {}, "commits": [], "sha": "0" * 40,
                                      "owner": user}
            return {"url": url, "name": repo_id, "id": f"fake-{len(hub.repos)}"}

        def info(repo_id: str, repo: dict[str, Any]) -> dict[str, Any]:
            return {"id": repo_id, "modelId": repo_id, "private": repo["private"], "sha": repo["sha"],
                    "siblings": [{"rfilename": p} for p in sorted(repo["files"])], "tags": [], "downloads": 0,
                    "likes": 0}

        @app.get("/api/models/{namespace}/{name}")
        async def repo_info(namespace: str, name: str, request: Request) -> Any:
            repo, err = repo_or_error(namespace, name, request.state.user)
            return err if repo is None else info(f"{namespace}/{name}", repo)

        @app.get("/api/models/{namespace}/{name}/revision/{revision:path}")
        async def repo_info_at(namespace: str, name: str, revision: str, request: Request) -> Any:
            repo, err = repo_or_error(namespace, name, request.state.user)
            if repo is None:
                return err
            if not revision_ok(repo, revision):
                return error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return info(f"{namespace}/{name}", repo)

        @app.get("/api/models/{namespace}/{name}/tree/{revision}")
        async def tree(namespace: str, name: str, revision: str, request: Request) -> Any:
            repo, err = repo_or_error(namespace, name, request.state.user)
            if repo is None:
                return err
            if not revision_ok(repo, revision):
                return error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            recursive = request.query_params.get("recursive") in ("true", "1", "True")
            entries, folders = [], set()
            for path in sorted(repo["files"]):
                parts = path.split("/")
                if len(parts) > 1:
                    folders.add(parts[0])
                    if not recursive:
                        continue
                data = repo["files"][path]
                entries.append({"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)})
            entries += [{"type": "directory", "path": f, "oid": "0" * 40} for f in sorted(folders)]
            return entries

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request) -> Any:
            import yaml

            body = await request.json()
            content = body.get("content", "")
            hub.validated_yaml.append(content)
            errors = []
            if content.startswith("---"):
                end = content.find("\n---", 3)
                if end < 0:
                    errors.append({"message": "Unterminated YAML front matter"})
                else:
                    try:
                        meta = yaml.safe_load(content[3:end])
                        if meta is not None and not isinstance(meta, dict):
                            errors.append({"message": "YAML metadata must be a mapping"})
                    except yaml.YAMLError as exc:
                        errors.append({"message": f"Invalid YAML: {exc}"})
            if errors:
                return JSONResponse({"errors": errors, "warnings": []}, status_code=400)
            return {"errors": [], "warnings": []}

        @app.post("/api/models/{namespace}/{name}/preupload/{revision}")
        async def preupload(namespace: str, name: str, revision: str, request: Request) -> Any:
            user = request.state.user
            repo, err = repo_or_error(namespace, name, user)
            if repo is None:
                return err
            if not may_write(user, namespace):
                return error(403, "You don't have write access to this repo")
            if not revision_ok(repo, revision):
                return error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            body = await request.json()
            files = []
            for f in body.get("files", []):
                existing = repo["files"].get(f["path"])
                files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                              "oid": git_blob_sha1(existing) if existing is not None else None})
            return {"files": files, "commitOid": repo["sha"]}

        @app.post("/api/models/{namespace}/{name}/commit/{revision}")
        async def commit(namespace: str, name: str, revision: str, request: Request) -> Any:
            user = request.state.user
            repo, err = repo_or_error(namespace, name, user)
            if repo is None:
                return err
            if not may_write(user, namespace):
                return error(403, "You don't have write access to this repo")
            if not revision_ok(repo, revision):
                return error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            if "ndjson" not in request.headers.get("content-type", ""):
                return error(400, "Expected an application/x-ndjson body")
            header: dict[str, Any] | None = None
            added: dict[str, bytes] = {}
            deleted: list[str] = []
            for line in (await request.body()).splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item.get("key"), item.get("value") or {}
                if key == "header":
                    header = value
                elif key == "file":
                    if value.get("encoding") != "base64":
                        return error(400, "file entries must be base64-encoded")
                    added[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    return error(422, "This fake Hub only accepts regular (inline) files, not LFS pointers")
                elif key in ("deletedFile", "deletedFolder"):
                    deleted.append(value["path"])
                else:
                    return error(400, f"Unknown commit entry {key!r}")
            if header is None or not header.get("summary"):
                return error(400, "The commit needs a header with a summary")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo["sha"]:
                return error(409, "A commit has happened since. Please refresh and try again.")
            with hub._lock:
                for path in deleted:
                    for existing in [p for p in repo["files"] if p == path or p.startswith(path.rstrip("/") + "/")]:
                        del repo["files"][existing]
                repo["files"].update(added)
                oid = hashlib.sha1(f"{repo['sha']}{header['summary']}{sorted(added)}{time.time_ns()}".encode()
                                   ).hexdigest()
                repo["sha"] = oid
                repo["commits"].append({"oid": oid, "summary": header["summary"],
                                        "description": header.get("description", ""), "author": user,
                                        "files": sorted(added), "deleted": deleted})
            return {"success": True, "commitOid": oid, "commitUrl": f"{hub.url}/{namespace}/{name}/commit/{oid}",
                    "commitMessage": header["summary"], "pullRequestUrl": None, "hookOutput": ""}

        @app.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        async def resolve(namespace: str, name: str, revision: str, path: str, request: Request) -> Any:
            repo, err = repo_or_error(namespace, name, request.state.user)
            if repo is None:
                return err
            if not revision_ok(repo, revision):
                return error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            data = repo["files"].get(path)
            if data is None:
                return error(404, "Entry not found", "EntryNotFound")
            headers = {"X-Repo-Commit": repo["sha"], "ETag": f'"{git_blob_sha1(data)}"',
                       "Content-Length": str(len(data))}
            if request.method == "HEAD":
                return Response(status_code=200, headers=headers)
            return Response(content=data, media_type="application/octet-stream", headers=headers)

        return app


@contextlib.contextmanager
def fake_hub(tokens: dict[str, str] | None = None, *, orgs: dict[str, set[str]] | None = None,
             host: str = "127.0.0.1") -> Iterator[FakeHub]:
    """Run a :class:`FakeHub` with uvicorn in a background thread on a free loopback port."""
    import uvicorn

    hub = FakeHub(tokens=dict(tokens or {"hf_fake_token_0123456789": "alice"}), orgs=dict(orgs or {}))
    config = uvicorn.Config(hub.app(), host=host, port=0, log_level="error", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-hf-hub", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("The fake Hugging Face Hub did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    hub.url = f"http://{host}:{port}"
    try:
        yield hub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
