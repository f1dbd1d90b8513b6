"""A recorded stand-in for the AWS IoT Greengrass V2 control-plane API (test double: not shipped, not AWS).

moto (5.2, in the dev extra) implements Greengrass V1 only, so ``fer-edge deploy greengrass`` is
tested against this small HTTP server instead. It speaks the REST-JSON of botocore's
``greengrassv2`` service model (2020-11-30) for the five calls the deploy uses, so the real awscli
talks to it unchanged (``--endpoint-url`` or ``AWS_ENDPOINT_URL_GREENGRASSV2``):

* CreateComponentVersion (POST /greengrass/v2/createComponentVersion): decodes ``inlineRecipe``
  (a base64 blob), parses it (JSON or YAML), checks RecipeFormatVersion 2020-01-25, ComponentName,
  a semantic ComponentVersion and Manifests, refuses an existing version (409 ConflictException),
  answers 201 with the state REQUESTED;
* DescribeComponent (GET /greengrass/v2/components/{arn}/metadata): REQUESTED at the first call,
  then DEPLOYABLE, or FAILED when an artifact's s3:// object is missing from the S3 endpoint given
  (moto's), with the URI in ``errors``;
* ListDeployments (GET /greengrass/v2/deployments?targetArn=&historyFilter=): a target's stored
  deployments (LATEST_ONLY: the latest one);
* GetDeployment (GET /greengrass/v2/deployments/{deploymentId}): one stored deployment;
* CreateDeployment (POST /greengrass/v2/deployments): checks the target ARN's pattern, that every
  component version exists and is DEPLOYABLE and that a configurationUpdate.merge is JSON text;
  stores it (the target's older deployments stop being the latest); 201.

Errors are sent as the service sends them: status code, ``x-amzn-ErrorType`` header and a JSON body
``{"message": ...}``. Every request is recorded (``requests``: operation, method, path, query,
decoded body, whether it carried a SigV4 ``Authorization`` header). It does not check signatures,
IAM, quotas, or the recipe beyond the fields above, deploy anything to devices, or compute digests.
"""

import base64
import http.server
import json
import re
import threading
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
TARGET_ARN = re.compile(r"^arn:[^:]*:iot:[^:]*:[0-9]+:(thing|thinggroup)/.+$")


class ApiError(Exception):
    def __init__(self, status, code, message, **extra):
        Exception.__init__(self, message)
        self.status, self.code, self.body = status, code, dict(extra, message=message)


