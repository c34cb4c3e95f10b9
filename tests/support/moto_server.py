"""moto, as the local AWS the test harness and `make bench-stack` run against.

Started as `python3 moto_server.py [--fargate-player]`; prints `port=<n>` on its first
line once it listens on a free loopback port, and serves until killed.

On top of plain moto it carries the workarounds docs/stand-ins.md lists, each because
aws-sdk-rust (or a test) meets moto doing something AWS does not:

* ECS `containers[].cpu` / `memory` are serialised as numbers where the API says
  strings, so aws-sdk-rust cannot parse RunTask, DescribeTasks or StopTask.
* ECS RunTask answers 500 when the container definition has no container-level memory
  (lackey's task definition has none; Fargate does not need it).
* S3 names the XML root of CompleteMultipartUpload, GetBucketVersioning and ListParts
  `<{Op}Response>` instead of S3's own root element.
* IAM managed policies only exist with MOTO_IAM_LOAD_MANAGED_POLICIES=true.
* ECS tasks start RUNNING, never walk PROVISIONING -> PENDING, and StopTask jumps to
  STOPPED with no stopCode. With --fargate-player, FARGATE tasks start in PROVISIONING
  and stay where they are until the harness's Fargate player moves them with
  `POST /_harness/ecs/task`; StopTask only records the request (desiredStatus STOPPED,
  stopCode UserInitiated) and the player stops the container and reports STOPPED, as
  Fargate does. Without it, StopTask stops the task at once (with a stopCode).
* DescribeTasks on an unknown task returns a MISSING failure, as AWS does.

Harness endpoints (never reached by lackey itself):

* `GET /_harness/requests`: every AWS request served, as JSON lines
  {service, action, method, path, status}; `POST /_harness/requests/reset` clears it.
* `POST /_harness/faults` {"rate": 0.2, "seed": 7}: answer that share of AWS requests
  with 503 or a ThrottlingException instead of serving them; rate 0 turns it off.
* `POST /_harness/hang` {"after": n}: serve n more AWS requests, then hold every later
  one until `POST /_harness/release` (so a test can kill a client at a known point).
* `POST /_harness/ecs/task` {"task_arn", "last_status", ...}: set a task's fields.
* `POST /_harness/inject` {"action", "times", "status", "body", "content_type"}: answer
  the next `times` requests for `action` with this response instead of serving them
  (what moto never says: a DependencyViolation, a RunTask capacity failure).
* `GET /_harness/timings`: when every AWS request started and ended, as JSON
  [{start, end, caller, call}] (seconds; call is `service:Action`); cleared with the request log. With `LATENCY_MS=n` in
  its environment, every AWS request takes n ms longer (a real region's round trip).
"""

import io
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")

from werkzeug.serving import make_server  # noqa: E402

from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    create_backend_app,
)
from moto.ecs import models as ecs_models  # noqa: E402
from moto.ecs import responses as ecs_responses  # noqa: E402

FARGATE_PLAYER = "--fargate-player" in sys.argv

# --- ECS: string cpu/memory on task containers ---------------------------------------

_container_init = ecs_models.Container.__init__


def _container_init_strings(self, task_def):
    _container_init(self, task_def)
    for attr in ("cpu", "memory"):
        value = getattr(self, attr, None)
        if value is not None:
            setattr(self, attr, str(value))
    self.exitCode = None
    self.reason = None


ecs_models.Container.__init__ = _container_init_strings

# --- ECS: no container-level memory is fine on Fargate --------------------------------

_calc = ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements


def _calc_tolerant(task_definition):
    defs = task_definition.container_definitions
    patched = []
    for cd in defs:
        if not any(k in cd for k in ("memory", "Memory", "memoryReservation", "MemoryReservation")):
            cd = dict(cd)
            cd["memory"] = 0
        patched.append(cd)
    original = task_definition.container_definitions
    task_definition.container_definitions = patched
    try:
        return _calc(task_definition)
    finally:
        task_definition.container_definitions = original


