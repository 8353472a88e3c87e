"""Weights in and out: a cell's weights from any supported file (see `tflrnn.sources`), and a model's weights
written to an .npz that builds the same model again."""

from __future__ import annotations

from dataclasses import dataclass

from .cell import CellWeights
from .sources import ImportedCell, import_cell

__all__ = ["load_weights", "export_weights", "import_cell", "ImportedCell"]


def load_weights(path, name: str | None = None, **options) -> CellWeights:
    """The weights of one RNN cell in `path`; options as `import_cell` (format, layer, layer_index)."""
    return import_cell(path, name=name, **options).weights


def export_weights(model, path, keras_names: bool = False) -> dict:
    """Write the RNN op's weights to an .npz, atomically; returns the names and shapes written."""
    import io

    import numpy as np

    from .errors import ModelFormatError
    from .files import model_bytes, write_atomic
    from .lowering import portable
    from .lowering.fused import RNN_CODES, dense_arrays, dense_layers, find_network
    from .reader import read

    data, _ = model_bytes(model)
    description = read(data)
    if not any(op.code in RNN_CODES for g in description.subgraphs for op in g.operators) and \
            portable.holds_a_layer(description):
        # The portable lowering's model: its layers and Dense layers as recovered, named as the fused view names them.
        recovered = portable.recover(description)
        layers = [_Direction(layer.name, layer.weights) for layer in recovered.layers]
        dense = [(None, _Direction(d.name, (d.weights, d.bias))) for d in recovered.head]
    else:
        network = find_network(description)
        layers = network.directions
        dense = [(op, None) for op, _ in dense_layers(network)]
    arrays, digests = {}, []

    def put(name: str, array) -> None:
        # Names come from the file: two weights with one name would silently keep one array.
        if name in arrays:
            raise ModelFormatError(f"two weights in the model would be saved as '{name}'")
        arrays[name] = array

    for g in layers:
        weights = g.weights() if callable(g.weights) else g.weights
        # One cell: plain names. A stack, both directions or a classifier: keyed <layer name>/..., as `build`
        # reads them.
        prefix = f"{g.name}/" if len(layers) > 1 or dense else ""
        for name, array in (weights.to_keras() if keras_names else weights.to_tflite()).items():
            put(prefix + name, array)
        digests.append(weights.sha256())
    for op, recovered_dense in dense:  # a Dense layer: <name>/kernel [input, units] (Keras' layout) and <name>/bias
        if op is not None:
            w, b = dense_arrays(network, op)
            names, kernel, bias = (w.name, b.name), w.data, b.data
        else:
            kernel, bias = recovered_dense.weights
            names = (f"{recovered_dense.name}/kernel", f"{recovered_dense.name}/bias")
        put(names[0], np.ascontiguousarray(kernel.T) if keras_names else kernel)
        put(names[1], bias)
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
        "arrays": {name: list(array.shape) for name, array in arrays.items()},
        "weights_sha256": digests[0] if len(digests) == 1 else digests,
    }


@dataclass
class _Direction:
    """A recovered layer (or Dense layer) as export_weights reads it: its name and its weights."""

    name: str
    weights: object
