"""Run a frozen GraphDef in an old TensorFlow (1.x) Session: ``python tf14_run.py GRAPH.pb IN.npz OUT.npz``.

``IN.npz``: ``views`` float32 [V, N, H, W, C] (the arrays the device runs, from
``deeplens.awscam_backend.device_views``), ``input``/``output`` (node names). ``OUT.npz``: ``outputs``
[V, N, K] and ``version`` (TensorFlow's). Prints the TensorFlow and numpy versions. Runs under
tests/device_envs/py36-tf14 (Python 3.6, TensorFlow 1.4); reads only its arguments.
"""

import sys

import numpy as np
import tensorflow as tf


def main(pb_path, in_path, out_path):
    data = np.load(in_path)
    graph_def = tf.GraphDef()
    with open(pb_path, "rb") as handle:
        graph_def.ParseFromString(handle.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    feed, fetch = str(data["input"]) + ":0", str(data["output"]) + ":0"
    with tf.Session(graph=graph) as session:
        outputs = np.stack([session.run(fetch, {feed: view}) for view in data["views"]])
    np.savez(out_path, outputs=outputs, version=tf.__version__)
    print(
        "tensorflow {} numpy {} python {}: {} views of {} faces".format(
            tf.__version__, np.__version__, sys.version.split()[0], len(outputs), outputs.shape[1]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
