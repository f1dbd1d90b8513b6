"""Upload the DeepLens bundle with the AWS CLI: model artifact to S3, Lambda function created or
updated and published as a version (host side).

    deploy(bucket="deeplens-fer-edge-123", function_name="deeplens-fer-edge",
           zip_path="dist/deeplens/fer-edge-deeplens-lambda.zip",
           model_artifact="dist/deeplens/model.tar.gz", region="us-east-1")

Steps, each one ``aws`` command (awscli v1 from the venv, or any ``aws`` on PATH; ``aws=`` picks
one; credentials and profile as the CLI finds them):

1. check the names: the bucket must start with ``deeplens-`` (DeepLens's default IAM policies only
   let the service and the device read such buckets), the function name should start with
   ``deeplens`` (the DeepLens guide asks for it; ``require_deeplens_name=False`` lifts the check);
2. ``aws s3api head-bucket``, and ``aws s3 mb`` when the bucket does not exist;
3. ``aws s3 cp`` the model artifact to ``s3://<bucket>/<key_prefix>/<file name>``;
4. ``aws lambda get-function``: ``update-function-code`` (and ``update-function-configuration``
   when ``environment`` is given) if the function exists, else ``create-function`` (handler
   ``lambda_function.function_handler``, ``runtime``, the role: ``role_arn``, or the
   ``AWSDeepLensLambdaRole`` that DeepLens device registration creates, found with
   ``aws iam get-role``);
5. wait until the function is no longer being created/updated (``get-function-configuration``:
   ``State`` and ``LastUpdateStatus``), then ``aws lambda publish-version``: a DeepLens project
   takes a published version, never ``$LATEST``;
6. print the console steps that remain (import the model, create and deploy the project).

Returns ``{"bucket", "s3_uri", "function_name", "function_arn", "version", "version_arn",
"created"}``. ``endpoint_url`` adds ``--endpoint-url`` to every call (tests run against a local
moto server). A failing command raises DeployError with the command and the CLI's message.

Note: AWS ended the DeepLens service on 2024-01-31 and Lambda has deprecated the python3.7 runtime,
so Lambda may refuse ``create-function``/``update-function-code`` for it; the CLI's error is passed
on as it is (docs/deeplens.md). Host tool; kept Python 3.6-compatible like the rest of ``deeplens/``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

HANDLER = "lambda_function.function_handler"
DEEPLENS_ROLE = "AWSDeepLensLambdaRole"
BUCKET_PREFIX = "deeplens-"
DEFAULT_RUNTIME = "python3.7"
DEFAULT_KEY_PREFIX = "fer-edge"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class DeployError(RuntimeError):
    """A deployment step failed; the message names the step and the cause."""


def check_bucket_name(bucket: str) -> str:
    """The bucket name, checked: starts with ``deeplens-`` and is a valid S3 bucket name."""
    if not bucket or not bucket.startswith(BUCKET_PREFIX):
        raise DeployError(
            "bucket {!r}: DeepLens reads models only from S3 buckets whose name starts with "
            "'{}' (its default IAM policies allow no other); use e.g. deeplens-fer-edge-<account>".format(
                bucket, BUCKET_PREFIX
            )
        )
    if not _BUCKET_RE.match(bucket) or ".." in bucket or bucket.endswith("-s3alias"):
        raise DeployError(
            "bucket {!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '-' and '.')".format(bucket)
        )
    return bucket


def check_function_name(name: str, require_deeplens_name: bool = True) -> str:
    if not name or not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
        raise DeployError("function name {!r}: 1-64 letters, digits, '-' or '_'".format(name))
    if require_deeplens_name and not name.startswith("deeplens"):
        raise DeployError(
            "function name {!r}: the DeepLens guide requires project functions to be named "
            "deeplens... (e.g. deeplens-fer-edge)".format(name)
        )
    return name


def find_aws() -> str:
    """The ``aws`` executable: beside this Python (the venv's awscli), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "aws")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which("aws")
    if not found:
        raise DeployError("the AWS CLI is not installed: pip install awscli (or install AWS CLI v2)")
    return found


class AwsCli(object):
    """Runs ``aws`` commands with a region, an optional endpoint and JSON output."""

    def __init__(
        self,
        region: str,
        endpoint_url: Optional[str] = None,
        aws: Optional[str] = None,
        log: Optional[Callable[[str], None]] = print,
    ):
        self.region = region
        self.endpoint_url = endpoint_url
        self.aws = aws or find_aws()
        self.log = log
        self.env = dict(os.environ, AWS_PAGER="")

    def command(self, args: Sequence[str]) -> List[str]:
        cmd = [self.aws] + list(args) + ["--region", self.region, "--output", "json"]
        if self.endpoint_url:
            cmd += ["--endpoint-url", self.endpoint_url]
        return cmd

    def run(self, args: Sequence[str], check: bool = True, quiet: bool = False) -> Tuple[int, Any, str]:
        """(returncode, parsed JSON or text, stderr text)."""
        cmd = self.command(args)
        if not quiet and self.log is not None:
            self.log("$ aws " + " ".join(args))
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=self.env, timeout=600
        )
        out = proc.stdout.strip()
        try:
            value = json.loads(out) if out else None
        except ValueError:
            value = out
        if check and proc.returncode != 0:
            raise DeployError(
                "`aws {}` failed (exit {}): {}".format(" ".join(args), proc.returncode, proc.stderr.strip() or out)
            )
        return proc.returncode, value, proc.stderr


