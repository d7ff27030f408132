"""Per-tensor storage: the dense-storage file with chosen weights spliced in sparse-encoded.

The converter's sparse encoding (`EXPERIMENTAL_SPARSITY`) is one switch per conversion. To store
some weights sparse and others dense, the exporter converts twice (sparse-encoded and dense) and
edits the dense file: each weight chosen sparse takes the sparse file's encoding of it (its
sparsity parameters and stored values), every other weight stays as the dense file stores it.
Only weights that their op reads sparse itself (no DENSIFY op after them in the sparse file) are
spliced, so the dense file's ops stay as they are and no DENSIFY op is carried over.

`pair_weights` lines the two conversions up first: the same ops in the same order once the
sparse file's DENSIFY ops are skipped, the same number of inputs, and every constant input of
the dense file matched, through DENSIFY, by the sparse file's in shape, type, quantization and
decoded values, exactly. When they do not line up it raises `MisalignedError` and the exporter
falls back to choosing one of the two files.

The files are read and written with the flatbuffers object API of `ai-edge-litert`
(`ai_edge_litert.tools.flatbuffer_utils`); weight buffers are written 16-byte aligned, as the
converter writes them.
"""

import copy
import dataclasses

import numpy as np

_NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}
_BUFFER_ALIGNMENT = 16
# Files are rewritten whole, buffers inline; a flatbuffer cannot exceed 2 GiB, and larger
# models (weights stored after the flatbuffer) keep the per-file choice.
MAX_FILE_BYTES = 2**31 - 2**27


class MisalignedError(ValueError):
    """The sparse-encoded and dense conversions differ in more than the sparse encoding."""


@dataclasses.dataclass
class WeightPair:
    """A weight the sparse-encoded conversion stores sparse, and where it is in both files.

    Args:
        name: Tensor name in the dense file (it contains the Keras layer name).
        shape: Dense shape.
        dtype: Element type, lower case.
        op: The op reading it (e.g. `"FULLY_CONNECTED"`, `"CONV_2D"`).
        encoding: The converter's encoding, e.g. `"sparse CSR, block 1x4"`.
        direct: Whether the op reads the sparse tensor itself; False when the converter put a
            DENSIFY op after it (the op has no kernel for this sparse format).
        dense_index: Tensor index in the dense file.
        sparse_index: Tensor index of the sparse-encoded tensor in the sparse file.
        ops: Indices (in the dense file) of the ops reading it.
    """

    name: str
    shape: tuple
    dtype: str
    op: str
    encoding: str
    direct: bool
    dense_index: int
    sparse_index: int
    ops: list = dataclasses.field(default_factory=list)


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def load(data):
    """The `ModelT` (flatbuffers object API) of `.tflite` bytes."""
    _, flatbuffer_utils = _schema()
    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def _type_name(tensor_type):
    schema, _ = _schema()
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    return names.get(tensor_type, str(tensor_type))


def _op_name(model, op):
    _, flatbuffer_utils = _schema()
    return flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)