ecs_models.EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(_calc_tolerant)

# --- ECS: the task lifecycle ---------------------------------------------------------

_task_init = ecs_models.Task.__init__


def _now():
    return datetime.now(timezone.utc)


def _task_init_lifecycle(self, *args, **kwargs):
    _task_init(self, *args, **kwargs)
    self.created_at = _now()
    self.stop_code = None
    self.started_at = None
    self.stopped_at = None
    self.stopping_at = None
    if FARGATE_PLAYER and self.launch_type == "FARGATE":
        self.status = "PROVISIONING"
        self._player = True
        for c in self.containers:
            c.last_status = "PENDING"
    else:
        self._player = False
        self.started_at = _now()
        for c in self.containers:
            c.last_status = "RUNNING"


ecs_models.Task.__init__ = _task_init_lifecycle

# --- ECS: one container per container definition, as ECS reports a task ----------------

_task_init_one_container = ecs_models.Task.__init__


def _task_init_every_container(self, cluster, task_definition, *args, **kwargs):
    _task_init_one_container(self, cluster, task_definition, *args, **kwargs)
    first = self.containers[0] if self.containers else None
    for cd in task_definition.container_definitions[1:]:
        c = ecs_models.Container(task_definition)
        c.name = cd.get("name")
        c.image = cd.get("image")
        c.environment = cd.get("environment")
        c.command = cd.get("command")
        c.cpu = str(cd["cpu"]) if cd.get("cpu") is not None else None
        c.memory = str(cd["memory"]) if cd.get("memory") is not None else None
        if first is not None:
            c.last_status = first.last_status
        self.containers.append(c)


ecs_models.Task.__init__ = _task_init_every_container

_advance = ecs_models.Task.advance


def _advance_unless_played(self):
    # Tasks the player drives move only when it says so.
    if getattr(self, "_player", False):
        return
    _advance(self)


ecs_models.Task.advance = _advance_unless_played


def _stop_task(self, cluster_str, task_str, reason):
    cluster = self._get_cluster(cluster_str)
    task_id = task_str.split("/")[-1]
    for arn, task in self.tasks.get(cluster.name, {}).items():
        if arn.endswith(task_id):
            task.desired_status = "STOPPED"
            if task.stop_code is None:
                task.stop_code = "UserInitiated"
                task.stopped_reason = reason or "Task stopped by user"
                task.stopping_at = _now()
            if not task._player:
                task.status = "STOPPED"
                task.stopped_at = _now()
                for c in task.containers:
                    c.last_status = "STOPPED"
            return task
    raise Exception(f"Could not find task {task_str} on cluster {cluster.name}")


ecs_models.EC2ContainerServiceBackend.stop_task = _stop_task

_describe_tasks_response = ecs_responses.EC2ContainerServiceResponse.describe_tasks


def _describe_tasks_with_failures(self):
    result = _describe_tasks_response(self)
    asked = self._get_param("tasks", [])
    found = result.result["tasks"]
    found_ids = {t.task_arn.split("/")[-1] for t in found}
    failures = []
    for t in asked:
        if t.split("/")[-1] not in found_ids:
            failures.append({"arn": t, "reason": "MISSING"})
    result.result["failures"] = failures
    return result


ecs_responses.EC2ContainerServiceResponse.describe_tasks = _describe_tasks_with_failures


def _find_task(arn):
    for account in ecs_models.ecs_backends.values():
        for backend in account.values():
            for tasks in backend.tasks.values():
                for task_arn, task in tasks.items():
                    if task_arn == arn or task_arn.split("/")[-1] == arn.split("/")[-1]:
                        return task
    return None


