"""Compatibility shim: ``python3 -m edge.greengrass_config`` (recipes of components built before
the module moved) runs :mod:`edge.greengrass.component`. New recipes call that module directly."""

import runpy

if __name__ == "__main__":
    runpy.run_module("edge.greengrass.component", run_name="__main__", alter_sys=True)