def deeplens_role_arn(cli: AwsCli) -> str:
    """The ARN of the AWSDeepLensLambdaRole (created when a DeepLens is registered)."""
    rc, value, err = cli.run(["iam", "get-role", "--role-name", DEEPLENS_ROLE], check=False)
    if rc != 0 or not isinstance(value, dict):
        raise DeployError(
            "no role given and {} not found ({}): pass role_arn (--role), a role Lambda can "
            "assume; DeepLens device registration creates {}".format(DEEPLENS_ROLE, err.strip() or rc, DEEPLENS_ROLE)
        )
    return value["Role"]["Arn"]


def wait_ready(cli: AwsCli, function_name: str, timeout: float = 120.0, interval: float = 1.0) -> Dict[str, Any]:
    """Wait until the function is neither being created nor updated; DeployError if that failed."""
    deadline = time.time() + timeout
    while True:
        _, conf, _ = cli.run(["lambda", "get-function-configuration", "--function-name", function_name], quiet=True)
        state = conf.get("State") or "Active"
        update = conf.get("LastUpdateStatus") or "Successful"
        if state == "Failed" or update == "Failed":
            raise DeployError(
                "Lambda reports the function {} as failed: {}".format(
                    function_name, conf.get("StateReason") or conf.get("LastUpdateStatusReason")
                )
            )
        if state != "Pending" and update != "InProgress":
            return conf
        if time.time() > deadline:
            raise DeployError("function {} still {} / {} after {:.0f} s".format(function_name, state, update, timeout))
        time.sleep(interval)


CONSOLE_STEPS = """\
Next, in the AWS DeepLens console (only accounts that still have it; the service ended on 2024-01-31):
  1. Models > Import model > Externally trained model: model artifact path {s3_uri},
     a model name (e.g. fer-edge), framework TensorFlow.
  2. Projects > Create new project > Blank project: add the model from step 1 and the function
     {function_name} version {version} ({version_arn}).
  3. Deploy the project to your device; view the project stream (device page > View video stream,
     or on the device: mplayer -demuxer lavf -lavfdopts format=mjpeg:probesize=32 /tmp/results.mjpeg).
  4. Events, stats and status arrive on $aws/things/<your device's thing>/infer (AWS IoT console >
     MQTT test client; the device page shows the topic).
"""


