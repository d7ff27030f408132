"""Reads a `.tflite` flatbuffer into plain Python records: ops, tensors, sparse encodings, sizes.

Only the first subgraph is read (the one Keras models convert to), plus the signature that maps
the model's named inputs and outputs to its tensors. The field layout is the TFLite schema
shipped with `ai-edge-litert`, the runtime the exported files are checked on.

Every offset, length and index is checked against the file before it is followed, so a
corrupted or truncated file raises `InvalidModelFileError` (a `ValueError`) naming what is
wrong, never an `IndexError` from deep inside a parser or a read past the end of the data.

Why one long module: it is one reader of one file format. The records it returns, the
bounds-checked table reader and the walk over the schema change together when the TFLite
schema does, and keeping them in one place keeps every read behind the same checks.
"""

import dataclasses
import gzip
import math
import os
import struct

import numpy as np

from keras_prune.export.errors import InvalidModelFileError

_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "UINT16": np.uint16,
    "INT32": np.int32,
    "UINT32": np.uint32,
    "INT64": np.int64,
    "UINT64": np.uint64,
    "BOOL": np.bool_,
}
_FILE_IDENTIFIER = b"TFL3"
# Builtin option tables whose first three fields are padding, stride_w, stride_h.
_SPATIAL_OPTIONS = {1: "Conv2DOptions", 2: "DepthwiseConv2DOptions", 5: "Pool2DOptions"}
_SPARSE_INDEX_DTYPES = {1: np.int32, 2: np.uint16, 3: np.uint8}


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
        return math.prod(self.shape)

    @property
    def sparse(self):
        return self.encoding != "dense"

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SpatialOptions:
    """Padding and strides of a CONV_2D, DEPTHWISE_CONV_2D or pooling op.

    Args:
        padding: TFLite's `Padding` enum: 0 SAME, 1 VALID.
        strideW: Horizontal stride.
        strideH: Vertical stride.
    """

    padding: int
    strideW: int  # noqa: N815 -- the schema's own spelling, as the generated classes use it
    strideH: int  # noqa: N815