def _set_task(body):
    task = _find_task(body["task_arn"])
    if task is None:
        return 404, {"error": "no such task"}
    status = body.get("last_status")
    if status:
        task.status = status
        for c in task.containers:
            c.last_status = "RUNNING" if status == "RUNNING" else (
                "STOPPED" if status == "STOPPED" else c.last_status
            )
        if status == "RUNNING" and task.started_at is None:
            task.started_at = _now()
        if status == "STOPPED":
            task.stopped_at = _now()
            task.desired_status = "STOPPED"
    if "exit_code" in body:
        for c in task.containers:
            c.exitCode = body["exit_code"]
    # Each container's own exit code, by name (a task of several containers).
    for name, code in (body.get("container_exit_codes") or {}).items():
        for c in task.containers:
            if c.name == name:
                c.exitCode = code
    if body.get("container_reason"):
        for c in task.containers:
            c.reason = body["container_reason"]
    if body.get("stop_code") and task.stop_code in (None, ""):
        task.stop_code = body["stop_code"]
    if body.get("stopped_reason") and not (task.stopped_reason or ""):
        task.stopped_reason = body["stopped_reason"]
    return 200, {"ok": True}


# --- S3: the XML root elements S3 really uses -----------------------------------------

S3_ROOTS = {
    "CompleteMultipartUploadResponse": "CompleteMultipartUploadResult",
    "GetBucketVersioningResponse": "VersioningConfiguration",
    "ListPartsResponse": "ListPartsResult",
}
S3_ROOT_RE = re.compile(rb"<(/?)(" + b"|".join(k.encode() for k in S3_ROOTS) + rb")([ >])")


def _fix_s3_roots(body):
    return S3_ROOT_RE.sub(lambda m: b"<" + m.group(1) + S3_ROOTS[m.group(2).decode()].encode() + m.group(3), body)


# --- the request log, faults and hangs -------------------------------------------------

LOCK = threading.Lock()
REQUESTS = []
FAULTS = {"rate": 0.0, "rng": random.Random(0)}
HANG = {"after": None, "release": threading.Event()}
INJECT = {}
CRED_RE = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/([^/]+)/")


def _classify(environ, body):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = CRED_RE.search(auth)
    service = m.group(2) if m else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.split(".")[-1]
    elif service == "s3":
        action = environ["REQUEST_METHOD"]
    else:
        action = "?"
        ctype = environ.get("CONTENT_TYPE", "")
        if "x-www-form-urlencoded" in ctype and body:
            params = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            action = params.get("Action", ["?"])[0]
        elif environ.get("QUERY_STRING"):
            params = urllib.parse.parse_qs(environ["QUERY_STRING"])
            action = params.get("Action", [environ["REQUEST_METHOD"]])[0]
    return service, action


def _caller(environ):
    """Who sent a request: lackey's CLI and minion name themselves in the User-Agent."""
    ua = environ.get("HTTP_USER_AGENT", "") + " " + environ.get("HTTP_X_AMZ_USER_AGENT", "")
    if "app/lackey-minion" in ua:
        return "minion"
    if "app/lackey" in ua:
        return "cli"
    return "other"