class GreengrassV2StandIn(object):
    """The stand-in service; ``start()`` returns its endpoint URL, ``stop()`` ends it."""

    def __init__(self, region="us-east-1", account="123456789012", s3_client=None):
        self.region, self.account, self.s3 = region, account, s3_client
        self.components = {}   # arn -> record
        self.deployments = []  # records, oldest first
        self.requests = []
        self.lock = threading.Lock()
        self.server = None

    # ------------------------------------------------------------ HTTP plumbing

    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner._handle(self)

            def do_POST(self):
                owner._handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return "http://127.0.0.1:{}".format(self.server.server_address[1])

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _handle(self, handler):
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            body = None
        query = dict((k, v[0]) for k, v in parse_qs(parts.query).items())
        record = {"method": handler.command, "path": unquote(parts.path), "query": query, "body": body,
                  "signed": (handler.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256")}
        record["operation"] = None
        try:
            status, answer = self._route(handler.command, parts.path, query, body, record)
        except ApiError as exc:
            record["error"] = exc.code
            status, answer = exc.status, exc.body
            extra_headers = {"x-amzn-ErrorType": exc.code}
        else:
            extra_headers = {}
        with self.lock:
            self.requests.append(record)
        data = json.dumps(answer).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in extra_headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method, path, query, body, record):
        if method == "POST" and path == "/greengrass/v2/createComponentVersion":
            operation, call = "CreateComponentVersion", lambda: self.create_component_version(body)
        elif method == "GET" and re.match(r"^/greengrass/v2/components/(.+)/metadata$", path):
            arn = unquote(re.match(r"^/greengrass/v2/components/(.+)/metadata$", path).group(1))
            operation, call = "DescribeComponent", lambda: self.describe_component(arn)
        elif method == "GET" and path == "/greengrass/v2/deployments":
            operation, call = "ListDeployments", lambda: self.list_deployments(query)
        elif method == "GET" and re.match(r"^/greengrass/v2/deployments/([^/]+)$", path):
            deployment_id = unquote(re.match(r"^/greengrass/v2/deployments/([^/]+)$", path).group(1))
            operation, call = "GetDeployment", lambda: self.get_deployment(deployment_id)
        elif method == "POST" and path == "/greengrass/v2/deployments":
            operation, call = "CreateDeployment", lambda: self.create_deployment(body)
        else:
            raise ApiError(404, "UnknownOperationException", "the stand-in does not implement {} {}".format(
                method, path))
        record["operation"] = operation
        if body is None:
            raise ApiError(400, "SerializationException", "request body is not JSON")
        return call()

    # ------------------------------------------------------------ operations

    def _parse_recipe(self, blob):
        try:
            text = base64.b64decode(blob).decode("utf-8")
        except (ValueError, TypeError):
            raise ApiError(400, "ValidationException", "inlineRecipe is not a base64 blob")
        try:
            return json.loads(text)
        except ValueError:
            import yaml
            try:
                return yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ApiError(400, "ValidationException", "recipe is neither JSON nor YAML: {}".format(exc))

    def create_component_version(self, body):
        if "inlineRecipe" not in body:
            raise ApiError(400, "ValidationException", "inlineRecipe or lambdaFunction is required")
        recipe = self._parse_recipe(body["inlineRecipe"])
        if not isinstance(recipe, dict):
            raise ApiError(400, "ValidationException", "the recipe is not an object")
        if recipe.get("RecipeFormatVersion") != "2020-01-25":
            raise ApiError(400, "ValidationException", "unsupported RecipeFormatVersion {!r}".format(
                recipe.get("RecipeFormatVersion")))
        name, version = recipe.get("ComponentName"), recipe.get("ComponentVersion")
        if not name or not isinstance(name, str):
            raise ApiError(400, "ValidationException", "ComponentName is required")
        if not isinstance(version, str) or not SEMVER.match(version):
            raise ApiError(400, "ValidationException",
                           "ComponentVersion {!r} is not a semantic version".format(version))
        manifests = recipe.get("Manifests")
        if not isinstance(manifests, list) or not manifests:
            raise ApiError(400, "ValidationException", "Manifests must be a non-empty list")
        arn = "arn:aws:greengrass:{}:{}:components:{}:versions:{}".format(self.region, self.account, name, version)
        with self.lock:
            if arn in self.components:
                raise ApiError(409, "ConflictException", "Component {} version {} already exists".format(
                    name, version), resourceId=arn, resourceType="ComponentVersion")
            self.components[arn] = {"recipe": recipe, "created": time.time(), "describes": 0}
        return 201, {"arn": arn, "componentName": name, "componentVersion": version,
                     "creationTimestamp": self.components[arn]["created"],
                     "status": {"componentState": "REQUESTED", "message": "NONE", "errors": {}}}

    def _final_status(self, recipe):
        errors = {}
        for item in recipe["Manifests"]:
            for artifact in item.get("Artifacts") or []:
                uri = artifact.get("URI") or artifact.get("Uri") or ""
                if not uri.startswith("s3://"):
                    errors[uri] = "artifact URI is not s3://"
                    continue
                bucket, _, key = uri[len("s3://"):].partition("/")
                if self.s3 is not None:
                    try:
                        self.s3.head_object(Bucket=bucket, Key=key)
                    except Exception as exc:  # botocore ClientError: 404 and friends
                        errors[uri] = "cannot read the artifact: {}".format(exc)
        if errors:
            return {"componentState": "FAILED", "message": "artifact check failed", "errors": errors}
        return {"componentState": "DEPLOYABLE", "message": "NONE", "errors": {}}

    def describe_component(self, arn):
        with self.lock:
            record = self.components.get(arn)
            if record is None:
                raise ApiError(404, "ResourceNotFoundException", "component {} not found".format(arn),
                               resourceId=arn, resourceType="ComponentVersion")
            record["describes"] += 1
            first = record["describes"] == 1
        recipe = record["recipe"]
        if first:
            status = {"componentState": "REQUESTED", "message": "NONE", "errors": {}}
        else:
            status = record.setdefault("status", self._final_status(recipe))
        platforms = [{"name": m.get("Name") or "", "attributes": dict(m.get("Platform") or {})}
                     for m in recipe["Manifests"]]
        return 200, {"arn": arn, "componentName": recipe["ComponentName"],
                     "componentVersion": recipe["ComponentVersion"], "creationTimestamp": record["created"],
                     "publisher": recipe.get("ComponentPublisher", ""),
                     "description": recipe.get("ComponentDescription", ""), "status": status, "platforms": platforms}

    def _summary(self, d):
        return dict((k, d[k]) for k in ("targetArn", "revisionId", "deploymentId", "deploymentName",
                                        "creationTimestamp", "deploymentStatus", "isLatestForTarget"))

    def list_deployments(self, query):
        with self.lock:
            found = [d for d in self.deployments if not query.get("targetArn") or d["targetArn"] == query["targetArn"]]
            if query.get("historyFilter", "LATEST_ONLY") == "LATEST_ONLY":
                found = [d for d in found if d["isLatestForTarget"]]
            return 200, {"deployments": [self._summary(d) for d in reversed(found)]}

    def get_deployment(self, deployment_id):
        with self.lock:
            for d in self.deployments:
                if d["deploymentId"] == deployment_id:
                    return 200, dict(d)
        raise ApiError(404, "ResourceNotFoundException", "deployment {} not found".format(deployment_id),
                       resourceId=deployment_id, resourceType="Deployment")

    def _component_known(self, name, version):
        arn = "arn:aws:greengrass:{}:{}:components:{}:versions:{}".format(self.region, self.account, name, version)
        public = "arn:aws:greengrass:{}:aws:components:{}:versions:{}".format(self.region, name, version)
        record = self.components.get(arn) or self.components.get(public)
        return record is not None and (record.get("status") or {}).get("componentState", "DEPLOYABLE") == "DEPLOYABLE"

    def create_deployment(self, body):
        target = body.get("targetArn")
        if not isinstance(target, str) or not TARGET_ARN.match(target):
            raise ApiError(400, "ValidationException",
                           "targetArn {!r} is not a thing or thing group ARN".format(target))
        components = body.get("components") or {}
        for name, spec in components.items():
            if not isinstance(spec, dict) or not spec.get("componentVersion"):
                raise ApiError(400, "ValidationException", "component {}: componentVersion is required".format(name))
            if not self._component_known(name, spec["componentVersion"]):
                raise ApiError(404, "ResourceNotFoundException", "component {} version {} is not deployable".format(
                    name, spec["componentVersion"]), resourceId=name, resourceType="ComponentVersion")
            merge = (spec.get("configurationUpdate") or {}).get("merge")
            if merge is not None:
                try:
                    json.loads(merge)
                except (TypeError, ValueError):
                    raise ApiError(400, "ValidationException", "component {}: configurationUpdate.merge is not JSON "
                                   "text".format(name))
        return 201, self.add_deployment(target, components, body.get("deploymentName"),
                                        body.get("deploymentPolicies"), body.get("iotJobConfiguration"))

    def add_deployment(self, target, components, name=None, policies=None, job=None):
        """Store a deployment (also used by tests to give a target a current deployment)."""
        deployment_id = str(uuid.uuid4())
        job_id = str(uuid.uuid4())
        with self.lock:
            for d in self.deployments:
                if d["targetArn"] == target:
                    d["isLatestForTarget"] = False
            revision = str(1 + sum(1 for d in self.deployments if d["targetArn"] == target))
            record = {"targetArn": target, "revisionId": revision, "deploymentId": deployment_id,
                      "deploymentName": name or deployment_id, "deploymentStatus": "ACTIVE",
                      "iotJobId": job_id, "iotJobArn": "arn:aws:iot:{}:{}:job/{}".format(self.region, self.account,
                                                                                        job_id),
                      "components": components, "creationTimestamp": time.time(), "isLatestForTarget": True}
            if policies:
                record["deploymentPolicies"] = policies
            if job:
                record["iotJobConfiguration"] = job
            self.deployments.append(record)
        return {"deploymentId": deployment_id, "iotJobId": job_id, "iotJobArn": record["iotJobArn"]}

    def add_public_component(self, name, version):
        """Make an AWS-provided component version known (e.g. aws.greengrass.Cli) for deployments."""
        arn = "arn:aws:greengrass:{}:aws:components:{}:versions:{}".format(self.region, name, version)
        with self.lock:
            self.components[arn] = {"recipe": {"ComponentName": name, "ComponentVersion": version, "Manifests": []},
                                    "created": time.time(), "describes": 0,
                                    "status": {"componentState": "DEPLOYABLE"}}
        return arn

    def calls(self, operation):
        with self.lock:
            return [r for r in self.requests if r.get("operation") == operation]
