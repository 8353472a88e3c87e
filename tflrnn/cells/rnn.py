"""The basic RNN cell (TfLiteRNNCell): h_t = act(x_t W^T + h_{t-1} R^T + b). Its class and weights live in
`tflrnn/cell.py`, where the seed put them; this module declares them as a kind."""

from ..cell import CellWeights, RNNCell
from . import CellKind

KIND = CellKind(
    name="rnn", title="basic RNN", cell=RNNCell, weights=CellWeights,
    roles=("input_weights", "recurrent_weights", "bias"), fused=True,
    keras=("SimpleRNN", "SimpleRNNCell"), torch="RNN", onnx="RNN",
)
