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
* `POST /_harness/iam/changed`: every role changed so far counts as changed now, so
  its propagation window starts again (a test's "up just finished", however long the
  steps between took on a loaded machine).
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
# IAM is enforced from the first request, as in AWS (see "IAM, enforced" below).
os.environ.setdefault("INITIAL_NO_AUTH_ACTION_COUNT", "0")

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


# --- IAM, enforced -----------------------------------------------------------------
#
# INITIAL_NO_AUTH_ACTION_COUNT=0 makes moto evaluate every request against the caller's
# IAM policies. On top of moto's evaluation the harness:
#
# * skips only the SigV4 signature re-computation: moto's rejects valid aws-sdk-rust
#   requests (EC2 CreateSecurityGroup answers AuthFailure); the access key must still
#   be one IAM knows, and the policies are still evaluated;
# * bootstraps `harness-admin` (AdministratorAccess) with the access key `testing`,
#   the key the harness and every test that does not ask otherwise use;
# * matches resources as IAM does (`*` any run, `?` one character; moto treats the
#   pattern as a regular expression), and names the resource of the calls lackey makes
#   on Secrets Manager, ECS, CloudWatch Logs and ECR (moto names `*` there); a call
#   whose resource is still `*` is evaluated on its action alone;
# * names S3's bucket operations as IAM does (ownership controls, HeadBucket);
# * answers a denial in each service's own error format, naming the action and the
#   resource as AWS does (moto answers a JSON service in XML, and S3 without the action);
# * evaluates iam:PassRole for ECS RegisterTaskDefinition and RunTask (moto does not);
# * does not crash on a trust policy whose principal is a service;
# * simulates IAM's propagation: for IAM_PROPAGATION_MS after CreateRole,
#   PutRolePolicy, AttachRolePolicy or UpdateAssumeRolePolicy, the role cannot be
#   assumed (AssumeRole is denied, and the Fargate player's `/_harness/ecs/assume`
#   answers that ECS was unable to assume it).

import html  # noqa: E402

from werkzeug.exceptions import HTTPException  # noqa: E402

from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core.exceptions import _RESTError  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.iam.models import iam_backends  # noqa: E402
from moto.s3 import responses as s3_responses  # noqa: E402
from moto.secretsmanager import responses as sm_responses  # noqa: E402
from moto.logs import responses as logs_responses  # noqa: E402
from moto.ecr import responses as ecr_responses  # noqa: E402
from moto.sts.models import sts_backends  # noqa: E402

access_control.IAMRequestBase.check_signature = lambda self: None


def _glob(pattern, string):
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.match(f"^{rx}$", string, re.DOTALL)


access_control.IAMPolicyStatement._match = staticmethod(_glob)

_check_element = access_control.IAMPolicyStatement._check_element_matches


def _check_element_matches(self, element, value):
    if element == "Resource" and value == "*":
        return True
    return _check_element(self, element, value)


access_control.IAMPolicyStatement._check_element_matches = _check_element_matches


def _check_principal(self, principal):
    expected = self._statement.get("Principal")
    if not expected or expected == "*":
        return True
    aws = expected.get("AWS") if isinstance(expected, dict) else None
    if aws is None:
        # A service principal (ecs-tasks.amazonaws.com) is never a user or a role.
        return False
    return aws == "*" or principal == aws or principal in aws


access_control.IAMPolicyStatement._check_principal = _check_principal


class _Denied(_RESTError):
    def __init__(self, status, code, body, content_type):
        super().__init__(code, "denied")
        self.code = status
        self.description = body
        self.content_type = content_type


def _denial(service, message):
    m = html.escape(message)
    if service == "ec2":
        body = (
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized "
            f"to perform this operation. {m}</Message></Error></Errors><RequestID>denied</RequestID></Response>"
        )
        return _Denied(403, "UnauthorizedOperation", body, "text/xml")
    if service in ("iam", "sts"):
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{m}</Message>"
            "</Error><RequestId>denied</RequestId></ErrorResponse>"
        )
        return _Denied(403, "AccessDenied", body, "text/xml")
    if service == "s3":
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>{m}</Message><RequestId>denied</RequestId></Error>'
        return _Denied(403, "AccessDenied", body, "application/xml")
    body = json.dumps({"__type": "AccessDeniedException", "message": message})
    return _Denied(400, "AccessDeniedException", body, "application/x-amz-json-1.1")


def _denied_message(principal, action, resource):
    on = f" on resource: {resource}" if resource and resource != "*" else ""
    return f"User: {principal} is not authorized to perform: {action}{on} because no identity-based policy allows the {action} action"


_permitted = access_control.IAMRequestBase.check_action_permitted


