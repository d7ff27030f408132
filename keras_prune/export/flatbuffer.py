"""Reads a `.tflite` flatbuffer into plain Python records: ops, tensors, sparse encodings, sizes.

Only the first subgraph is read (the one Keras models convert to). The schema is the one shipped
with `ai-edge-litert`, the runtime the exported files are checked on.
"""

import dataclasses
import gzip
import os

import numpy as np

_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


@dataclasses.dataclass
class TensorInfo:
    """One tensor of the model.

    Args:
        index: Tensor index in the subgraph.
        name: Tensor name given by the converter (it contains the Keras layer name).
        shape: Dense shape.
        dtype: Element type, lower case (`"float32"`, `"int8"`, ...).
        constant: Whether the tensor holds stored data (weights, biases, constants).
        data_bytes: Bytes of stored values (for sparse tensors: the kept values only).
        index_bytes: Bytes of the sparse index arrays (0 for dense tensors).
        encoding: `"dense"`, or the sparse format, e.g. `"sparse CSR, block 1x4"`.
        density: Fraction of non-zero values among all `prod(shape)` entries, for constants.
        quantization: `{"scale": [...], "zero_point": [...]}` for quantized tensors, else None.
    """

    index: int
    name: str
    shape: tuple
    dtype: str
    constant: bool
    data_bytes: int
    index_bytes: int
    encoding: str
    density: float | None
    quantization: dict | None

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def sparse(self):
        return self.encoding != "dense"

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class OpInfo:
    """One operator: its builtin name, tensor indices and parsed builtin options."""

    index: int
    name: str
    inputs: list
    outputs: list
    options: object

    def to_dict(self):
        return {
            "index": self.index,
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
        }


@dataclasses.dataclass
class ModelInfo:
    """What a `.tflite` file holds, as read by `read_model`.

    Args:
        file_bytes: Size of the file.
        gzip_bytes: Size after `gzip -9` (what an app store or OTA update ships).
        ops: `OpInfo` list in execution order.
        tensors: `TensorInfo` list, by tensor index.
        inputs: Input tensor indices.
        outputs: Output tensor indices.
        metadata_names: Names of the model's metadata entries.
    """

    file_bytes: int
    gzip_bytes: int
    ops: list
    tensors: list
    inputs: list
    outputs: list
    metadata_names: list
    constants: dict = dataclasses.field(default_factory=dict, repr=False)

    def values(self, tensor_index):
        """Stored values of a constant tensor (dense tensors in their shape; sparse ones flat)."""
        tensor = self.tensors[tensor_index]
        values = self.constants[tensor_index]
        return values if tensor.sparse else values.reshape(tensor.shape)

    @property
    def op_names(self):
        return [op.name for op in self.ops]

    def op_counts(self):
        counts = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts

    @property
    def sparse_tensors(self):
        return [tensor for tensor in self.tensors if tensor.sparse]

    def size_breakdown(self):
        """Bytes by kind: dense constants, sparse values, sparse indices, everything else."""
        dense = sum(t.data_bytes for t in self.tensors if t.constant and not t.sparse)
        sparse_values = sum(t.data_bytes for t in self.tensors if t.sparse)
        sparse_index = sum(t.index_bytes for t in self.tensors if t.sparse)
        return {
            "dense_constants": dense,
            "sparse_values": sparse_values,
            "sparse_indices": sparse_index,
            "graph_and_metadata": self.file_bytes - dense - sparse_values - sparse_index,
        }

    def producer(self, tensor_index):
        """The op writing `tensor_index`, or None for inputs and constants."""
        for op in self.ops:
            if tensor_index in op.outputs:
                return op
        return None

    def constant_source(self, tensor_index):
        """The stored tensor behind `tensor_index`, looking through DENSIFY / DEQUANTIZE."""
        tensor = self.tensors[tensor_index]
        if tensor.constant:
            return tensor
        op = self.producer(tensor_index)
        if op is not None and op.name in ("DENSIFY", "DEQUANTIZE") and op.inputs:
            return self.constant_source(op.inputs[0])
        return None

    def to_dict(self):
        return {
            "file_bytes": self.file_bytes,
            "gzip_bytes": self.gzip_bytes,
            "ops": self.op_names,
            "op_counts": self.op_counts(),
            "tensors": [t.to_dict() for t in self.tensors],
            "inputs": self.inputs,
            "outputs": self.outputs,
            "size_breakdown": self.size_breakdown(),
            "metadata_names": self.metadata_names,
        }


