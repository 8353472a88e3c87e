"""The build options, declared once: `tflrnn build`'s flags, a config file's and a manifest entry's keys
(config.BuildOptions), the network options a plan passes to `builder.network_of` with their defaults, and the
checks that the JSON schemas and network_of's signature agree (tests/test_options.py) all come from this table.

Each option: its key (BuildOptions' field, the config and manifest key), the command line's flags and help, its
click type by name (cli.py has the types), and where it belongs: a network setting with the default tflrnn uses
when nothing gives one (`layout`), what makes the cells (`cell`), or where the cell and weights come from
(`source`). A config file takes the network settings and the cell's, not the source's.
"""

from __future__ import annotations

from dataclasses import dataclass

LAYOUT, CELL, SOURCE = "layout", "cell", "source"


@dataclass(frozen=True)
class Option:
    key: str
    flags: tuple[str, ...]
    help: str
    part: str
    default: object = None  # a layout option's default when neither the options, a config nor the source gives it
    type: str | None = None  # "int", "float", "path", "size_or_dynamic", "batch_size", or None (text, a flag or
    # choices)
    choices: tuple[str, ...] | None = None
    flag: bool = False  # an on/off flag (None when not given)


BUILD_OPTIONS = (
    Option("num_units", ("--units",), "num_units (default: from --config or --weights).", CELL, type="int"),
    Option("input_size", ("--input-size",), "Features per time step (default: from the weights, else units).",
           LAYOUT, type="int"),
    Option("time_steps", ("--time-steps",), "Steps per invoke (default: the source's, else 1), or 'dynamic': any "
           "length, set by resizing the input.", LAYOUT, 1, type="size_or_dynamic"),
    Option("batch_size", ("--batch-size",), "Batch (default: the source's, else 1); fixed, because the state is "
           "[batch, units].", LAYOUT, 1, type="batch_size"),
    Option("activation", ("--activation",), "tanh (default), relu, relu6, linear/none, relu_n1_to_1, sign_bit.",
           CELL),
    Option("time_major", ("--time-major/--batch-major",), "Input layout [T,B,I] or [B,T,I] (default: the source's, "
           "else batch-major).", LAYOUT, False),
    Option("name", ("--name",), "Cell name, the prefix of tensor names (default rnn).", CELL),
    Option("layers", ("--layers",), "Stack this many copies of the cell (names <name>/cell_<k>), one op each.", CELL,
           type="int"),
    Option("last_step", ("--last-step/--all-steps",), "Output only the final step [B,U] (Keras "
           "return_sequences=False), or every step (default).", LAYOUT, False),
    Option("bidirectional", ("--bidirectional",), "Each layer a BIDIRECTIONAL_SEQUENCE_RNN op: the cell run forward "
           "and backward.", LAYOUT, False, flag=True),
    Option("merge", ("--merge",), "The last bidirectional layer's outputs: concatenated [fw | bw] (default, Keras "
           "merge_mode='concat') or separate.", LAYOUT, "concat", choices=("concat", "none")),
    Option("quantize", ("--quantize",), "int8: store W and R as symmetric int8 (a hybrid op, about 1/4 the size); "
           "full-int8 (with --calibration): integer ops only, int8 weights and values, for microcontrollers and NPUs "
           "(a basic RNN or GRU with --lowering portable, a float input QUANTIZEd to int16 for its first projection "
           "unless --input-precision int8; an LSTM as the fused op on the integer LSTM kernel, or with --lowering "
           "portable int8 weights and int16 values, 16x8).",
           LAYOUT, choices=("none", "int8", "full-int8")),
    Option("calibration", ("--calibration",), "With --quantize full-int8: representative input sequences, .npy or "
           ".npz [N,B,T,I] ([N,T,B,I] time-major); the int8 ranges come from the float model run over them.", LAYOUT,
           type="path"),
    Option("io", ("--io",), "With --quantize full-int8: the signature's tensors float (default; QUANTIZE/DEQUANTIZE "
           "at the edges) or int8.", LAYOUT, "float", choices=("float", "int8")),
    Option("input_precision", ("--input-precision",), "With --quantize full-int8 in the portable lowering and a float "
           "interface: the input QUANTIZEd to int16 for the first layer's projection (default; TFLite's 16x8 "
           "FULLY_CONNECTED: 4-15 % less mean error on the int8 battery; TFLite Micro 0-5 % slower; LiteRT runs it "
           "on its reference kernel, outside XNNPACK: 1.6-3x the invoke, 3-17x with XNNPACK) or to int8 (every op "
           "int8: LiteRT's speed, NPUs without 16x8 kernels).", LAYOUT,
           "int16", choices=("int16", "int8")),
    Option("asymmetric_inputs", ("--asymmetric-inputs",), "With --quantize int8: quantize inputs asymmetrically at "
           "run time (op version 3, runtime 2.3.0).", LAYOUT, False, flag=True),
    Option("cell", ("--cell",), "The kind of cell: rnn (TfLiteRNNCell, default), gru (Keras' GRU, reset after; "
           "built with --lowering portable, as TFLite has no builtin GRU op) or lstm (Keras' LSTM; its state h and c "
           "side by side, [B, 2U]). With --weights, the weights' kind.", CELL, choices=("rnn", "gru", "lstm")),
    Option("reset_after", ("--reset-after/--reset-before",), "A GRU's reset gate: applied after the candidate's "
           "recurrent product (default; Keras 3's reset_after=True, PyTorch, ONNX linear_before_reset=1) or to h "
           "before it (Keras reset_after=False). With --weights, the weights say.", CELL),
    Option("cell_clip", ("--cell-clip",), "An LSTM's cell state clipped to [-FLOAT, FLOAT] each step (TF1 "
           "LSTMCell's cell_clip): the LSTM op's cell_clip option, or MAXIMUM and MINIMUM in the portable lowering; "
           "in full int8 at least c's int16 step. Default none (0): Keras and PyTorch never clip.", CELL,
           type="float"),
    Option("lowering", ("--lowering",), "fused (default for rnn and lstm): TFLite's fused RNN and LSTM ops; portable "
           "(default for gru): plain builtin ops that every TFLite runtime runs (the steps unrolled or in a WHILE "
           "loop, a fixed or dynamic time axis, float or --quantize full-int8).", LAYOUT,
           choices=("fused", "portable")),
    Option("state", ("--state",), "carry (default): the state lives in the model across invokes; io: an input and an "
           "output the caller chains; zero: none, each invoke from zeros (io and zero: --lowering portable).",
           LAYOUT, "carry", choices=("carry", "io", "zero")),
    Option("recurrence", ("--recurrence",), "With --lowering portable: the steps unrolled (fastest for small cells) "
           "or in a WHILE loop (R packed once: large cells, long sequences); auto (default) loops when the unrolled "
           "steps would hold more than 8 MiB of R. Full int8 is unrolled, an LSTM's (int16 values) either way.",
           LAYOUT, "auto", choices=("auto", "unrolled", "loop")),
    Option("steps_per_iteration", ("--steps-per-iteration",), "With --lowering portable: the steps each pass of "
           "the WHILE loop runs, unrolled in its body (default 1; more makes the steps a loop; must divide "
           "--time-steps). A few steps a pass spend less on the loop itself and keep R's packed copies in cache: a "
           "small GRU or LSTM at 5 runs as fast as unrolled in a fraction of its file.", LAYOUT, 1, type="int"),
    Option("seed", ("--seed",), "Seed of the initial weights when no --weights (default 0).", LAYOUT, 0, type="int"),
    Option("weights", ("--weights",), "Trained weights: .npz, .keras/.h5/.weights.h5, TF checkpoint, "
           ".safetensors/.pt, .onnx.", SOURCE, type="path"),
    Option("format", ("--format",), "Format of --weights: npz, keras, checkpoint, safetensors, torch or onnx "
           "(default: from its content and suffix).", SOURCE),
    Option("layer", ("--layer",), "Keras: the SimpleRNN, GRU or LSTM layer to take, when there are several.", SOURCE),
    Option("scope", ("--scope",), "TF checkpoint or .npz: the variable scope (<scope>/input_weights ...).", SOURCE),
    Option("layer_index", ("--layer-index",), "PyTorch: the nn.RNN, nn.GRU or nn.LSTM layer to take, when there are "
           "several.", SOURCE, type="int"),
    Option("config", ("--config",), "Cell config, JSON (get_config()) or TOML.", SOURCE, type="path"),
)
OPTIONS = {option.key: option for option in BUILD_OPTIONS}
# What a config file sets under these names (config.py reads num_units or units, and return_sequences for the last
# step, itself, as TfLiteRNNCell's and Keras' configs write them)
CONFIG_KEYS = tuple(o.key for o in BUILD_OPTIONS if o.part != SOURCE and o.key not in ("num_units", "last_step"))
LAYOUT_KEYS = tuple(o.key for o in BUILD_OPTIONS if o.part == LAYOUT)
SOURCE_KEYS = tuple(o.key for o in BUILD_OPTIONS if o.part == SOURCE)
