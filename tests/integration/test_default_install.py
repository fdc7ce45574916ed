"""The documented OTLP paths work on the default install, without the test extras.

A subprocess starts the server's app and sends it OTLP/HTTP protobuf (what the SDK's exporter
sends), OTLP/HTTP JSON and an OTLP/gRPC export, then lists every module it imported. Each module
from outside the standard library must come from a distribution that the default install brings:
the project's own ``dependencies`` (no extras) and what they require in turn. A module that only
a test extra provides (``opentelemetry-proto`` used to be one) fails this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, sys
import importlib.abc

class Hidden(importlib.abc.MetaPathFinder):
    # Distributions outside the default install, hidden as if they were not installed.
    names = set(filter(None, os.environ.get("MW_HIDE", "").split(",")))

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden)", name=name)
        return None

sys.meta_path.insert(0, Hidden())
from pathlib import Path
import tempfile

import grpc
import httpx
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from modelwarden.governance.keys import create_key
from modelwarden.server.app import create_app
from modelwarden.server.config import ServerConfig
from modelwarden.server.runner import ServerThread, free_port
from modelwarden.settings import Settings
from modelwarden.store.state import StateStore

data = Path(tempfile.mkdtemp()) / "warden-data"
state = StateStore.at(data)
key, _ = create_key(state, "ingest")
state.close()
grpc_port = free_port()
app = create_app(
    Settings(data_dir=data, embedder="hashing"),
    ServerConfig(flush_interval_s=0.1, otlp_grpc_port=grpc_port),
)

def kv(k, v):
    return KeyValue(key=k, value=AnyValue(string_value=v))

span = Span(
    trace_id=bytes(range(16)), span_id=bytes(range(8)), name="chat m",
    start_time_unix_nano=1_793_610_000_000_000_000, end_time_unix_nano=1_793_610_000_100_000_000,
    attributes=[kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", "m"),
                kv("gen_ai.prompt", "hi"), kv("gen_ai.completion", "hello")],
)
req = trace_service_pb2.ExportTraceServiceRequest(
    resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
)
with ServerThread(app) as srv:
    auth = {"authorization": f"Bearer {key}"}
    r = httpx.post(srv.url + "/v1/traces", content=req.SerializeToString(),
                   headers={**auth, "content-type": "application/x-protobuf"})
    assert r.status_code == 200, (r.status_code, r.text)
    r = httpx.post(srv.url + "/v1/traces", json={"resourceSpans": []}, headers=auth)
    assert r.status_code == 200, (r.status_code, r.text)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        stub.Export(req, metadata=[("authorization", f"Bearer {key}")], timeout=20)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""

# Imported by the probe itself or by the interpreter's start-up, not by ModelWarden.
PROBE_ONLY = {"modelwarden", "_distutils_hack", "sitecustomize", "usercustomize"}


def _default_requirements() -> list[Requirement]:
    pyproject = ROOT / "pyproject.toml"
    if pyproject.exists():  # the source tree: what the next install will bring
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:  # an installed package
        deps = metadata.requires("modelwarden") or []
    return [Requirement(d) for d in deps]


def _closure(reqs: list[Requirement], extras: tuple[str, ...] = ()) -> set[str]:
    """Distributions a plain install of these requirements brings (as installed here)."""
    seen: set[str] = set()
    todo = [(r, extras) for r in reqs]
    while todo:
        req, active = todo.pop()
        env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*active, ""))
        name = canonicalize_name(req.name)
        if not env_ok or name in seen:
            continue
        seen.add(name)
        try:
            sub = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend((Requirement(s), tuple(req.extras)) for s in sub)
    return seen


def _probe(cwd: Path, hide: set[str] = frozenset()) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path[1:]]),
        "MW_HIDE": ",".join(sorted(hide)),
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


def test_otlp_paths_import_only_default_dependencies(tmp_path: Path) -> None:
    proc = _probe(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    providers = metadata.packages_distributions()
    allowed = _closure(_default_requirements())
    assert "opentelemetry-proto" in allowed and "grpcio" in allowed
    missing: dict[str, list[str]] = {}
    for mod in sorted(modules - set(sys.stdlib_module_names) - PROBE_ONLY):
        dists = [canonicalize_name(d) for d in providers.get(mod, [])]
        if not dists:
            continue  # built into the interpreter or a private extension module
        if not any(d in allowed for d in dists):
            missing[mod] = dists
    # What is installed here but not by the default install may only be an optional import
    # (``try: import x except ImportError``): with it hidden, every OTLP path still works.
    hidden = _probe(tmp_path, set(missing))
    assert hidden.returncode == 0, (
        f"the OTLP paths need {missing}, which the default install does not bring: "
        + hidden.stderr[-3000:]
    )
    again = set(json.loads(hidden.stdout.strip().splitlines()[-1]))
    assert not again & set(missing)


def test_closure_tells_test_extras_apart() -> None:
    # The check above can fail: the test-only exporter is outside the default closure.
    allowed = _closure(_default_requirements())
    assert "opentelemetry-exporter-otlp-proto-http" not in allowed
    assert "pytest" not in allowed


def test_the_demo_sends_through_a_client_of_the_default_install() -> None:
    # `make demo` installs no extras, and the demo's traffic goes through the official client
    # (modelwarden.simulate.live imports openai when it sends).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    default = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert "openai" in default
    source = (ROOT / "src" / "modelwarden" / "simulate" / "live.py").read_text(encoding="utf-8")
    assert "from openai import" in source
