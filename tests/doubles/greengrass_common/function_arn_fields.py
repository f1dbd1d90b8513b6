"""TEST DOUBLE of ``greengrass_common.function_arn_fields`` (only Lambda.Client.invoke uses it)."""


class FunctionArnFields(object):
    def __init__(self, function_arn):
        parts = function_arn.split(":")
        if len(parts) < 7 or parts[0] != "arn" or parts[5] != "function":
            raise ValueError("not a function ARN: {}".format(function_arn))
        self.unqualified_arn = ":".join(parts[:7])
        self.qualifier = parts[7] if len(parts) > 7 else ""

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        return unqualified_arn + (":" + qualifier if qualifier else "")
