"""TEST DOUBLE of ``greengrass_ipc_python_sdk.ipc_client``: the client a Greengrass v1 Lambda uses
to hand work to its core, speaking the same HTTP protocol as the runtime's client
(``POST http://<endpoint>:$GG_DAEMON_PORT/2016-11-01/functions/<function arn>`` with the
``X-Amz-Client-Context``, ``Authorization`` and ``X-Amz-Invocation-Type`` headers; the invocation
id comes back in ``X-Amz-InvocationId``). Only what ``greengrasssdk`` calls to publish and invoke
is here; the test runs a recording HTTP server in place of the core.
"""

import collections
import functools

from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from greengrass_common.env_vars import AUTH_TOKEN, GG_DAEMON_PORT

HEADER_INVOCATION_ID = "X-Amz-InvocationId"
HEADER_CLIENT_CONTEXT = "X-Amz-Client-Context"
HEADER_AUTH_TOKEN = "Authorization"
HEADER_INVOCATION_TYPE = "X-Amz-Invocation-Type"
HEADER_FUNCTION_ERR_TYPE = "X-Amz-Function-Error"
IPC_API_VERSION = "2016-11-01"
ROUTER_ARN = "arn:aws:lambda:::function:GGRouter"

GetWorkResultOutput = collections.namedtuple("GetWorkResultOutput", ["payload", "func_err"])


class IPCException(Exception):
    pass


def _wrap(func):
    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (HTTPError, URLError) as exc:
            raise IPCException(str(exc))
    return wrapped


class IPCClient(object):
    def __init__(self, endpoint="localhost", port=None):
        self.endpoint = endpoint
        self.port = int(GG_DAEMON_PORT)
        self.auth_token = AUTH_TOKEN

    def _url(self, function_arn):
        return "http://{}:{}/{}/functions/{}".format(self.endpoint, self.port, IPC_API_VERSION, function_arn)

    @_wrap
    def post_work(self, function_arn, payload, client_context, invocation_type="RequestResponse"):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if isinstance(client_context, bytes):
            client_context = client_context.decode("ascii")
        request = Request(self._url(function_arn), payload or b"")
        request.add_header(HEADER_CLIENT_CONTEXT, client_context)
        request.add_header(HEADER_AUTH_TOKEN, self.auth_token or "")
        request.add_header(HEADER_INVOCATION_TYPE, invocation_type)
        response = urlopen(request, timeout=10)
        return response.info().get(HEADER_INVOCATION_ID)

    @_wrap
    def get_work_result(self, function_arn, invocation_id):
        if function_arn == ROUTER_ARN:
            return GetWorkResultOutput(payload="", func_err="")
        request = Request(self._url(function_arn))
        request.add_header(HEADER_INVOCATION_ID, invocation_id)
        request.add_header(HEADER_AUTH_TOKEN, self.auth_token or "")
        response = urlopen(request, timeout=10)
        return GetWorkResultOutput(payload=response.read(), func_err=response.info().get(HEADER_FUNCTION_ERR_TYPE))
