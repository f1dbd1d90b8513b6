"""Copy tensorrt-stubs' packages (tensorrt, tensorrt_bindings) into a folder for MYPYPATH, fixing what
keeps mypy from reading them: a parameter named ``in`` (a keyword) and a non-default parameter
after default ones. Fails when the copy still does not parse (a new stubs release: look at it)."""

import ast
import os
import re
import shutil
import sys
import sysconfig


def main(out):
    site = sysconfig.get_paths()["purelib"]
    if os.path.isdir(out):
        shutil.rmtree(out)
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(os.path.join(site, package), os.path.join(out, package))
    path = os.path.join(out, "tensorrt_bindings", "tensorrt.pyi")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    text = re.sub(r"\bin: ", "in_: ", text)
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)")
    ast.parse(text, path)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print("tensorrt stubs for mypy in", out)


if __name__ == "__main__":
    main(sys.argv[1])
