"""Weights in and out: a cell's weights from any supported file (see `tflrnn.sources`), and a model's weights
written to an .npz that builds the same model again."""

from __future__ import annotations

import json

from .cell import CellWeights
from .sources import ImportedCell, import_cell
from .sources.npz import NETWORK_KEY

__all__ = ["load_weights", "export_weights", "import_cell", "ImportedCell"]


def load_weights(path, name: str | None = None, **options) -> CellWeights:
    """The weights of one RNN cell in `path` (CellWeights, or GRUWeights for a GRU); options as `import_cell`
    (format, layer, layer_index)."""
    return import_cell(path, name=name, **options).weights


def export_weights(model, path, keras_names: bool = False) -> dict:
    """Write the RNN op's weights to an .npz, atomically; returns the names and shapes written."""
    import io

    import numpy as np

    from .errors import ModelFormatError
    from .files import model_bytes, write_atomic
    from .lowering import lowering_for_model, require_a_network
    from .reader import read

    data, _ = model_bytes(model)
    description = read(data)
    require_a_network(description)
    chosen = lowering_for_model(description)
    # Each direction's (name, weights), and each Dense layer's (kernel name, bias name, kernel, bias).
    layers, dense = chosen.exported_weights(description)
    arrays, digests = {}, []

    def put(name: str, array) -> None:
        # Names come from the file: two weights with one name would silently keep one array.
        if name in arrays:
            raise ModelFormatError(f"two weights in the model would be saved as '{name}'")
        arrays[name] = array

    for layer_name, weights in layers:
        # One cell: plain names. A stack, both directions or a classifier: keyed <layer name>/..., as `build`
        # reads them.
        prefix = f"{layer_name}/" if len(layers) > 1 or dense else ""
        for name, array in (weights.to_keras() if keras_names else weights.to_tflite()).items():
            put(prefix + name, array)
        digests.append(weights.sha256())
    for kernel_name, bias_name, kernel, bias in dense:  # <name>/kernel ([input, units] with Keras names), <name>/bias
        put(kernel_name, np.ascontiguousarray(kernel.T) if keras_names else kernel)
        put(bias_name, bias)
    if chosen.full_int8 and chosen.recover(description).int8 is not None:
        # A full-int8 model: also the values it stores, <tensor>/int8 (or /int32, /int64 beside an int16 input) and
        # <tensor>/scale per channel, beside the float weights they stand for (above)
        for tensor in description.subgraphs[0].tensors:
            if tensor.data is not None and tensor.dtype in ("int8", "int32", "int64") and \
                    tensor.quantization is not None:
                put(f"{tensor.name}/{tensor.dtype}", tensor.data)
                put(f"{tensor.name}/scale", np.asarray(tensor.quantization.scale, np.float32))
    record = network_record(description, keras_names)
    if record is not None:  # how the layers connect, for `build --weights` to rebuild the same model
        put(NETWORK_KEY, np.frombuffer(json.dumps(record, separators=(",", ":")).encode("utf-8"), np.uint8))
    # Names come from the file: two that end up the same in the archive (a zip member name stops at a NUL) would
    # silently keep one array.
    members = [name.split("\0")[0] for name in arrays]
    repeated = sorted({name for name in members if members.count(name) > 1})
    if repeated:
        raise ModelFormatError(f"the model's tensor names give two weights the same name in the .npz: "
                               f"{', '.join(repr(n) for n in repeated[:3])}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return {
        "path": str(path),
        "arrays": {name: list(array.shape) for name, array in arrays.items() if name != NETWORK_KEY},
        "weights_sha256": digests[0] if len(digests) == 1 else digests,
        "network": record,
    }


def network_record(description, keras_names: bool = False) -> dict | None:
    """What `build --weights` needs besides the arrays to rebuild a model byte for byte (sources/npz.py reads it):
    each layer's name, activation and direction, the Dense layers, the layout and sizes, and the build options
    (last step, merge, lowering, state, recurrence, quantization). None when the model is not a network tflrnn
    would build again as it is (its weights still come out)."""
    from .cell import ACTIVATION_NAMES
    from .errors import TflrnnError
    from .lowering import lowering, portable, recover
    from .network import base_name, stage_layers

    try:
        network = recover(description)
    except TflrnnError:
        return None
    layers = []
    for stage in network.stages:
        directions, name = stage_layers(stage), base_name(stage)
        if len(directions) == 2 and ([d.name for d in directions] != [f"{name}/fw", f"{name}/bw"] or
                                     directions[0].activation != directions[1].activation or
                                     directions[0].weights.num_units != directions[1].weights.num_units):
            return None  # both directions are built from one cell, named <name>/fw and <name>/bw
        layers.append({"name": name, "activation": ACTIVATION_NAMES[directions[0].activation],
                       "bidirectional": len(directions) == 2,
                       **({"cell": directions[0].kind} if directions[0].kind != "rnn" else {}),
                       **({"cell_clip": directions[0].cell_clip} if directions[0].cell_clip else {})})
    record = {
        "tflrnn_network": 1,  # the record's version
        "names": "keras" if keras_names else "tflite",
        "layers": layers,
        "dense": [{"name": d.name, "activation": d.activation} for d in network.head],
        "time_steps": "dynamic" if network.dynamic_time else network.time_steps,
        "batch_size": network.batch_size,
        "time_major": network.time_major,
        "last_step": network.last_step,
        "lowering": network.lowering,
    }
    if layers[-1]["bidirectional"]:
        record["merge"] = "concat" if network.merge else "none"
    if network.layers[0].int8 is not None:
        record.update(quantize="int8", asymmetric_inputs=network.layers[0].asymmetric_inputs)
    if lowering(network.lowering).loops:  # the portable lowering's options
        record["state"] = network.state
        chosen = portable.auto_loops(network.stages, network.time_steps, network.dynamic_time,
                                     network.int8 is not None)
        record["recurrence"] = "auto" if network.loop == chosen else "loop" if network.loop else "unrolled"
        if network.steps_per_iteration > 1:
            record["steps_per_iteration"] = network.steps_per_iteration
    if network.int8 is not None:  # rebuilt from the same --calibration data
        record.update(quantize="full-int8", io="int8" if network.int8.int8_io else "float")
        if not network.int8.int8_io:
            record["input_precision"] = f"int{network.int8.input.bits}"
    return record
