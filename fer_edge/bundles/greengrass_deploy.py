"""Publish the Greengrass V2 component with the AWS CLI, and optionally deploy it (host side).

    deploy("dist/greengrass/com.feredge.EmotionAgent-0.1.0.yaml", bucket="my-greengrass-artifacts",
           region="eu-west-1", thing_group="door-cams",
           configuration={"Agent": {"broker": "mqtts://...-ats.iot.eu-west-1.amazonaws.com:8883", ...}})

``fer-edge deploy greengrass --recipe FILE --bucket B [--thing NAME | --thing-group NAME]`` runs it.
Steps, each one ``aws`` command (the venv's awscli, or any ``aws`` on PATH; credentials, profile and
endpoints as the CLI finds them, e.g. ``AWS_ENDPOINT_URL_GREENGRASSV2``):

1. read and check the recipe (``fer_edge.bundles.greengrass_recipe.load_recipe``) and ``configuration``
   (the deployment's merge update, checked like the component's own: ``edge.greengrass.component``);
   find every artifact the recipe names beside it (or in ``artifacts_dir``); with ``thing`` or
   ``thing_group``: ``aws iot describe-thing``/``describe-thing-group`` (the target's ARN; a target
   that does not exist stops the deploy before anything is uploaded);
2. ``aws s3api head-bucket``, ``aws s3 mb`` when the bucket is missing; ``aws s3 cp`` each archive
   to ``s3://<bucket>/<key_prefix>/<component>/<version>/<file>``;
3. the recipe with those URIs (whatever bucket the file named) goes to ``aws greengrassv2
   create-component-version --inline-recipe fileb://...`` as JSON; an existing version is an error
   (Greengrass component versions cannot change: bump the version);
4. ``aws greengrassv2 describe-component`` until the version is ``DEPLOYABLE`` (``FAILED``: the
   service's message and errors are passed on);
5. with a target: ``aws greengrassv2 list-deployments --history-filter LATEST_ONLY`` and
   ``get-deployment`` (the target's current components: a deployment replaces the target's whole
   component set, so the others are kept), then ``create-deployment`` with this component version, ``configuration`` as its merge update and ``posix_user`` (``user[:group]``,
   e.g. ``ggc_user:video`` on a Jetson) as the user it runs as (the previous one is kept otherwise).

Returns ``{"component_arn", "component_name", "component_version", "s3_uris", "deployment_id",
"target_arn", "kept_components"}``. A failing command raises DeployError with the command and the
CLI's message. Nothing here has run against the real AWS: tests run it against moto's server (S3,
IoT) and a recorded stand-in for the Greengrass V2 API (docs/greengrass.md).
"""

import argparse
import json
import os
import tempfile
import time
from typing import Any, Callable, Sequence

from edge.config.agent import ConfigError
from fer_edge.bundles.deeplens_deploy import AwsCli, DeployError

from .greengrass_recipe import DEFAULT_KEY_PREFIX, BundleError, artifact_uri, check_bucket, load_recipe

READY_STATES = ("DEPLOYABLE",)
FAILED_STATES = ("FAILED", "DEPRECATED")


def _basename(uri):
    return uri.rstrip("/").rsplit("/", 1)[-1]


def recipe_artifacts(recipe: dict[str, Any]) -> list[tuple[int, int, str]]:
    """[(manifest index, artifact index, file name)] of every artifact the recipe names."""
    out = []
    for i, item in enumerate(recipe["Manifests"]):
        for j, artifact in enumerate(item.get("Artifacts", [])):
            out.append((i, j, _basename(artifact["URI"])))
    return out


def check_configuration(configuration: dict[str, Any] | str) -> str:
    """The deployment's merge update, checked (a dict or JSON text); returns the JSON text to send."""
    from edge.greengrass.component import check_component_configuration

    if isinstance(configuration, str):
        try:
            configuration = json.loads(configuration)
        except ValueError as exc:
            raise DeployError("deployment configuration: not JSON ({})".format(exc)) from exc
    try:
        check_component_configuration(configuration, "deployment configuration (merge)")
    except ConfigError as exc:
        raise DeployError(str(exc)) from exc
    return json.dumps(configuration, sort_keys=True)


def wait_deployable(cli: AwsCli, arn: str, timeout: float = 120.0, interval: float = 1.0) -> dict[str, Any]:
    """describe-component until the version is DEPLOYABLE; DeployError when it failed or took too long."""
    deadline = time.time() + timeout
    while True:
        _, info, _ = cli.run(["greengrassv2", "describe-component", "--arn", arn], quiet=True)
        status = (info or {}).get("status") or {}
        state = status.get("componentState")
        if state in READY_STATES:
            return info
        if state in FAILED_STATES:
            raise DeployError(
                "Greengrass reports component {} as {}: {} {}".format(
                    arn, state, status.get("message") or "", json.dumps(status.get("errors") or {}, sort_keys=True)
                )
            )
        if time.time() > deadline:
            raise DeployError("component {} still {} after {:.0f} s".format(arn, state, timeout))
        time.sleep(interval)