def _enum_names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def load_bytes(model):
    """Returns the flatbuffer bytes of `model` (a path or bytes)."""
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Expected a path to an existing .tflite file. Received: {path!r}"
            )
        with open(path, "rb") as handle:
            return handle.read()
    raise TypeError(
        f"Expected a .tflite file path or the model's bytes. Received: {type(model).__name__}"
    )


def _index_vector_bytes(vector):
    if vector is None or vector.values is None:
        return 0
    return int(np.asarray(vector.values).nbytes)


def _sparse_encoding(sparsity, rank):
    block_dims = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    if block_dims:
        sizes = [int(meta.denseSize) for meta in sparsity.dimMetadata[rank:]]
        block = [1] * rank
        for dim, size in zip(block_dims, sizes, strict=False):
            block[int(dim)] = size
        return "sparse CSR, block " + "x".join(str(b) for b in block)
    return "sparse CSR, unstructured"


def read_model(model):
    """Parses a `.tflite` file (path or bytes) into a `ModelInfo`.

    Args:
        model: Path to a `.tflite` file, or its bytes.

    Example:

    ```python
    info = read_model("model.tflite")
    print(info.op_counts(), info.size_breakdown())
    ```
    """
    from ai_edge_litert import schema_py_generated as schema

    data = load_bytes(model)
    model_t = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    subgraph = model_t.subgraphs[0]

    tensors, constants = [], {}
    for index, tensor in enumerate(subgraph.tensors or []):
        buffer = model_t.buffers[tensor.buffer] if tensor.buffer else None
        raw = None if buffer is None or buffer.data is None else np.asarray(buffer.data)
        constant = raw is not None and raw.size > 0
        dtype_name = type_names.get(tensor.type, str(tensor.type))
        shape = tuple(int(s) for s in (tensor.shape if tensor.shape is not None else []))
        size = int(np.prod(shape)) if shape else 1
        encoding, index_bytes, density = "dense", 0, None
        if tensor.sparsity is not None:
            encoding = _sparse_encoding(tensor.sparsity, len(shape))
            index_bytes = sum(
                _index_vector_bytes(meta.arraySegments) + _index_vector_bytes(meta.arrayIndices)
                for meta in tensor.sparsity.dimMetadata or []
            )
        if constant and dtype_name in _NUMPY_DTYPES and size:
            values = np.frombuffer(raw.tobytes(), dtype=_NUMPY_DTYPES[dtype_name])
            constants[index] = values
            density = float(np.count_nonzero(values)) / size
        quantization = None
        quant = tensor.quantization
        if quant is not None and quant.scale is not None and len(quant.scale):
            quantization = {
                "scale": [float(s) for s in quant.scale],
                "zero_point": [int(z) for z in quant.zeroPoint],
            }
        tensors.append(
            TensorInfo(
                index=index,
                name=tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
                shape=shape,
                dtype=dtype_name.lower(),
                constant=constant,
                data_bytes=int(raw.nbytes) if constant else 0,
                index_bytes=index_bytes,
                encoding=encoding,
                density=density,
                quantization=quantization,
            )
        )

    ops = []
    for index, op in enumerate(subgraph.operators or []):
        code = model_t.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM" and code.customCode:
            custom = code.customCode
            name = "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
        ops.append(
            OpInfo(
                index=index,
                name=name,
                inputs=[int(i) for i in (op.inputs if op.inputs is not None else [])],
                outputs=[int(i) for i in (op.outputs if op.outputs is not None else [])],
                options=op.builtinOptions,
            )
        )

    metadata_names = []
    for entry in model_t.metadata or []:
        name = entry.name
        metadata_names.append(name.decode() if isinstance(name, bytes) else str(name))

    return ModelInfo(
        file_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9)),
        ops=ops,
        tensors=tensors,
        inputs=[int(i) for i in subgraph.inputs],
        outputs=[int(i) for i in subgraph.outputs],
        metadata_names=metadata_names,
        constants=constants,
    )
