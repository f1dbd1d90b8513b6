"""fer-edge convert: SavedModel (train.export) -> ONNX, OpenVINO IR, DeepLens frozen graph, TensorRT.

``convert.formats`` holds the table of formats; each converter module is imported lazily through
``convert.formats.converter(name)`` so that importing this package needs no TensorFlow.
See docs/convert.md.
"""
