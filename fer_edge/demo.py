"""`make demo`: the edge agent on built-in defaults.

1. a sample video generated from a face photograph that ships inside scikit-image
   (fer_edge/samples.py), written to data/samples/;
2. the shipped model (models/, ONNX through ONNX Runtime);
3. an MQTT broker started in-process (amqtt); `fer-edge run` prints every event it publishes to it;
4. the agent publishing an event per frame, and an annotated copy of the video under runs/demo/.
"""

import os
import sys

from edge.classifier import SHIPPED_MODEL

from .cli import main as cli_main
from .samples import make_sample_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    if not os.path.isfile(SHIPPED_MODEL):
        print("demo: the shipped model {} is missing from this checkout".format(SHIPPED_MODEL), file=sys.stderr)
        return 2
    video = os.path.join(REPO, "data", "samples", "astronaut-640x480.mp4")
    if not os.path.isfile(video):
        make_sample_video(video)
        print("demo: generated the sample video {}".format(video))
    out_dir = os.path.join(REPO, "runs", "demo")
    os.makedirs(out_dir, exist_ok=True)
    annotated = os.path.join(out_dir, "annotated.webm")  # VP8: browsers play it
    status = cli_main(
        [
            "run",
            "--source",
            video,
            "--device-id",
            "demo",
            "--publish",
            "every-frame",
            "--annotate",
            annotated,
            "--stats-interval",
            "5",
        ]
    )
    if status == 0:
        print("demo: annotated video written to {}".format(annotated))
    return status


if __name__ == "__main__":
    sys.exit(main())
