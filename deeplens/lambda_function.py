"""fer-edge on AWS DeepLens: the Lambda function (handler ``lambda_function.function_handler``).

DeepLens runs project Lambdas on its Greengrass (v1) core as long-lived functions: the module is
imported once when the project is deployed and must keep working on its own; the handler is
never what does the work. As in AWS's DeepLens samples, the inference loop starts at import:
here in a thread (``deeplens.lambda_agent.start_in_thread``), so the import returns and the
Greengrass runtime can finish starting the function. Set ``FER_EDGE_LAMBDA_AUTOSTART=0`` to import
the module without starting anything (tests, a Python shell on the device).

In the Lambda zip (``fer_edge.bundles.deeplens``) this file sits at the root, beside ``edge/``,
``deeplens/`` and ``greengrasssdk/``. Everything else lives in ``deeplens.lambda_agent``.
Python 3.6/3.7 compatible (device code).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_HERE, "edge")) and _HERE not in sys.path:  # the zip root
    sys.path.insert(0, _HERE)

from deeplens import device  # noqa: E402  (stdlib only)

device.preload()  # awscam before anything imports cv2, as AWS's DeepLens guide asks

from deeplens import lambda_agent  # noqa: E402

thread = None


def function_handler(event, context):
    """Greengrass calls this for messages routed to the function; the agent runs on its own."""
    return


def start(env=None, stop=None, **parts):
    """Start the agent thread (once); returns it."""
    global thread
    if thread is None or not thread.is_alive():
        thread = lambda_agent.start_in_thread(env, stop=stop, **parts)
    return thread


if lambda_agent.autostart(os.environ):
    start()
