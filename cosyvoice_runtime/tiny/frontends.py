"""The ONNX frontends of a built model: speaker embedding (campplus.onnx) and speech tokenizer
(speech_tokenizer_v{1,2}.onnx), small fixed graphs with the released models' inputs and outputs.

The only module that imports ``onnx`` (the ``onnx`` extra); loading a model needs only onnxruntime.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import CosyVoiceError

ONNX_HINT = "pip install 'pytest-cosyvoice[onnx]'"


class MissingExtra(CosyVoiceError, ImportError):
    """An optional dependency the builder needs is not installed; the message says how to install it.

    A CosyVoiceError so that callers that report model errors (the plugin, ``cosyvoice-runtime synth``)
    show it as one line; an ImportError because that is what it is.
    """


def require_onnx() -> ModuleType:
    """The ``onnx`` module, or MissingExtra naming the package and the install command."""
    try:
        import onnx
    except ImportError as e:
        raise MissingExtra(
            f"building a random-weight CosyVoice model (the embedded default model) needs the Python package "
            f"'onnx', which is not installed: {ONNX_HINT}, or use a model directory of your own",
            name="onnx") from e
    return onnx


def _save(graph: Any, path: Path) -> None:
    onnx = require_onnx()
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_campplus(path: Path, seed: int) -> None:
    """input [B,T,80] fbank -> output [B,192]: per-bin RMS over time, then a fixed projection.

    RMS rather than the mean because upstream mean-normalises the fbank, so its time mean is ~0.
    """
    import numpy as np

    onnx = require_onnx()
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    w = (np.random.default_rng(seed).standard_normal((80, 192)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "input"], ["sq"]),
         helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=0),
         helper.make_node("Add", ["ms", "eps"], ["ms_eps"]),
         helper.make_node("Sqrt", ["ms_eps"], ["rms"]),
         helper.make_node("MatMul", ["rms", "w"], ["output"])],
        "campplus_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", "T", 80])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 192])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(1e-6, np.float32), "eps")])
    _save(graph, path)


def write_speech_tokenizer(path: Path, seed: int, stride: int, vocab: int) -> None:
    """feats [1,128,T] log-mel + feats_length int32 [1] -> indices int32 [1, T // stride] in [0, vocab).

    Each token hashes the projection of its `stride` frames (100 Hz mel -> 25 Hz for v2, 50 Hz for v1),
    so the tokens are a fixed function of the mel; strided Slices keep exactly T // stride tokens, also
    zero for T < stride.
    """
    import numpy as np

    onnx = require_onnx()
    helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    w = np.random.default_rng(seed + 1).standard_normal((128, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["feats"], ["ft"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ft", "w"], ["proj3"]),
        helper.make_node("Squeeze", ["proj3", "axis2"], ["proj"]),  # [1, T]
        helper.make_node("Shape", ["feats"], ["shape"]),
        helper.make_node("Gather", ["shape", "idx2"], ["t"]),  # [1] int64
        helper.make_node("Div", ["t", "stride"], ["n"]),
        helper.make_node("Mul", ["n", "stride"], ["end"]),
    ]
    parts = []
    for j in range(stride):
        nodes.append(helper.make_node("Constant", [], [f"start{j}"],
                                      value=numpy_helper.from_array(np.array([j], np.int64))))
        nodes.append(helper.make_node("Slice", ["proj", f"start{j}", "end", "axis1", "stride"], [f"part{j}"]))
        parts.append(f"part{j}")
    nodes += [
        helper.make_node("Sum", parts, ["y"]),
        helper.make_node("Mul", ["y", "k"], ["y2"]),
        helper.make_node("Abs", ["y2"], ["y3"]),
        helper.make_node("Mod", ["y3", "v"], ["y4"], fmod=1),
        helper.make_node("Floor", ["y4"], ["y5"]),
        helper.make_node("Cast", ["y5"], ["indices"], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes, "speech_tokenizer_tiny",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "T"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("indices", TensorProto.INT32, [1, "N"])],
        [numpy_helper.from_array(w, "w"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2"),
         numpy_helper.from_array(np.array([2], np.int64), "idx2"),
         numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         numpy_helper.from_array(np.array([stride], np.int64), "stride"),
         numpy_helper.from_array(np.array(997.0, np.float32), "k"),
         numpy_helper.from_array(np.array(float(vocab), np.float32), "v")])
    _save(graph, path)