def _stored(model, tensor):
    """The stored values of `tensor` as a flat array of its type, or None (not a constant)."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer else None
    if buffer is None or buffer.data is None or not len(buffer.data):
        return None
    dtype = _NUMPY_DTYPES.get(_type_name(tensor.type))
    if dtype is None:
        return np.asarray(buffer.data, dtype=np.uint8)
    return np.frombuffer(np.asarray(buffer.data, dtype=np.uint8).tobytes(), dtype=dtype)


def _index_array(vector):
    return np.asarray(vector.values if vector is not None else [], dtype=np.int64)


def decode(values, shape, sparsity):
    """The dense array a sparse-encoded tensor stands for.

    Args:
        values: The stored (kept) values, flat.
        shape: The tensor's dense shape.
        sparsity: Its `SparsityParametersT` (traversal order, block map, dimension metadata).

    Raises:
        MisalignedError: the index arrays do not describe `values` inside `shape`.
    """
    shape = [int(d) for d in shape]
    rank = len(shape)
    order = [int(d) for d in sparsity.traversalOrder]
    block_map = [int(d) for d in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    metadata = sparsity.dimMetadata
    if sorted(order) != list(range(rank + len(block_map))) or len(metadata) != len(order):
        raise MisalignedError("inconsistent sparse traversal order")
    block = [1] * rank
    for position, dim in enumerate(order):
        if dim >= rank:
            block[block_map[dim - rank]] = int(metadata[position].denseSize)
    coordinates = np.zeros((1, 0), dtype=np.int64)
    parents = np.zeros(1, dtype=np.int64)
    for position, dim in enumerate(order):
        meta = metadata[position]
        size = shape[dim] // block[dim] if dim < rank else block[block_map[dim - rank]]
        if meta.format == 0:  # DENSE: every index, child id = parent * size + index
            coordinates = np.repeat(coordinates, size, axis=0)
            column = np.tile(np.arange(size), len(parents))
            parents = np.repeat(parents, size) * size + column
        else:  # SPARSE_CSR: the indices of the parent's segment, child id = position in indices
            segments = _index_array(meta.arraySegments)
            indices = _index_array(meta.arrayIndices)
            if len(segments) <= parents.max(initial=0) + 1 or segments[-1] != len(indices):
                raise MisalignedError(f"sparse dimension {position} has invalid segments")
            starts, counts = segments[parents], segments[parents + 1] - segments[parents]
            if np.any(counts < 0):
                raise MisalignedError(f"sparse dimension {position} has invalid segments")
            offsets = np.cumsum(counts) - counts
            children = np.arange(counts.sum()) + np.repeat(starts - offsets, counts)
            coordinates = np.repeat(coordinates, counts, axis=0)
            column = indices[children]
            parents = children
        if len(column) and (column.min() < 0 or column.max() >= size):
            raise MisalignedError(f"sparse dimension {position} has indices out of range")
        coordinates = np.concatenate([coordinates, column[:, None]], axis=1)
    if len(coordinates) != len(values):
        raise MisalignedError(
            f"the sparse indices describe {len(coordinates)} values, {len(values)} are stored"
        )
    by_dim = {dim: coordinates[:, position] for position, dim in enumerate(order)}
    original = [by_dim[d] * block[d] for d in range(rank)]
    for j, dim in enumerate(block_map):
        original[dim] = original[dim] + by_dim[rank + j]
    dense = np.zeros(shape, dtype=np.asarray(values).dtype)
    dense[tuple(original)] = values
    return dense


def _encoding(sparsity, rank):
    block_map = list(sparsity.blockMap if sparsity.blockMap is not None else [])
    if not block_map:
        return "sparse CSR, unstructured"
    block = [1] * rank
    for position, dim in enumerate(sparsity.traversalOrder):
        if dim >= rank:
            block[block_map[dim - rank]] = int(sparsity.dimMetadata[position].denseSize)
    return "sparse CSR, block " + "x".join(str(b) for b in block)


def _quantization(tensor):
    quant = tensor.quantization
    if quant is None or quant.scale is None or not len(quant.scale):
        return None
    return (
        [float(s) for s in quant.scale],
        [int(z) for z in (quant.zeroPoint if quant.zeroPoint is not None else [])],
        int(quant.quantizedDimension),
    )


def _source(model, ops_by_output, index):
    """`(tensor index, direct)`: the stored tensor behind input `index`, looking through one
    DENSIFY op (`direct` False then)."""
    producer = ops_by_output.get(index)
    if producer is not None and _op_name(model, producer) == "DENSIFY":
        return int(producer.inputs[0]), False
    return index, True


def pair_weights(sparse, dense):
    """The sparse-encoded weights of `sparse`, each paired with its tensor in `dense`.

    Args:
        sparse: `.tflite` bytes converted with sparse encoding.
        dense: `.tflite` bytes of the same model and target converted without it.

    Returns:
        A list of `WeightPair`, in the dense file's op order.

    Raises:
        MisalignedError: the two files differ in more than the sparse encoding (the message
            says where).
    """
    s_model, d_model = load(sparse), load(dense)
    s_graph, d_graph = s_model.subgraphs[0], d_model.subgraphs[0]
    s_ops = [op for op in s_graph.operators if _op_name(s_model, op) != "DENSIFY"]
    d_ops = list(d_graph.operators)
    s_names = [_op_name(s_model, op) for op in s_ops]
    d_names = [_op_name(d_model, op) for op in d_ops]
    if s_names != d_names:
        raise MisalignedError(f"the ops differ: {s_names} (sparse) vs {d_names} (dense)")
    s_by_output = {int(o): op for op in s_graph.operators for o in op.outputs}
    pairs, seen = {}, {}
    for number, (s_op, d_op, name) in enumerate(zip(s_ops, d_ops, d_names, strict=True)):
        if len(s_op.inputs) != len(d_op.inputs):
            raise MisalignedError(f"op {number} ({name}) has different inputs")
        for d_index, s_index in zip(d_op.inputs, s_op.inputs, strict=True):
            d_index, s_index = int(d_index), int(s_index)
            if (d_index < 0) != (s_index < 0):
                raise MisalignedError(f"op {number} ({name}) has different optional inputs")
            if d_index < 0:
                continue
            d_tensor = d_graph.tensors[d_index]
            d_values = _stored(d_model, d_tensor)
            if d_values is None:
                continue
            s_index, direct = _source(s_model, s_by_output, s_index)
            s_tensor = s_graph.tensors[s_index]
            what = f"input of op {number} ({name}), {d_tensor.name.decode(errors='replace')!r}"
            s_values = _stored(s_model, s_tensor)
            same = (
                s_values is not None
                and list(s_tensor.shape) == list(d_tensor.shape)
                and s_tensor.type == d_tensor.type
                and _quantization(s_tensor) == _quantization(d_tensor)
            )
            if not same:
                raise MisalignedError(f"the {what} differs in shape, type or quantization")
            if s_tensor.sparsity is not None:
                s_values = decode(s_values, s_tensor.shape, s_tensor.sparsity)
            if not np.array_equal(s_values.reshape(-1), d_values.reshape(-1)):
                raise MisalignedError(f"the {what} has different values")
            if s_tensor.sparsity is None:
                continue
            if seen.setdefault(d_index, s_index) != s_index:
                raise MisalignedError(f"the {what} is stored twice in the sparse file")
            pair = pairs.get(d_index)
            if pair is None:
                pairs[d_index] = WeightPair(
                    name=d_tensor.name.decode(errors="replace"),
                    shape=tuple(int(d) for d in d_tensor.shape),
                    dtype=_type_name(d_tensor.type).lower(),
                    op=name,
                    encoding=_encoding(s_tensor.sparsity, len(d_tensor.shape)),
                    direct=direct,
                    dense_index=d_index,
                    sparse_index=s_index,
                    ops=[number],
                )
                continue
            pair.ops.append(number)
            if not direct:  # read by several ops: sparse only if every one reads it sparse
                pair.direct = False
    return list(pairs.values())


def _aligned_buffer(schema, buffer):
    """A copy of `buffer` whose data is written 16-byte aligned (as the converter does)."""

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 -- the generated classes' spelling
            data = None
            if self.data is not None:
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), _BUFFER_ALIGNMENT)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head : builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    aligned = AlignedBuffer()
    aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    return aligned


def _opcode(model, code):
    """Index of an operator code equal to `code` in `model`, added if missing."""
    key = (code.builtinCode, code.deprecatedBuiltinCode, code.version, code.customCode)
    for index, existing in enumerate(model.operatorCodes):
        found = (
            existing.builtinCode,
            existing.deprecatedBuiltinCode,
            existing.version,
            existing.customCode,
        )
        if found == key:
            return index
    model.operatorCodes.append(copy.deepcopy(code))
    return len(model.operatorCodes) - 1


def splice(sparse, dense, pairs):
    """The dense file with each weight of `pairs` stored as the sparse file encodes it.

    Args:
        sparse: `.tflite` bytes converted with sparse encoding.
        dense: The dense conversion of the same model and target.
        pairs: `WeightPair`s from `pair_weights(sparse, dense)`, each with `direct` True (the
            op reads the sparse tensor itself).

    Returns:
        The `.tflite` bytes: the dense file's ops, with those weights sparse-encoded.

    Example:

    ```python
    # docs: slow
    pairs = [p for p in pair_weights(sparse, dense) if p.op == "FULLY_CONNECTED" and p.direct]
    mixed = splice(sparse, dense, pairs)
    ```
    """
    schema, flatbuffer_utils = _schema()
    s_model, d_model = load(sparse), load(dense)
    s_graph, d_graph = s_model.subgraphs[0], d_model.subgraphs[0]
    s_ops = [op for op in s_graph.operators if _op_name(s_model, op) != "DENSIFY"]
    for pair in pairs:
        if not pair.direct:
            raise ValueError(
                f"Expected weights their op reads sparse (no DENSIFY). Received: {pair.name!r} "
                f"({pair.op}), which the converter densifies at load."
            )
        d_tensor, s_tensor = d_graph.tensors[pair.dense_index], s_graph.tensors[pair.sparse_index]
        old = d_tensor.buffer
        buffer = schema.BufferT()
        buffer.data = np.asarray(s_model.buffers[s_tensor.buffer].data, dtype=np.uint8)
        d_model.buffers.append(buffer)
        d_tensor.buffer = len(d_model.buffers) - 1
        d_tensor.sparsity = copy.deepcopy(s_tensor.sparsity)
        for number in pair.ops:
            # The op takes the sparse file's operator code: its version says that it reads
            # sparse weights (FULLY_CONNECTED 8 for float), and XNNPACK leaves such ops to the
            # built-in kernels. Ops with dense weights keep their code and stay delegated.
            d_graph.operators[number].opcodeIndex = _opcode(
                d_model, s_model.operatorCodes[s_ops[number].opcodeIndex]
            )
        users = [t for graph in d_model.subgraphs for t in graph.tensors if t.buffer == old]
        if not users:
            d_model.buffers[old].data = None
    d_model.buffers = [_aligned_buffer(schema, buffer) for buffer in d_model.buffers]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(d_model))