@dataclasses.dataclass
class OpInfo:
    """One operator: its builtin name, tensor indices (-1: optional input left out) and, for
    convolutions and pooling, its `SpatialOptions`."""

    index: int
    name: str
    inputs: list
    outputs: list
    options: SpatialOptions | None

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
        signature_inputs: Signature input name -> tensor index (empty without a signature).
        signature_outputs: Signature output name -> tensor index.
    """

    file_bytes: int
    gzip_bytes: int
    ops: list
    tensors: list
    inputs: list
    outputs: list
    metadata_names: list
    signature_inputs: dict = dataclasses.field(default_factory=dict)
    signature_outputs: dict = dataclasses.field(default_factory=dict)
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

    def operand(self, op, position):
        """The `TensorInfo` at input `position` of `op`, or None when the op has no such input."""
        if position >= len(op.inputs) or op.inputs[position] < 0:
            return None
        return self.tensors[op.inputs[position]]

    def input_names(self):
        """Names of the inputs in subgraph order: signature names where the file has them."""
        return _names(self.inputs, self.signature_inputs, "input")

    def output_names(self):
        """Names of the outputs in subgraph order: signature names where the file has them."""
        return _names(self.outputs, self.signature_outputs, "output")

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

    def constant_source(self, tensor_index, _seen=None):
        """The stored tensor behind `tensor_index`, looking through DENSIFY / DEQUANTIZE."""
        tensor = self.tensors[tensor_index]
        if tensor.constant:
            return tensor
        seen = _seen or set()
        op = self.producer(tensor_index)
        if op is not None and op.name in ("DENSIFY", "DEQUANTIZE") and op.inputs:
            source = op.inputs[0]
            if source >= 0 and source not in seen:  # a corrupted graph may loop
                return self.constant_source(source, seen | {tensor_index})
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
            "signature_inputs": self.signature_inputs,
            "signature_outputs": self.signature_outputs,
            "size_breakdown": self.size_breakdown(),
            "metadata_names": self.metadata_names,
        }


def _names(indices, signature, prefix):
    by_index = {index: name for name, index in signature.items()}
    if len(indices) == 1 and indices[0] not in by_index:
        return [prefix]
    return [by_index.get(index, f"{prefix}_{i}") for i, index in enumerate(indices)]


def _enum_names(enum_class):
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def load_bytes(model):
    """Returns the flatbuffer bytes of `model` (a path or bytes)."""
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"Expected a path to an existing .tflite file. Received: {path!r}"
            )
        if not os.path.isfile(path):
            raise InvalidModelFileError(
                f"Expected a .tflite file. Received: {path!r}, which is a directory.", path
            )
        with open(path, "rb") as handle:
            return handle.read()
    raise TypeError(
        f"Expected a .tflite file path or the model's bytes. Received: {type(model).__name__}"
    )


class _Corrupt(Exception):
    """Raised inside the reader; `read_model` turns it into an `InvalidModelFileError`."""


class _PartialBlocks(_Corrupt):
    """A sparse block size that does not divide its dimension: what the TFLite converter
    writes for a weight pruned in blocks that do not tile it."""


class _Table:
    """A flatbuffer table whose vtable and inline fields lie inside the data."""

    def __init__(self, reader, position, what):
        self.reader, self.position, self.what = reader, position, what
        vtable = position - reader.i32(position, what)
        self.vtable_size = reader.u16(vtable, what)
        self.object_size = reader.u16(vtable + 2, what)
        if self.vtable_size < 4 or self.vtable_size % 2 or self.object_size < 4:
            raise _Corrupt(f"{what}: invalid table header")
        reader.need(vtable, self.vtable_size, what)
        reader.need(position, self.object_size, what)
        self.vtable = vtable

    def _field(self, slot, width):
        entry = 4 + 2 * slot
        if entry >= self.vtable_size:
            return None
        offset = self.reader.u16(self.vtable + entry, self.what)
        if offset == 0:
            return None
        if offset + width > self.object_size:
            raise _Corrupt(f"{self.what}: field {slot} lies outside its table")
        return self.position + offset

    def scalar(self, slot, fmt, default=0):
        position = self._field(slot, struct.calcsize(fmt))
        return default if position is None else self.reader.unpack(fmt, position, self.what)

    def _target(self, slot, what):
        position = self._field(slot, 4)
        if position is None:
            return None
        return position + self.reader.u32(position, what)

    def table(self, slot, what):
        target = self._target(slot, what)
        return None if target is None else _Table(self.reader, target, what)

    def vector(self, slot, dtype, what):
        """A numpy view of a vector of scalars (empty when the field is absent)."""
        target = self._target(slot, what)
        if target is None:
            return np.zeros(0, dtype=dtype)
        count = self.reader.u32(target, what)
        itemsize = np.dtype(dtype).itemsize
        self.reader.need(target + 4, count * itemsize, what)
        little_endian = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self.reader.data, dtype=little_endian, count=count, offset=target + 4)

    def tables(self, slot, what):
        """The tables of a vector of tables, each checked when built."""
        offsets = self.vector(slot, np.uint32, what)
        start = self._target(slot, what)
        return [
            _Table(self.reader, start + 4 + 4 * i + int(offset), f"{what}[{i}]")
            for i, offset in enumerate(offsets)
        ]

    def string(self, slot, what):
        raw = self.vector(slot, np.uint8, what)
        return raw.tobytes().decode("utf-8", errors="replace")


class _Reader:
    def __init__(self, data):
        self.data = data
        self.size = len(data)

    def need(self, position, length, what):
        if position < 0 or length < 0 or position + length > self.size:
            raise _Corrupt(f"{what}: points outside the file")

    def unpack(self, fmt, position, what):
        self.need(position, struct.calcsize(fmt), what)
        return struct.unpack_from("<" + fmt, self.data, position)[0]

    def u16(self, position, what):
        return self.unpack("H", position, what)

    def u32(self, position, what):
        return self.unpack("I", position, what)

    def i32(self, position, what):
        return self.unpack("i", position, what)


def _sparse_encoding(block_map, dim_metadata, rank):
    if len(block_map):
        sizes = [meta.scalar(1, "i") for meta in dim_metadata[rank:]]
        block = [1] * rank
        for dim, size in zip(block_map, sizes, strict=False):
            if not 0 <= int(dim) < rank:
                raise _Corrupt(f"sparse block dimension {int(dim)} outside rank {rank}")
            block[int(dim)] = size
        return "sparse CSR, block " + "x".join(str(b) for b in block)
    return "sparse CSR, unstructured"


def _sparse_indices(meta, what):
    """`(segments, indices)` arrays of a SPARSE_CSR dimension."""
    arrays = []
    for type_slot, value_slot in ((2, 3), (4, 5)):
        kind = meta.scalar(type_slot, "B")
        if kind not in _SPARSE_INDEX_DTYPES:
            raise _Corrupt(f"{what}: sparse dimension without a valid index array")
        vector = meta.table(value_slot, what)
        if vector is None:
            raise _Corrupt(f"{what}: sparse dimension without its index array")
        arrays.append(vector.vector(0, _SPARSE_INDEX_DTYPES[kind], what).astype(np.int64))
    return arrays


def _check_sparsity(order, block_map, dim_metadata, shape, value_count, what):
    """Checks that the sparse index arrays describe exactly `value_count` stored values inside
    the tensor: a kernel follows them without bounds checks, so a corrupted segment array
    crashes LiteRT (measured: SIGSEGV in the sparse FULLY_CONNECTED kernel)."""
    rank = len(shape)
    order, block_map = [int(d) for d in order], [int(d) for d in block_map]
    expanded = rank + len(block_map)
    if sorted(order) != list(range(expanded)) or len(dim_metadata) != expanded:
        raise _Corrupt(f"{what}: inconsistent sparse traversal order")
    block = [1] * rank
    for position, dim in enumerate(order):
        if dim >= rank:
            original = block_map[dim - rank]
            size = dim_metadata[position].scalar(1, "i")
            if not 0 <= original < rank or size <= 0:
                raise _Corrupt(f"{what}: invalid sparse block size")
            if shape[original] % size:
                raise _PartialBlocks(
                    f"{what}, shape {tuple(shape)}, is encoded in blocks of {size} along its "
                    f"dimension {original} of {shape[original]}, which is not a multiple of {size}"
                )
            block[original] = size
    count = 1
    for position, dim in enumerate(order):
        meta = dim_metadata[position]
        size = shape[dim] // block[dim] if dim < rank else block[block_map[dim - rank]]
        if meta.scalar(0, "b") == 0:  # DENSE
            if meta.scalar(1, "i") != size:
                raise _Corrupt(f"{what}: dense size of sparse dimension {position} is wrong")
            count *= size
            continue
        segments, indices = _sparse_indices(meta, what)
        if (
            len(segments) != count + 1
            or segments[0] != 0
            or np.any(np.diff(segments) < 0)
            or segments[-1] != len(indices)
            or (len(indices) and (indices.min() < 0 or indices.max() >= size))
        ):
            raise _Corrupt(f"{what}: sparse index arrays of dimension {position} are out of range")
        count = len(indices)
    if count != value_count:
        raise _Corrupt(f"{what}: sparse indices describe {count} values, {value_count} are stored")


def _sparse_index_bytes(meta, what):
    total = 0
    for type_slot, value_slot in ((2, 3), (4, 5)):
        kind = meta.scalar(type_slot, "B")
        if kind == 0:
            continue
        if kind not in _SPARSE_INDEX_DTYPES:
            raise _Corrupt(f"{what}: unknown sparse index type {kind}")
        vector = meta.table(value_slot, what)
        if vector is not None:
            total += vector.vector(0, _SPARSE_INDEX_DTYPES[kind], what).nbytes
    return total


def _buffer_bytes(reader, buffer, what):
    """Stored bytes of a Buffer table: inline data, or (models > 2 GB) a range after the
    flatbuffer given by offset and size."""
    data = buffer.vector(0, np.uint8, what)
    offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
    if offset > 1:
        reader.need(offset, size, what)
        return np.frombuffer(reader.data, dtype=np.uint8, count=size, offset=offset)
    return data


def _check_index(index, count, what):
    if not 0 <= index < count:
        raise _Corrupt(f"{what} is {index}, but there are only {count}")
    return index


def _parse(data):
    from ai_edge_litert import schema_py_generated as schema

    if len(data) < 8:
        raise _Corrupt(f"the file is {len(data)} bytes long, too short for a flatbuffer")
    if data[4:8] != _FILE_IDENTIFIER:
        raise _Corrupt("the TFLite file identifier 'TFL3' is missing")
    reader = _Reader(data)
    model = _Table(reader, reader.u32(0, "root offset"), "model")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    buffers = model.tables(4, "buffers")
    operator_codes = []
    for i, code in enumerate(model.tables(1, "operator codes")):
        builtin = max(code.scalar(3, "i"), code.scalar(0, "b"))
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = "CUSTOM:" + code.string(1, f"operator code {i} name")
        operator_codes.append(name)
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise _Corrupt("the model has no subgraph")
    subgraph = subgraphs[0]

    tensors, constants = [], {}
    tensor_tables = subgraph.tables(0, "tensors")
    for index, tensor in enumerate(tensor_tables):
        what = f"tensor {index} ({tensor.string(3, f'tensor {index} name')!r})"
        shape = tuple(int(s) for s in tensor.vector(0, np.int32, f"{what} shape"))
        if any(dim < 0 for dim in shape):
            raise _Corrupt(f"{what} has a negative dimension {shape}")
        size = 1
        for dim in shape:
            size *= dim
        dtype_name = type_names.get(tensor.scalar(1, "b"), str(tensor.scalar(1, "b")))
        buffer_index = tensor.scalar(2, "I")
        raw = None
        if buffer_index:
            _check_index(buffer_index, len(buffers), f"{what}'s buffer index")
            raw = _buffer_bytes(reader, buffers[buffer_index], f"buffer {buffer_index}")
        constant = raw is not None and raw.size > 0
        encoding, index_bytes, density = "dense", 0, None
        sparsity = tensor.table(6, f"{what} sparsity")
        if sparsity is not None:
            dim_metadata = sparsity.tables(2, f"{what} sparsity dimensions")
            block_map = sparsity.vector(1, np.int32, f"{what} block map")
            encoding = _sparse_encoding(block_map, dim_metadata, len(shape))
            index_bytes = sum(_sparse_index_bytes(meta, what) for meta in dim_metadata)
        if constant and dtype_name in _NUMPY_DTYPES and size:
            itemsize = np.dtype(_NUMPY_DTYPES[dtype_name]).itemsize
            if raw.size % itemsize or (sparsity is None and raw.size != size * itemsize):
                raise _Corrupt(
                    f"{what} ({dtype_name.lower()}, shape {shape}) stores {raw.size} bytes, "
                    f"which does not match its shape"
                )
            if sparsity is not None:
                order = sparsity.vector(0, np.int32, f"{what} traversal order")
                _check_sparsity(order, block_map, dim_metadata, shape, raw.size // itemsize, what)
            values = np.frombuffer(raw.tobytes(), dtype=_NUMPY_DTYPES[dtype_name])
            constants[index] = values
            density = float(np.count_nonzero(values)) / size
        quantization = None
        quant = tensor.table(4, f"{what} quantization")
        if quant is not None:
            scale = quant.vector(2, np.float32, f"{what} scales")
            if len(scale):
                zero_point = quant.vector(3, np.int64, f"{what} zero points")
                quantization = {
                    "scale": [float(s) for s in scale],
                    "zero_point": [int(z) for z in zero_point],
                }
        tensors.append(
            TensorInfo(
                index=index,
                name=tensor.string(3, f"{what} name"),
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

    def tensor_indices(table, slot, what, optional=False):
        indices = [int(i) for i in table.vector(slot, np.int32, what)]
        for i in indices:
            if not (optional and i == -1):
                _check_index(i, len(tensors), f"a tensor index in {what}")
        return indices

    ops = []
    for index, op in enumerate(subgraph.tables(3, "operators")):
        what = f"operator {index}"
        code = _check_index(op.scalar(0, "I"), len(operator_codes), f"{what}'s opcode index")
        options = None
        options_type = op.scalar(3, "B")
        if options_type in _SPATIAL_OPTIONS:
            table = op.table(4, f"{what} options")
            if table is not None:
                options = SpatialOptions(
                    padding=table.scalar(0, "b"),
                    strideW=table.scalar(1, "i"),
                    strideH=table.scalar(2, "i"),
                )
        ops.append(
            OpInfo(
                index=index,
                name=operator_codes[code],
                inputs=tensor_indices(op, 1, f"{what} inputs", optional=True),
                outputs=tensor_indices(op, 2, f"{what} outputs"),
                options=options,
            )
        )

    metadata_names = []
    for i, entry in enumerate(model.tables(6, "metadata")):
        _check_index(entry.scalar(1, "I"), len(buffers), f"metadata {i}'s buffer index")
        metadata_names.append(entry.string(0, f"metadata {i} name"))

    signature_inputs, signature_outputs = {}, {}
    for i, signature in enumerate(model.tables(7, "signatures")):
        if signature.scalar(4, "I") != 0:
            continue
        for slot, found in ((0, signature_inputs), (1, signature_outputs)):
            for j, entry in enumerate(signature.tables(slot, f"signature {i}")):
                tensor = entry.scalar(1, "I")
                _check_index(tensor, len(tensors), f"signature {i} entry {j}'s tensor index")
                found[entry.string(0, f"signature {i} entry {j}")] = tensor
        break

    return ModelInfo(
        file_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9)),
        ops=ops,
        tensors=tensors,
        inputs=tensor_indices(subgraph, 1, "the subgraph inputs"),
        outputs=tensor_indices(subgraph, 2, "the subgraph outputs"),
        metadata_names=metadata_names,
        signature_inputs=signature_inputs,
        signature_outputs=signature_outputs,
        constants=constants,
    )


def read_model(model):
    """Parses a `.tflite` file (path or bytes) into a `ModelInfo`.

    Args:
        model: Path to a `.tflite` file, or its bytes.

    Raises:
        InvalidModelFileError: (a `ValueError`) the data is not a readable `.tflite` file.

    Example:

    ```python
    # docs: slow
    kp.export.to_tflite(pruned, "model.tflite")
    info = kp.export.read_model("model.tflite")
    print(info.op_counts(), info.size_breakdown())
    ```
    """
    path = os.fspath(model) if isinstance(model, str | os.PathLike) else None
    data = load_bytes(model)
    where = f"{path!r}" if path else "The data"
    if not data:
        raise InvalidModelFileError(
            f"{where} is empty (0 bytes), not a valid .tflite file. Export the model again.", path
        )
    try:
        return _parse(data)
    except _PartialBlocks as error:
        raise InvalidModelFileError(
            f"{where} is not a valid .tflite file for LiteRT's sparse kernels: {error}. The TFLite "
            "converter writes that for a layer pruned in blocks that do not tile its weight (1x4 "
            "blocks on a Dense whose input width is not a multiple of 4; the layer's name is in "
            "the tensor's). Prune that layer with kp.granularity.Block((1, 4), "
            'partial_blocks="skip") or granularity="mobile" (both leave it unpruned), prune it '
            "unstructured, or leave it out with `filters=`; if kp.shrink removed some of its "
            "inputs, shrink with round_to=4.",
            path,
            partial_blocks=True,
        ) from None
    except _Corrupt as error:
        reason = str(error)
    except (struct.error, ValueError, OverflowError, MemoryError) as error:
        reason = f"{type(error).__name__}: {error}"
    raise InvalidModelFileError(
        f"{where} is not a valid .tflite file ({reason}); it is corrupted, truncated or another "
        "format. Export the model again.",
        path,
    )
