"""Loading a cell's weights from any supported file (see `tflrnn.sources`)."""

from __future__ import annotations

from .cell import CellWeights
from .sources import ImportedCell, import_cell

__all__ = ["load_weights", "import_cell", "ImportedCell"]


def load_weights(path, name: str | None = None, **options) -> CellWeights:
    """The weights of one RNN cell in `path`; options as `import_cell` (format, layer, layer_index)."""
    return import_cell(path, name=name, **options).weights