def _check_action_permitted(self, resource):
    if self._action == "s3:DeleteObject" and "/" not in resource.split(":::", 1)[-1]:
        # DeleteObjects (a POST on the bucket): S3 authorises s3:DeleteObject on each
        # key it names; moto asks about the bucket.
        body = self._body.decode("utf-8", "replace") if isinstance(self._body, bytes) else str(self._body or "")
        for key in re.findall(r"<Key>(.*?)</Key>", body, re.DOTALL):
            self._lackey_resource = f"{resource}/{html.unescape(key)}"
            _permitted(self, self._lackey_resource)
        return None
    self._lackey_resource = resource
    return _permitted(self, resource)


def _raise_access_denied(self):
    resource = getattr(self, "_lackey_resource", "*")
    raise _denial(self._service, _denied_message(self._access_key.arn, self._action, resource))


access_control.IAMRequestBase.check_action_permitted = _check_action_permitted
access_control.IAMRequest._raise_access_denied = _raise_access_denied
access_control.S3IAMRequest._raise_access_denied = _raise_access_denied

for _method, _name in (("GET", "GetBucketOwnershipControls"), ("PUT", "PutBucketOwnershipControls"), ("DELETE", "DeleteBucketOwnershipControls")):
    s3_responses.ACTION_MAP["BUCKET"][_method]["ownershipControls"] = _name
s3_responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"


def _arn(resp, service, rest):
    return f"arn:aws:{service}:{resp.region}:{resp.current_account}:{rest}"


def _secret_resource(self):
    sid = self._get_param("SecretId")
    if sid:
        if sid.startswith("arn:"):
            return sid
        try:
            return self.backend.describe_secret(sid).arn
        except Exception:
            # A secret that does not exist is named by its name alone.
            return _arn(self, "secretsmanager", f"secret:{sid}")
    name = self._get_param("Name")
    if name:
        return _arn(self, "secretsmanager", f"secret:{name}-AbCdEf")
    return "*"


def _ecs_resource(self):
    action = self._get_action()
    cluster = (self._get_param("cluster") or "default").split("/")[-1]
    if action == "CreateCluster":
        return _arn(self, "ecs", f"cluster/{self._get_param('clusterName') or 'default'}")
    if action == "DeleteCluster":
        return _arn(self, "ecs", f"cluster/{cluster}")
    if action == "DescribeClusters":
        names = self._get_param("clusters") or ["default"]
        return _arn(self, "ecs", f"cluster/{names[0].split('/')[-1]}")
    if action in ("DescribeTasks", "StopTask"):
        tasks = self._get_param("tasks") or [self._get_param("task") or ""]
        return _arn(self, "ecs", f"task/{cluster}/{tasks[0].split('/')[-1]}")
    if action == "RunTask":
        try:
            return self.ecs_backend.describe_task_definition(self._get_param("taskDefinition")).arn
        except Exception:
            return "*"
    if action in ("TagResource", "UntagResource", "ListTagsForResource"):
        return self._get_param("resourceArn") or "*"
    return "*"


def _logs_resource(self):
    group = self._get_param("logGroupName")
    if not group:
        return "*"
    stream = self._get_param("logStreamName")
    if stream:
        return _arn(self, "logs", f"log-group:{group}:log-stream:{stream}")
    return _arn(self, "logs", f"log-group:{group}")


def _ecr_resource(self):
    name = self._get_param("repositoryName") or (self._get_param("repositoryNames") or [None])[0]
    if name:
        return _arn(self, "ecr", f"repository/{name}")
    return self._get_param("resourceArn") or "*"


sm_responses.SecretsManagerResponse._determine_resource = _secret_resource
ecs_responses.EC2ContainerServiceResponse._determine_resource = _ecs_resource
logs_responses.LogsResponse._determine_resource = _logs_resource
ecr_responses.ECRResponse._determine_resource = _ecr_resource


def _bootstrap_admin():
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user("us-east-1", "harness-admin")
    iam.attach_user_policy("arn:aws:iam::aws:policy/AdministratorAccess", "harness-admin")
    key = iam.create_access_key("harness-admin")
    key.access_key_id = "testing"
    key.secret_access_key = "testing"


_bootstrap_admin()

IAM_PROPAGATION_S = float(os.environ.get("IAM_PROPAGATION_MS") or 0) / 1000.0
ROLE_CHANGED = {}
ROLE_CHANGES = ("CreateRole", "PutRolePolicy", "AttachRolePolicy", "UpdateAssumeRolePolicy")


def _form(body):
    try:
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}
    except Exception:
        return {}


def _note_role_change(service, action, body, status):
    if service == "iam" and action in ROLE_CHANGES and status == 200:
        name = _form(body).get("RoleName")
        if name:
            with LOCK:
                ROLE_CHANGED[name] = time.time()


def _propagating(role_arn):
    """Seconds until a role just changed can be assumed (0: it can)."""
    name = (role_arn or "").split("/")[-1]
    with LOCK:
        changed = ROLE_CHANGED.get(name)
    if changed is None:
        return 0.0
    return max(0.0, changed + IAM_PROPAGATION_S - time.time())