def deploy(
    bucket: str,
    function_name: str,
    zip_path: str,
    model_artifact: str,
    region: str,
    role_arn: Optional[str] = None,
    endpoint_url: Optional[str] = None,
    runtime: str = DEFAULT_RUNTIME,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    environment: Optional[Mapping[str, str]] = None,
    aws: Optional[str] = None,
    require_deeplens_name: bool = True,
    timeout: float = 120.0,
    log: Optional[Callable[[str], None]] = print,
) -> Dict[str, Any]:
    """Upload the model and create/update + publish the Lambda (see the module doc); returns a dict."""
    check_bucket_name(bucket)
    check_function_name(function_name, require_deeplens_name)
    for what, path in (("Lambda zip", zip_path), ("model artifact", model_artifact)):
        if not path or not os.path.isfile(path):
            raise DeployError(
                "{} not found: {} (build both with fer_edge.bundles.deeplens.build_bundle / "
                "`fer-edge bundle deeplens`)".format(what, path)
            )
    if not str(model_artifact).endswith(".tar.gz"):
        raise DeployError(
            "{}: the DeepLens model artifact is the model.tar.gz from `fer-edge convert deeplens`".format(
                model_artifact
            )
        )
    cli = AwsCli(region, endpoint_url=endpoint_url, aws=aws, log=log)

    rc, _, _ = cli.run(["s3api", "head-bucket", "--bucket", bucket], check=False)
    if rc != 0:
        cli.run(["s3", "mb", "s3://" + bucket])
    key = "/".join(p for p in (key_prefix.strip("/"), os.path.basename(model_artifact)) if p)
    s3_uri = "s3://{}/{}".format(bucket, key)
    cli.run(["s3", "cp", model_artifact, s3_uri, "--only-show-errors"])

    zip_arg = "fileb://" + os.path.abspath(zip_path)
    rc, existing, err = cli.run(["lambda", "get-function", "--function-name", function_name], check=False)
    created = False
    if rc == 0:
        wait_ready(cli, function_name, timeout)
        cli.run(["lambda", "update-function-code", "--function-name", function_name, "--zip-file", zip_arg])
        if environment is not None:
            wait_ready(cli, function_name, timeout)
            cli.run(
                [
                    "lambda",
                    "update-function-configuration",
                    "--function-name",
                    function_name,
                    "--environment",
                    json.dumps({"Variables": dict(environment)}),
                ]
            )
    elif "ResourceNotFoundException" in err or "Function not found" in err:
        role = role_arn or deeplens_role_arn(cli)
        args = [
            "lambda",
            "create-function",
            "--function-name",
            function_name,
            "--runtime",
            runtime,
            "--role",
            role,
            "--handler",
            HANDLER,
            "--zip-file",
            zip_arg,
            "--timeout",
            "3",
            "--description",
            "fer-edge facial emotion recognition on AWS DeepLens",
        ]
        if environment is not None:
            args += ["--environment", json.dumps({"Variables": dict(environment)})]
        cli.run(args)
        created = True
    else:
        raise DeployError("`aws lambda get-function --function-name {}` failed: {}".format(function_name, err.strip()))
    wait_ready(cli, function_name, timeout)
    _, version, _ = cli.run(
        ["lambda", "publish-version", "--function-name", function_name, "--description", "fer-edge DeepLens bundle"]
    )
    version_arn = version["FunctionArn"]
    result = {
        "bucket": bucket,
        "s3_uri": s3_uri,
        "function_name": function_name,
        "function_arn": version_arn.rsplit(":", 1)[0] if version_arn.count(":") > 6 else version_arn,
        "version": str(version["Version"]),
        "version_arn": version_arn,
        "created": created,
    }
    if log is not None:
        log("model artifact: {}".format(s3_uri))
        log(
            "function {} {}: version {} ({})".format(
                function_name, "created" if created else "updated", result["version"], version_arn
            )
        )
        log(CONSOLE_STEPS.format(**result))
    return result
