"""ONNX operators the ONNX parser of TensorRT 8.2 (JetPack 4.6) imports natively.

Source: onnx-tensorrt, branch release/8.2-GA, docs/operators.md ("TensorRT 8.2 supports operators
up to Opset 13"), https://github.com/onnx/onnx-tensorrt/blob/release/8.2-GA/docs/operators.md

How this list was made: the 8.2-GA copy of operators.md could not be read in full from here, so
the list is the support matrix of the next release (release/8.4-GA docs/operators.md, rows marked
"Y") minus what docs/Changelog.md records as added after 8.2 ("TensorRT 8.4 GA: Added support for
Shrink, Xor"), and cross-checked against the 8.2 EA changelog entry (Einsum, IsNaN, GatherND,
Scatter, ScatterElements, ScatterND, Sign, Round added in 8.2). To stay on the safe side it also
leaves out NonMaxSuppression (marked experimental) and RandomUniform/RandomUniformLike (listed by
the 8.4 matrix, but the 8.5 changelog says they were added there). A model that passes this check
still has to satisfy the per-operator restrictions of the matrix (e.g. Conv weights must be
initializers), which the TensorRT parser reports itself when the engine is built.

Python 3.6 compatible: the Jetson checks a model with it before TensorRT parses it
(:mod:`jetson.onnx_ops`); the host's conversions use it through :mod:`convert.trt_ops`.
"""

from typing import Any, Container, Iterable, List, Optional, Tuple

TENSORRT_VERSION = "8.2"
MAX_OPSET = 13
SOURCE = "https://github.com/onnx/onnx-tensorrt/blob/release/8.2-GA/docs/operators.md"

SUPPORTED_OPS = frozenset(
    """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
BatchNormalization Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min Mul Neg
Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear Range ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum
Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where
""".split()
)

# ONNX domains whose operators the parser imports natively ("" is the default ai.onnx domain).
ONNX_DOMAINS = ("", "ai.onnx")


def unsupported_nodes(nodes: Iterable[Any], supported: Optional[Container[str]] = None) -> List[Tuple[str, str]]:
    """(op_type, node name) of every node the TensorRT 8.2 parser cannot import natively.

    ``nodes``: ONNX NodeProtos (or anything with ``op_type``, ``domain`` and ``name``), including
    the nodes of subgraphs when the caller walks them.
    """
    supported = SUPPORTED_OPS if supported is None else supported
    bad = []
    for node in nodes:
        if node.domain not in ONNX_DOMAINS or node.op_type not in supported:
            op = node.op_type if node.domain in ONNX_DOMAINS else "{}:{}".format(node.domain, node.op_type)
            bad.append((op, node.name))
    return bad