def _headers_of(environ):
    headers = {"Authorization": environ.get("HTTP_AUTHORIZATION", "")}
    if "HTTP_X_AMZ_SECURITY_TOKEN" in environ:
        headers["X-Amz-Security-Token"] = environ["HTTP_X_AMZ_SECURITY_TOKEN"]
    return headers


def _iam_check(environ, body, action, resource):
    """Evaluate `action` on `resource` for the request's caller: None, or the denial."""
    headers = _headers_of(environ)
    if "Credential=" not in headers["Authorization"]:
        return None
    try:
        req = access_control.IAMRequest(
            account_id=DEFAULT_ACCOUNT_ID,
            method=environ["REQUEST_METHOD"],
            path=environ["PATH_INFO"],
            data={},
            body=body,
            headers=headers,
            action=action.split(":")[1],
        )
        req._action = action
        req.check_action_permitted(resource)
    except HTTPException as e:
        return e
    return None


def _region_of(environ):
    m = CRED_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else "us-east-1"


def _pass_role_denial(environ, body, service, action):
    """moto does not evaluate iam:PassRole: ECS needs it for every role a task
    definition names, at RegisterTaskDefinition and at RunTask."""
    if service != "ecs" or action not in ("RegisterTaskDefinition", "RunTask"):
        return None
    try:
        req = json.loads(body or b"{}")
    except ValueError:
        return None
    if action == "RegisterTaskDefinition":
        roles = [req.get("executionRoleArn"), req.get("taskRoleArn")]
    else:
        roles = []
        try:
            backend = ecs_models.ecs_backends[DEFAULT_ACCOUNT_ID][_region_of(environ)]
            td = backend.describe_task_definition(req.get("taskDefinition") or "")
            roles = [getattr(td, "execution_role_arn", None), getattr(td, "task_role_arn", None)]
        except Exception:
            pass
        overrides = req.get("overrides") or {}
        roles += [overrides.get("executionRoleArn"), overrides.get("taskRoleArn")]
    for role in roles:
        if role:
            denied = _iam_check(environ, body, "iam:PassRole", role)
            if denied is not None:
                return denied
    return None


def _assume_denial(environ, body, service, action):
    """A role inside its propagation window cannot be assumed yet."""
    if service != "sts" or action != "AssumeRole" or IAM_PROPAGATION_S <= 0:
        return None
    role = _form(body).get("RoleArn", "")
    if _propagating(role) > 0:
        try:
            who = access_control.create_access_key(DEFAULT_ACCOUNT_ID, "aws", environ.get("HTTP_AUTHORIZATION", "").split("Credential=")[1].split("/")[0], _headers_of(environ)).arn
        except Exception:
            who = "the caller"
        return _denial("sts", f"User: {who} is not authorized to perform: sts:AssumeRole on resource: {role}")
    return None


def _ecs_assume(body):
    """What ECS does for a task: assume its role as the service ecs-tasks.amazonaws.com."""
    arn = body.get("role_arn", "")
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    try:
        role = iam.get_role_by_arn(arn)
    except Exception:
        return 400, {"error": f"ECS was unable to assume the role '{arn}' that was provided for this task: the role does not exist"}
    trust = access_control.IAMPolicy(role.assume_role_policy_document)
    statements = trust._policy_json.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    trusted = any(
        s.get("Effect") == "Allow"
        and "ecs-tasks.amazonaws.com" in (lambda v: v if isinstance(v, list) else [v])((s.get("Principal") or {}).get("Service", []))
        and any(_glob(a, "sts:AssumeRole") for a in (s["Action"] if isinstance(s.get("Action"), list) else [s.get("Action", "")]))
        for s in statements
    )
    reason = (
        f"ECS was unable to assume the role '{arn}' that was provided for this task. Please verify that the role "
        "being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."
    )
    if not trusted or _propagating(arn) > 0:
        return 403, {"error": reason, "propagating": _propagating(arn)}
    creds = sts_backends[DEFAULT_ACCOUNT_ID]["aws"].assume_role(
        region_name="us-east-1",
        role_session_name=body.get("session", "ecs-task"),
        role_arn=arn,
        policy=None,
        duration=3600,
        external_id=None,
    )
    return 200, {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": creds.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

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
    if path == "/_harness/iam/changed":
        with LOCK:
            now = time.time()
            for name in ROLE_CHANGED:
                ROLE_CHANGED[name] = now
            roles = sorted(ROLE_CHANGED)
        return _json_response(start_response, 200, {"roles": roles})
    if path == "/_harness/ecs/assume":
        status, payload = _ecs_assume(body)
        return _json_response(start_response, status, payload)
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
        denied = None if fault else (_pass_role_denial(environ, body, service, action) or _assume_denial(environ, body, service, action))
        if denied is not None:
            with LOCK:
                REQUESTS.append({"service": service, "action": action, "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "status": denied.code, "caller": _caller(environ)})
            return denied(environ, start_response)
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
        _note_role_change(service, action, body, int(captured["status"].split()[0]))
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
