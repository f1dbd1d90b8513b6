"""Where the shipped models are (Python 3.6, standard library): ``models/`` of a checkout, or the
copy an installed wheel carries as package data (``edge/models``: the ONNX and OpenVINO files only;
the SavedModels they were converted from stay in the repository)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def models_dir():
    """The folder holding the shipped models: the installed package's, else the checkout's."""
    installed = os.path.join(HERE, "models")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(HERE), "models")


MODELS_DIR = models_dir()
