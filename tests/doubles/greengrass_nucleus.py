"""A stand-in for the parts of the AWS IoT Greengrass V2 nucleus that run one component (test double).

The nucleus is a Java service that exists only on a core device; this double does, on the test
host, the steps of it that decide whether a component recipe and its artifact work, and nothing
else:

* picks the recipe's first manifest whose ``Platform`` matches the device (os, architecture; a
  manifest without a platform matches any), as the nucleus does;
* resolves the component configuration: the recipe's ``DefaultConfiguration`` with a deployment's
  ``merge`` merged in (objects key by key, other values replaced; ``reset`` is not supported);
* fetches each artifact with the given ``fetch(uri, path)`` (tests download from moto's S3) into
  ``<root>/packages/artifacts/<name>/<version>/`` and, for ``Unarchive: ZIP``, unpacks it into
  ``<root>/packages/artifacts-unarchived/<name>/<version>/<archive name without .zip>/``;
* replaces the recipe variables in every lifecycle string the way the nucleus's
  ``KernelConfigResolver`` does: ``{artifacts:path}``, ``{artifacts:decompressedPath}``,
  ``{work:path}``, ``{kernel:rootPath}``, ``{iot:thingName}`` and ``{configuration:/json/pointer}``
  (a value as its text, an object or list as compact JSON with sorted keys; a missing value is left
  as it is);
* runs the ``Install`` then the ``Run`` step with ``sh -c`` in the work folder, with the
  environment the nucleus gives components (``AWS_IOT_THING_NAME``, ``AWS_REGION``,
  ``GG_ROOT_CA_PATH``, ``SVCUID``, the lifecycle's ``Setenv``), and stops ``Run`` with SIGTERM.

Lifecycle keys are matched without regard to case, as the nucleus's configuration store does. Not
done here: IPC, the token exchange service, users and permissions, dependencies, timeouts other than
Install's, restarts, deployments from the cloud.
"""

import json
import os
import re
import signal
import subprocess
import zipfile

VARIABLE = re.compile(r"\{([.\w]+):([^:}]+)\}")


def _get(mapping, key, default=None):
    for k, v in (mapping or {}).items():
        if k.lower() == key.lower():
            return v
    return default


def merge(base, update):
    out = dict(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def pointer(document, path):
    """RFC 6901 JSON pointer lookup; KeyError when missing."""
    node = document
    for part in path.lstrip("/").split("/") if path != "/" else [""]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(path)
    return node


def as_text(value):
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


class Component(object):
    def __init__(self, nucleus, name, version, manifest, configuration, artifacts_dir, unarchived_dir, work_dir):
        self.nucleus, self.name, self.version = nucleus, name, version
        self.manifest, self.configuration = manifest, configuration
        self.artifacts_dir, self.unarchived_dir, self.work_dir = artifacts_dir, unarchived_dir, work_dir
        self.lifecycle = self.interpolate(_get(manifest, "Lifecycle", {}))
        self.process = None
        self.log_path = os.path.join(nucleus.root, "logs", name + ".log")

    def interpolate(self, value):
        if isinstance(value, dict):
            return dict((k, self.interpolate(v)) for k, v in value.items())
        if not isinstance(value, str):
            return value
        system = {("artifacts", "path"): self.artifacts_dir, ("artifacts", "decompressedPath"): self.unarchived_dir,
                  ("work", "path"): self.work_dir, ("kernel", "rootPath"): self.nucleus.root,
                  ("iot", "thingName"): self.nucleus.thing_name}

        def replace(match):
            namespace, key = match.group(1), match.group(2)
            if namespace == "configuration":
                try:
                    return as_text(pointer(self.configuration, key))
                except (KeyError, IndexError, ValueError):
                    return match.group(0)
            return system.get((namespace, key), match.group(0))
        return VARIABLE.sub(replace, value)

    def environment(self, step=None):
        env = dict((k, os.environ[k]) for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if k in os.environ)
        env.update({"AWS_IOT_THING_NAME": self.nucleus.thing_name, "AWS_REGION": self.nucleus.region,
                    "AWS_DEFAULT_REGION": self.nucleus.region, "SVCUID": "stand-in-svcuid",
                    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": os.path.join(self.nucleus.root,
                                                                                        "ipc.socket")})
        if self.nucleus.root_ca:
            env["GG_ROOT_CA_PATH"] = self.nucleus.root_ca
        env.update(dict((k, str(v)) for k, v in (_get(self.lifecycle, "Setenv") or {}).items()))
        if isinstance(step, dict):
            env.update(dict((k, str(v)) for k, v in (_get(step, "Setenv") or {}).items()))
        return env

    def script(self, step_name):
        step = _get(self.lifecycle, step_name)
        if step is None:
            return None, None
        return (step if isinstance(step, str) else _get(step, "Script")), step

    def install(self):
        """Run the Install step; returns the CompletedProcess (stdout and stderr as text)."""
        command, step = self.script("Install")
        if command is None:
            return None
        timeout = float(_get(step, "Timeout", 120)) if isinstance(step, dict) else 120.0
        return subprocess.run(["sh", "-c", command], cwd=self.work_dir, env=self.environment(step),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)

    def start(self):
        """Start the Run step (output into ``log_path``); returns the Popen."""
        command, step = self.script("Run")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["sh", "-c", command], cwd=self.work_dir, env=self.environment(step),
                                        stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.process

    def wait(self, timeout):
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is not None:
                self._log.close()

    def stop(self, timeout=20.0):
        """SIGTERM, as the nucleus stops a component; SIGKILL after ``timeout``. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()
        return self.process.returncode

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""


class NucleusStandIn(object):
    def __init__(self, root, thing_name, region="us-east-1", platform=None, root_ca=None):
        self.root, self.thing_name, self.region, self.root_ca = str(root), thing_name, region, root_ca
        self.platform = platform or {"os": "linux", "architecture": "amd64"}

    def select_manifest(self, recipe):
        for item in recipe.get("Manifests") or []:
            wanted = _get(item, "Platform") or {}
            if all(self.platform.get(k) == v or v == "*" for k, v in wanted.items()):
                return item
        raise LookupError("no manifest of {} matches the platform {}".format(recipe.get("ComponentName"),
                                                                           self.platform))

    def deploy(self, recipe, fetch, merge_update=None):
        """Install the component's files and resolve its lifecycle; returns a :class:`Component`."""
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        item = self.select_manifest(recipe)
        defaults = _get(_get(recipe, "ComponentConfiguration", {}), "DefaultConfiguration", {}) or {}
        configuration = merge(defaults, merge_update)
        artifacts = os.path.join(self.root, "packages", "artifacts", name, version)
        unarchived = os.path.join(self.root, "packages", "artifacts-unarchived", name, version)
        work = os.path.join(self.root, "work", name)
        for folder in (artifacts, unarchived, work):
            os.makedirs(folder, exist_ok=True)
        for artifact in _get(item, "Artifacts") or []:
            uri = _get(artifact, "URI")
            path = os.path.join(artifacts, uri.rsplit("/", 1)[-1])
            fetch(uri, path)
            if str(_get(artifact, "Unarchive", "NONE")).upper() == "ZIP":
                stem = os.path.basename(path)[:-len(".zip")] if path.endswith(".zip") else os.path.basename(path)
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(os.path.join(unarchived, stem))
        return Component(self, name, version, item, configuration, artifacts, unarchived, work)