def target_arn(cli: AwsCli, thing: str | None = None, thing_group: str | None = None) -> str:
    """The ARN of the deployment target (a thing, i.e. one core device, or a thing group)."""
    if thing and not thing_group:
        rc, value, err = cli.run(["iot", "describe-thing", "--thing-name", thing], check=False)
        key = "thingArn"
    elif thing_group and not thing:
        rc, value, err = cli.run(["iot", "describe-thing-group", "--thing-group-name", thing_group], check=False)
        key = "thingGroupArn"
    else:
        raise DeployError("give one deployment target: a thing (a core device) or a thing group")
    if rc != 0 or not isinstance(value, dict) or key not in value:
        raise DeployError(
            "{} {!r} not found in AWS IoT ({}): a Greengrass core device is registered as an IoT thing "
            "when the nucleus is installed with --provision true".format(
                "thing" if thing else "thing group", thing or thing_group, err.strip() or rc
            )
        )
    return value[key]


def current_deployment(cli: AwsCli, arn: str) -> dict[str, Any] | None:
    """The latest deployment of a target (get-deployment's answer), or None."""
    _, listed, _ = cli.run(["greengrassv2", "list-deployments", "--target-arn", arn, "--history-filter", "LATEST_ONLY"])
    deployments = [d for d in (listed or {}).get("deployments", []) if d.get("isLatestForTarget", True)]
    if not deployments:
        return None
    _, current, _ = cli.run(["greengrassv2", "get-deployment", "--deployment-id", deployments[0]["deploymentId"]])
    return current


class GreengrassCli(AwsCli):
    """``AwsCli`` with an endpoint of its own for the greengrassv2 commands (tests: the stand-in)."""

    def __init__(
        self,
        region: str,
        endpoint_url: str | None = None,
        greengrass_endpoint_url: str | None = None,
        aws: str | None = None,
        log: Callable[[str], None] | None = print,
    ):
        AwsCli.__init__(self, region, endpoint_url=endpoint_url, aws=aws, log=log)
        self.greengrass_endpoint_url = greengrass_endpoint_url

    def command(self, args: Sequence[str]) -> list[str]:
        if self.greengrass_endpoint_url and args and args[0] == "greengrassv2":
            return (
                [self.aws]
                + list(args)
                + ["--region", self.region, "--output", "json", "--endpoint-url", self.greengrass_endpoint_url]
            )
        return AwsCli.command(self, args)


