"""fer-edge on NVIDIA Jetson (device code, Python 3.6+; see docs/jetson.md).

``trt_backend``: the TensorRT backend (``TensorRTBackend``) and ``ensure_engine``; ``camera``:
``check_camera``; ``agent``: ``python3 -m jetson``; ``bundle`` (host side): ``build_bundle``.
Nothing is imported here, so ``import jetson`` needs neither TensorRT nor pycuda.
"""