def _json_response(start_response, status, payload):
    data = json.dumps(payload).encode()
    start_response(f"{status} OK" if status == 200 else f"{status} ERR", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _harness(environ, start_response):
    path = environ["PATH_INFO"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
    if path == "/_harness/requests" and environ["REQUEST_METHOD"] == "GET":
        with LOCK:
            return _json_response(start_response, 200, list(REQUESTS))
    if path == "/_harness/requests/reset":
        with LOCK:
            REQUESTS.clear()
        return _json_response(start_response, 200, {"ok": True})
    if path == "/_harness/faults":
        with LOCK:
            FAULTS["rate"] = float(body.get("rate", 0))
            FAULTS["rng"] = random.Random(body.get("seed", 0))
        return _json_response(start_response, 200, {"ok": True})
    if path == "/_harness/hang":
        with LOCK:
            HANG["after"] = int(body["after"])
            HANG["release"] = threading.Event()
        return _json_response(start_response, 200, {"ok": True})
    if path == "/_harness/release":
        with LOCK:
            HANG["after"] = None
            HANG["release"].set()
        return _json_response(start_response, 200, {"ok": True})
    if path == "/_harness/inject":
        with LOCK:
            INJECT[body["action"]] = dict(body)
        return _json_response(start_response, 200, {"ok": True})
    if path == "/_harness/ecs/task":
        with LOCK:
            status, payload = _set_task(body)
        return _json_response(start_response, status, payload)
    return _json_response(start_response, 404, {"error": "unknown harness path"})


def _fault(service, start_response):
    if service in ("s3",):
        data = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
        start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(data)))])
        return [data]
    if FAULTS["rng"].random() < 0.5:
        data = b"Service Unavailable"
        start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
        return [data]
    if service == "ec2":
        # EC2's own error document and throttling code.
        data = (
            b"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
            b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>"
        )
        ctype = "text/xml"
    elif service in ("iam", "sts"):
        data = (
            b'<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>'
            b"<Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        )
        ctype = "text/xml"
    else:
        data = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        ctype = "application/x-amz-json-1.1"
    start_response("400 Bad Request", [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def make_app():
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ, start_response):
        if environ["PATH_INFO"].startswith("/_harness/"):
            return _harness(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, action = _classify(environ, body)
        with LOCK:
            hang_after = HANG["after"]
            release = HANG["release"]
            if hang_after is not None:
                if hang_after > 0:
                    HANG["after"] = hang_after - 1
                    hang = False
                else:
                    hang = True
            else:
                hang = False
            fault = FAULTS["rate"] > 0 and FAULTS["rng"].random() < FAULTS["rate"]
            canned = INJECT.get(action)
            if canned and canned.get("times", 0) > 0:
                canned["times"] -= 1
            else:
                canned = None
        if hang:
            release.wait()
        if canned:
            with LOCK:
                REQUESTS.append({"service": service, "action": action, "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "status": "injected", "caller": _caller(environ)})
            data = canned["body"].encode()
            start_response(f"{canned['status']} Injected", [("Content-Type", canned.get("content_type", "application/json")), ("Content-Length", str(len(data)))])
            return [data]
        if fault:
            with LOCK:
                REQUESTS.append({"service": service, "action": action, "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "status": "fault"})
            return _fault(service, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = headers
            return lambda data: None

        chunks = list(moto_app(environ, capture))
        data = b"".join(chunks)
        headers = captured["headers"]
        if service == "s3" and data[:200].find(b"Response") != -1:
            fixed = _fix_s3_roots(data)
            if fixed != data:
                data = fixed
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(data))))
        with LOCK:
            REQUESTS.append({
                "service": service,
                "action": action,
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "status": int(captured["status"].split()[0]),
                "caller": _caller(environ),
            })
        start_response(captured["status"], headers)
        return [data]

    return app


# --- latency and request timings -------------------------------------------------------

LATENCY_S = float(os.environ.get("LATENCY_MS") or 0) / 1000.0
TIMINGS = []
TIMINGS_LOCK = threading.Lock()


def with_latency(app):
    """Delay every AWS request by LATENCY_MS before serving it, and record when each
    started and ended (from which the harness computes how many calls ran one after
    another). A middleware of its own, around everything else the server does."""

    def wrapped(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/_harness/timings":
            with TIMINGS_LOCK:
                return _json_response(start_response, 200, list(TIMINGS))
        if path == "/_harness/requests/reset":
            with TIMINGS_LOCK:
                TIMINGS.clear()
        if path.startswith("/_harness/"):
            return app(environ, start_response)
        start = time.time()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(request)
        service, action = _classify(environ, request)
        if LATENCY_S > 0:
            time.sleep(LATENCY_S)
        body = app(environ, start_response)
        with TIMINGS_LOCK:
            TIMINGS.append({
                "start": start,
                "end": time.time(),
                "caller": _caller(environ),
                "call": f"{service}:{action}",
            })
        return body

    return wrapped


def main():
    server = make_server("127.0.0.1", 0, with_latency(make_app()), threaded=True)
    print(f"port={server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