def deploy(
    recipe_path: str,
    bucket: str,
    region: str,
    artifacts_dir: str | None = None,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    thing: str | None = None,
    thing_group: str | None = None,
    configuration: dict[str, Any] | str | None = None,
    deployment_name: str | None = None,
    posix_user: str | None = None,
    endpoint_url: str | None = None,
    greengrass_endpoint_url: str | None = None,
    aws: str | None = None,
    timeout: float = 120.0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Upload, create the component version and optionally deploy it (see the module doc); returns a dict."""
    try:
        recipe = load_recipe(str(recipe_path))
        check_bucket(bucket)
    except (BundleError, OSError) as exc:
        raise DeployError(str(exc)) from exc
    if thing and thing_group:
        raise DeployError("give a thing or a thing group, not both")
    merge = check_configuration(configuration) if configuration is not None else None
    if merge is not None and not (thing or thing_group):
        raise DeployError("a deployment configuration needs a deployment target (a thing or a thing group)")
    name, version = recipe["ComponentName"], recipe["ComponentVersion"]
    folder = os.path.abspath(artifacts_dir or os.path.dirname(os.path.abspath(str(recipe_path))))
    uploads = []
    for i, j, file_name in recipe_artifacts(recipe):
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path):
            raise DeployError(
                "{}: artifact {} of Manifests[{}] not found in {} (build it with `fer-edge bundle "
                "greengrass`, or pass the folder holding it)".format(recipe_path, file_name, i, folder)
            )
        uri = artifact_uri(bucket, key_prefix, name, version, file_name)
        recipe["Manifests"][i]["Artifacts"][j]["URI"] = uri
        uploads.append((path, uri))
    cli = GreengrassCli(
        region, endpoint_url=endpoint_url, greengrass_endpoint_url=greengrass_endpoint_url, aws=aws, log=log
    )
    target = target_arn(cli, thing, thing_group) if (thing or thing_group) else None  # before anything is created

    rc, _, _ = cli.run(["s3api", "head-bucket", "--bucket", bucket], check=False)
    if rc != 0:
        cli.run(["s3", "mb", "s3://" + bucket])
    for path, uri in sorted(set(uploads)):
        cli.run(["s3", "cp", path, uri, "--only-show-errors"])

    fd, inline = tempfile.mkstemp(prefix=".recipe-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(recipe, handle, indent=2)
        rc, created, err = cli.run(
            ["greengrassv2", "create-component-version", "--inline-recipe", "fileb://" + inline], check=False
        )
    finally:
        os.remove(inline)
    if rc != 0:
        if "ConflictException" in err:
            raise DeployError(
                "component {} version {} already exists in Greengrass, and a version cannot be changed: "
                "build a new version (`fer-edge bundle greengrass --version X.Y.Z`); the CLI said: "
                "{}".format(name, version, err.strip())
            )
        raise DeployError("`aws greengrassv2 create-component-version` failed (exit {}): {}".format(rc, err.strip()))
    arn = created["arn"]
    info = wait_deployable(cli, arn, timeout)
    result = {
        "component_arn": arn,
        "component_name": name,
        "component_version": version,
        "s3_uris": [uri for _, uri in uploads],
        "platforms": info.get("platforms", []),
        "deployment_id": None,
        "target_arn": None,
        "kept_components": [],
    }
    if log is not None:
        log("component {} {} is DEPLOYABLE ({})".format(name, version, arn))
    if target is None:  # neither --thing nor --thing-group
        if log is not None:
            log(
                "no deployment target given: deploy it with --thing CORE_DEVICE or --thing-group GROUP, or in the "
                "Greengrass console (Components > {} > Deploy)".format(name)
            )
        return result

    current = current_deployment(cli, target)
    components = dict((current or {}).get("components") or {})
    kept = sorted(c for c in components if c != name)
    spec = {"componentVersion": version}
    previous_run_with = (components.get(name) or {}).get("runWith")
    if posix_user:
        spec["runWith"] = {"posixUser": posix_user}
    elif previous_run_with:
        spec["runWith"] = previous_run_with  # e.g. a user in the video group on a Jetson, set before
    if merge is not None:
        spec["configurationUpdate"] = {"merge": merge}
    components[name] = spec
    args = [
        "greengrassv2",
        "create-deployment",
        "--target-arn",
        target,
        "--deployment-name",
        deployment_name or "fer-edge {} {}".format(name, version),
        "--components",
        json.dumps(components, sort_keys=True),
    ]
    for key, flag in (
        ("deploymentPolicies", "--deployment-policies"),
        ("iotJobConfiguration", "--iot-job-configuration"),
    ):
        if current and current.get(key):
            args += [flag, json.dumps(current[key], sort_keys=True)]
    _, deployment, _ = cli.run(args)
    result.update(deployment_id=deployment["deploymentId"], target_arn=target, kept_components=kept)
    if log is not None:
        log(
            "deployment {} to {}: {} {}{}".format(
                deployment["deploymentId"],
                target,
                name,
                version,
                "; kept the target's other components: " + ", ".join(kept) if kept else "",
            )
        )
        log(
            "follow it: aws greengrassv2 get-deployment --deployment-id {} (or list-effective-deployments "
            "--core-device-thing-name <core>); on the core: sudo tail -f /greengrass/v2/logs/{}.log".format(
                deployment["deploymentId"], name
            )
        )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fer-edge deploy greengrass`` (``--bucket``, ``--region`` and ``--endpoint-url``
    are shared with ``deploy deeplens``)."""
    group = parser.add_argument_group("greengrass")
    group.add_argument("--recipe", help="greengrass: the recipe from `fer-edge bundle greengrass` (.yaml or .json)")
    group.add_argument(
        "--artifacts-dir", dest="artifacts_dir", help="greengrass: folder holding the archives (default: the recipe's)"
    )
    group.add_argument(
        "--key-prefix",
        dest="key_prefix",
        default=DEFAULT_KEY_PREFIX,
        help="greengrass: S3 key prefix (default: %(default)s)",
    )
    target = group.add_mutually_exclusive_group()
    target.add_argument("--thing", help="greengrass: deploy to this core device (its IoT thing name)")
    target.add_argument("--thing-group", dest="thing_group", help="greengrass: deploy to this thing group")
    group.add_argument(
        "--configuration",
        help='greengrass: the deployment\'s merge update, a JSON file or JSON text: {"Agent": {...}, "Python": ...}',
    )
    group.add_argument("--deployment-name", dest="deployment_name")
    group.add_argument(
        "--posix-user",
        dest="posix_user",
        help="greengrass: user[:group] the component runs as (e.g. ggc_user:video on a Jetson)",
    )
    group.add_argument(
        "--greengrass-endpoint-url",
        dest="greengrass_endpoint_url",
        help="greengrass: a local endpoint for the greengrassv2 calls only (tests)",
    )


def run_command(args: argparse.Namespace) -> int:
    """``fer-edge deploy greengrass``: prints the result as JSON."""
    if not args.recipe:
        raise DeployError(
            "fer-edge deploy greengrass: --recipe is required (the recipe from `fer-edge bundle greengrass`)"
        )
    configuration = args.configuration
    if configuration is not None and os.path.isfile(configuration):
        with open(configuration, "r", encoding="utf-8") as handle:
            configuration = handle.read()
    result = deploy(
        args.recipe,
        args.bucket,
        args.region,
        artifacts_dir=args.artifacts_dir,
        key_prefix=args.key_prefix,
        thing=args.thing,
        thing_group=args.thing_group,
        configuration=configuration,
        deployment_name=args.deployment_name,
        posix_user=args.posix_user,
        endpoint_url=args.endpoint_url,
        greengrass_endpoint_url=args.greengrass_endpoint_url,
    )
    print(json.dumps(result, indent=2))
    return 0
