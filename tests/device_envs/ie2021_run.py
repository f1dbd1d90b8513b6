"""Run an OpenVINO IR with the 2021.4 Inference Engine as the DeepLens runs it:
``python ie2021_run.py MODEL.xml IN.npz OUT.npz [DEVICE]``.

One image per call, in f32 arithmetic, as ``awscam``'s ``doInference`` takes it: an H x W x C array, transposed to the
IR's N x C x H x W input. ``IN.npz``: ``views`` float32 [V, N, H, W, C]. ``OUT.npz``: ``outputs``
[V, N, K], ``input_shape`` and ``output_shape`` (the IR's, static), ``layers`` (the IR's layer types).
Runs under tests/device_envs/py37-mo2021 (Python 3.7, openvino 2021.4.2).
"""

import sys

import numpy as np
from openvino.inference_engine import IECore, get_version


def main(xml_path, in_path, out_path, device="CPU"):
    views = np.load(in_path)["views"]
    core = IECore()
    net = core.read_network(model=xml_path, weights=xml_path[:-4] + ".bin")
    ((input_name, info),) = net.input_info.items()
    ((output_name, out_data),) = net.outputs.items()
    input_shape = list(info.input_data.shape)
    # f32 arithmetic: on CPUs with AVX512_BF16 the 2021.4 CPU plugin would otherwise run in bf16
    # (about 5e-3 off); the DeepLens's Atom has no bf16, so this is what the device computes
    config = {"ENFORCE_BF16": "NO"} if device == "CPU" else {}
    executable = core.load_network(net, device, config)
    outputs = np.empty(views.shape[:2] + (int(np.prod(out_data.shape[1:])),), np.float32)
    for v, view in enumerate(views):
        for i, image in enumerate(view):
            x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
            outputs[v, i] = executable.infer({input_name: x})[output_name].reshape(-1)
    layers = sorted(set(layer.type for layer in net.layers.values())) if hasattr(net, "layers") else []
    np.savez(
        out_path,
        outputs=outputs,
        input_shape=np.array(input_shape),
        output_shape=np.array(out_data.shape),
        layers=np.array(layers),
    )
    print(
        "inference engine {} on {}: input {} {}, output {} {}, {} views of {} faces".format(
            get_version(),
            device,
            input_name,
            input_shape,
            output_name,
            list(out_data.shape),
            len(views),
            views.shape[1],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
