"""`make demo` until the edge agent lands: a short train + evaluate + export on FER+ data.

Uses ferplus-trainval.tar.gz from $FER_EDGE_DATA (default ../shared/data), builds the cache once,
trains the compact model for one epoch on a subset, evaluates it on FER2013Valid (majority
protocol, confusion matrix PNG) and exports it as a SavedModel with metadata, all under runs/demo/.
The shipped model in models/ (when present) is evaluated beside it.
"""

import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "models", "fer-edge-vgg13bn-48", "saved_model")


def main():
    data_dir = os.environ.get("FER_EDGE_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
    tarball = os.path.join(data_dir, "ferplus-trainval.tar.gz")
    cache = os.path.join(REPO, "data", "ferplus.npz")
    if not os.path.isfile(cache) and not os.path.isfile(tarball):
        print("demo: FER+ data not found at {} (set FER_EDGE_DATA to the folder holding "
              "ferplus-trainval.tar.gz, or see README 'Data')".format(tarball), file=sys.stderr)
        return 2
    from train.config import TrainConfig
    from train.dataset import read_source, save_cache
    from train.evaluate import evaluate
    from train.export import export_savedmodel
    from train.trainer import train

    if not os.path.isfile(cache):
        print("demo: building the dataset cache {} from {}".format(cache, tarball))
        save_cache(read_source(tarball), cache)
    run = os.path.join(REPO, "runs", "demo")
    shutil.rmtree(run, ignore_errors=True)
    print("demo: training vgg13-bn-half for 1 epoch on 4000 FER+ training faces (a smoke run, not the shipped model)")
    train(TrainConfig(data=cache, run_dir=run, epochs=1, limit_train=4000, verbose=2))
    report = evaluate(run, cache, "FER2013Valid", out_dir=os.path.join(run, "eval"))
    print(report["text"])
    saved = export_savedmodel(run, os.path.join(run, "saved_model"), force=True)
    print("demo: exported {}; confusion matrix at {}".format(saved, report["confusion_matrix_png"]))
    if os.path.isdir(SHIPPED):
        shipped = evaluate(SHIPPED, cache, "FER2013Valid", out_dir=os.path.join(run, "shipped_eval"))
        print(shipped["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
