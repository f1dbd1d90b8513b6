"""Compatibility shim: ``python3 <artifact>/edge/greengrass_check.py TARGET`` (recipes of components
built before the check moved) runs ``edge/greengrass/check.py`` by path, as new recipes do.
Standard library only, like the check itself."""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "greengrass", "check.py"), run_name="__main__"
    )
