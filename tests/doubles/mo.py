"""TEST DOUBLE of the AWS DeepLens model optimizer module ``mo`` (the real one exists only on the device).

``optimize(model_name, input_width, input_height, platform='mxNet', aux_inputs=None)`` ->
``(error, model_path)``, like the device's: for ``platform='tf'`` it reads
``<--models-dir>/<model_name>.pb`` (default folder: ``ARTIFACTS_DIR``) and converts it with the
real OpenVINO converter (``openvino.convert_model`` on the frozen GraphDef) into an IR with an
NCHW input, FP16 weights (FP32 with ``aux_inputs['--precision'] == 'FP32'``), saved as
``<--output-dir>/tf_<model_name>_<precision>_FUSED.xml``. The input
shape is ``[1, input_height, input_width, --img-channels]`` with 3 channels unless
``aux_inputs['--img-channels']`` says otherwise: an assumption about the real optimizer
(docs/deeplens.md), so a gray model converts only when the caller passes 1, as the Lambda does.
Error codes: 1 unsupported platform, 2 conversion failed. Calls are recorded in ``calls``.
"""

import os

ARTIFACTS_DIR = "/opt/awscam/artifacts"
calls = []


def optimize(model_name, input_width, input_height, platform="mxNet", aux_inputs=None):
    aux = dict(aux_inputs or {})
    calls.append({"model_name": model_name, "width": input_width, "height": input_height, "platform": platform,
                  "aux_inputs": aux})
    if platform != "tf":
        return 1, ""
    models_dir = aux.get("--models-dir", ARTIFACTS_DIR)
    output_dir = aux.get("--output-dir", models_dir)
    channels = int(aux.get("--img-channels", 3))
    precision = str(aux.get("--precision", "FP16"))
    if precision not in ("FP16", "FP32"):
        return 2, ""
    pb = os.path.join(models_dir, model_name + ".pb")
    if not os.path.isfile(pb):
        return 2, ""
    try:
        import openvino as ov
        model = ov.convert_model(pb, input=[1, int(input_height), int(input_width), channels])
        ppp = ov.preprocess.PrePostProcessor(model)
        ppp.input().tensor().set_layout(ov.Layout("NCHW"))
        ppp.input().model().set_layout(ov.Layout("NHWC"))
        model = ppp.build()
        xml = os.path.join(output_dir, "tf_{}_{}_FUSED.xml".format(model_name, precision))
        ov.save_model(model, xml, compress_to_fp16=precision == "FP16")
    except Exception as exc:  # the device's optimizer reports failures as error 2
        calls[-1]["error"] = "{}: {}".format(type(exc).__name__, exc)
        return 2, ""
    return 0, xml
