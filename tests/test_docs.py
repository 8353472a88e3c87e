"""The README and docs/ say what the code does: links resolve, every code block runs as written, and docs/cli.md
names every option each command has (and none it does not).

Each page runs in a temporary directory of its own, top to bottom, as a user pasting its blocks in order would:

- ```python blocks run in one namespace, the page's;
- ```sh lines are `tflrnn` commands, run through the real entry point: each must exit 0;
- ```text blocks run their `$ tflrnn ...` lines and compare what the command prints with the lines under it
  (`_line_pattern` says how exactly); an error line shown means exit 2, a failed check exit 1, else 0;
- ```toml and ```json blocks must follow their schema (a manifest, or a cell config, which must also build); one
  whose first line is `# NAME` is written to NAME before the page runs: the file its commands read;
- files that stand for the user's own (a trained Keras model, calibration data, another tool's model) are made by
  USER_FILES under the names the page gives them.

A block that cannot run as written says so on the line before it, `<!-- not run: why -->`, and stays rare.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest

import tflrnn
import tflrnn.cli
from support import random_weights, write_onnx_rnn, write_state_dict

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>.+?)\s*-->")


def test_every_relative_link_resolves():
    assert len(PAGES) >= 5
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[0] for line in first_block] == ["scripts/demo.sh", "scripts/test.sh"]
    assert (ROOT / ".ci" / "run").read_text().count("scripts/test.sh") == 1


# The blocks -----------------------------------------------------------------------------------------------------


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    not_run: str | None  # why, when the page says so

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line} ({self.language or 'no language'})"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, k = [], 0
    while k < len(lines):
        if lines[k].startswith("```"):
            start, language = k, lines[k][3:].strip()
            end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marked = NOT_RUN.fullmatch(before.strip())
            found.append(Block(page, start + 1, language, "\n".join(lines[start + 1:end]) + "\n",
                               marked["why"] if marked else None))
            k = end
        k += 1
    return found


def test_every_block_has_a_language_and_each_exception_a_reason():
    """A block is code of a kind the page test runs, or marked with why it is not run; a marker marks a block."""
    known = {"python", "sh", "text", "toml", "json"}
    unknown = [str(b) for page in PAGES for b in blocks(page) if b.language not in known]
    assert not unknown, f"blocks of no language the doc test runs: {unknown}"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        markers = sum(NOT_RUN.fullmatch(line.strip()) is not None for line in text.splitlines())
        assert markers == sum(b.not_run is not None for b in blocks(page)), f"{page.name}: a marker marks no block"
    skipped = [b for page in PAGES for b in blocks(page) if b.not_run]
    assert len(skipped) <= 4, [f"{b}: {b.not_run}" for b in skipped]  # few: most of the docs run


def _commands(text: str) -> list[list[str]]:
    """A shell block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [words for words in (shlex.split(line, comments=True) for line in joined.splitlines()) if words]


def _line_pattern(line: str):
    """A line of output as a page shows it, as a pattern of what the command must print. A line that is only
    `...` stands for any lines (None); elsewhere `...` stands for any text, and a hex digest cut short
    (`659abbf3...`) for any digest; a float in e-notation (an error measured: `1.79e-07`) for any such float, a
    version (`2.3.0`) for any version; spaces for any run of spaces. Everything else must be printed as shown."""
    if line.strip() == "...":
        return None
    wild = {"digest": "[0-9a-f]+", "any": ".*", "float": r"\d+(?:\.\d+)?e[-+]\d+", "version": r"\d+\.\d+\.\d+\S*",
            "space": r"\s+"}
    pattern, position = [], 0
    for found in re.finditer(r"(?P<digest>[0-9a-f]{6,}\.\.\.)|(?P<any>\.\.\.)|(?P<float>\d+(?:\.\d+)?e[-+]\d+)"
                             r"|(?P<version>\b\d+\.\d+\.\d+\b)|(?P<space>\s+)", line.rstrip()):
        pattern += [re.escape(line[position:found.start()]), wild[found.lastgroup]]
        position = found.end()
    pattern.append(re.escape(line.rstrip()[position:]))
    return re.compile("".join(pattern))


def _matches(expected: list, printed: list[str]) -> bool:
    if not expected:
        return not printed
    if expected[0] is None:
        return any(_matches(expected[1:], printed[k:]) for k in range(len(printed) + 1))
    return bool(printed) and expected[0].fullmatch(printed[0].rstrip()) is not None and \
        _matches(expected[1:], printed[1:])


def _sessions(text: str) -> list[tuple[list[str], list[str]]]:
    """A text block's `$ tflrnn ...` commands, each with the output lines shown under it."""
    sessions = []
    for line in text.splitlines():
        if line.startswith("$ "):
            sessions.append((shlex.split(line[2:], comments=True), []))
        elif sessions:
            sessions[-1][1].append(line)
    return sessions


def _run_tflrnn(words: list[str], capsys, block: Block):
    assert words[0] == "tflrnn", f"{block}: `{' '.join(words)}` is not a tflrnn command: mark the block " \
                                 "<!-- not run: why --> or make it one"
    if "--manifest" in words:
        # build --manifest forks its workers, and a fork after TensorFlow's threads started (the pages' Python
        # imports it, in this process) can deadlock: it runs in a process of its own, as from a user's shell.
        done = subprocess.run([sys.executable, "-m", "tflrnn", *words[1:]], capture_output=True, text=True,
                              timeout=900)
        return done.returncode, done.stdout, done.stderr
    tflrnn.cli._debug = False
    with pytest.raises(SystemExit) as exit_info:
        tflrnn.cli.main(words[1:])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _schema_checked(block: Block, directory: Path) -> None:
    """A TOML or JSON block follows the schema of what it is; a cell config also builds."""
    from tflrnn.config import BuildOptions, parse_document, resolve_build_options, validate

    suffix = ".toml" if block.language == "toml" else ".json"
    document = parse_document(block.text, Path(f"block{suffix}"))
    if "models" in document:
        validate(document, "manifest.schema.json", str(block))
        return
    validate(document, "cell-config.schema.json", str(block))
    path = directory / f"config-{block.line}{suffix}"
    path.write_text(block.text, encoding="utf-8")
    tflrnn.build(**resolve_build_options(BuildOptions(config=path)).options)


def _file_name(block: Block) -> str | None:
    first = block.text.splitlines()[0] if block.text.strip() else ""
    named = re.fullmatch(r"#\s*(\S+\.(?:toml|json))", first.strip())
    return named[1] if named and block.language in ("toml", "json") else None


# The files that stand for the user's own ------------------------------------------------------------------------


def _keras():
    return pytest.importorskip("keras", reason="the docs' Keras files need the test extra")


def _save(model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


def _speech_keras(path: Path) -> None:
    """README's model: 50 steps of 40 features, SimpleRNN(64), Dense(5, softmax)."""
    keras = _keras()
    _save(keras.Sequential([keras.Input((50, 40)), keras.layers.SimpleRNN(64, return_sequences=True),
                            keras.layers.Dense(5, activation="softmax")]), path)


def _checkpoint(directory: Path, scope: str, weights) -> None:
    """Variables named as TfLiteRNNCell named them, saved by a TF1 graph."""
    tf = pytest.importorskip("tensorflow", reason="a TF checkpoint needs the test extra")
    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        with tf.compat.v1.variable_scope(scope):
            for name, value in zip(("input_weights", "recurrent_weights", "bias"), weights):
                tf.compat.v1.get_variable(name, initializer=value)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(directory / "model.ckpt"))


def _converted(path: Path) -> None:
    """What TensorFlow's converter makes of a Keras SimpleRNN (the model `bench --vs` compares with), and that Keras
    model beside it as <name>.keras (the source `verify --against` compares it with)."""
    import contextlib
    import io

    keras = _keras()
    tf = pytest.importorskip("tensorflow", reason="the converter needs the test extra")
    model = keras.Sequential([keras.Input((50, 32), batch_size=2), keras.layers.SimpleRNN(64, return_sequences=True)])
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the SavedModel's signature
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    _save(model, path.with_suffix(".keras"))


def _speech_samples(directory: Path) -> None:
    """Representative inputs of the speech model, [N, B, T, I], and others to test it on."""
    rng = np.random.default_rng(0)
    np.save(directory / "speech_samples.npy", rng.standard_normal((16, 1, 50, 40)).astype(np.float32))
    np.save(directory / "speech_test.npy", rng.standard_normal((4, 1, 50, 40)).astype(np.float32))


def _readme_files(directory: Path) -> None:
    _speech_samples(directory)


def _cli_files(directory: Path) -> None:
    keras = _keras()
    _speech_keras(directory / "speech.keras")
    _speech_samples(directory)
    _save(keras.Sequential([keras.Input((20, 32)), keras.layers.SimpleRNN(64, return_sequences=True,
                                                                          name="encoder")]), directory / "model.keras")
    np.savez(directory / "trained.npz", **tflrnn.CellWeights(*random_weights(64, 32)).to_tflite())
    write_state_dict(directory / "rnn.safetensors", [0], units=64, input_size=32)
    pytest.importorskip("onnx", reason="the ONNX file needs the test extra")
    write_onnx_rnn(directory / "exported.onnx")
    _checkpoint(directory / "ckpt", "encoder/rnn", random_weights(16, 8, seed=3))
    _save(keras.Sequential([keras.Input((None, 40)), keras.layers.SimpleRNN(64, return_sequences=True),
                            keras.layers.Bidirectional(keras.layers.SimpleRNN(32)), keras.layers.Dropout(0.2),
                            keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5, activation="softmax")]),
          directory / "classifier.keras")
    _save(keras.Sequential([keras.Input((50, 40)), keras.layers.SimpleRNN(32, name="rnn")]),
          directory / "weights" / "kws.keras")
    _converted(directory / "converted.tflite")


def _python_files(directory: Path) -> None:
    keras = _keras()
    _save(keras.Sequential([keras.Input((50, 32)), keras.layers.SimpleRNN(64, return_sequences=True, name="rnn")]),
          directory / "model.keras")
    write_state_dict(directory / "rnn.safetensors", [0], units=64, input_size=32)


USER_FILES = {"README.md": _readme_files, "cli.md": _cli_files, "python.md": _python_files}


# Every page, run --------------------------------------------------------------------------------------------------


@pytest.mark.tensorflow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_runs_as_written(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    page_blocks = blocks(page)
    try:
        import keras
    except ImportError:
        pass
    else:
        keras.backend.clear_session()  # Keras names layers and models from global counts: as in a fresh process
        keras.utils.set_random_seed(0)  # and draws their initial weights: the same models on every run
    USER_FILES.get(page.name, lambda directory: None)(tmp_path)
    for block in page_blocks:
        name = _file_name(block)
        if name is not None and not block.not_run:
            (tmp_path / name).write_text(block.text, encoding="utf-8")
    namespace = {"__name__": f"doc:{page.name}"}
    for block in page_blocks:
        if block.not_run:
            continue
        if block.language == "python":
            exec(compile(block.text, str(block), "exec"), namespace)
            from tflrnn.verification.report import VerifyReport

            failed = [name for name, value in namespace.items() if isinstance(value, VerifyReport) and not value.passed]
            assert not failed, f"{block}: the page's verify reports {failed} failed"
        elif block.language == "sh":
            for words in _commands(block.text):
                code, out, err = _run_tflrnn(words, capsys, block)
                failed = [line for line in out.splitlines() if line.startswith("FAIL")]
                assert code == 0, f"{block}: `{' '.join(words)}` exited {code}: {err.strip()} {failed}"
        elif block.language == "text":
            sessions = _sessions(block.text)
            assert sessions, f"{block}: a text block with no `$ tflrnn` command; mark it <!-- not run: why -->"
            for words, shown in sessions:
                code, out, err = _run_tflrnn(words, capsys, block)
                expected = 2 if any(s.startswith("tflrnn: error:") for s in shown) else \
                    1 if any(s.startswith("FAIL ") for s in shown) else 0
                assert code == expected, f"{block}: `{' '.join(words)}` exited {code}: {err.strip()}"
                printed = (out + err).splitlines()
                assert _matches([_line_pattern(s) for s in shown], printed), \
                    f"{block}: `{' '.join(words)}` printed\n" + "\n".join(printed) + "\nwhere the page shows\n" + \
                    "\n".join(shown)
        else:
            _schema_checked(block, tmp_path)


def test_the_line_patterns_are_strict():
    shown = ["speech.tflite: ... 29,696 bytes, sha256 659abbf3...", "..."]
    pattern = [_line_pattern(s) for s in shown]
    assert _matches(pattern, ["speech.tflite: UNIDIRECTIONAL_SEQUENCE_RNN, 29,696 bytes, sha256 " + "ab" * 32, "x"])
    assert not _matches(pattern, ["speech.tflite: UNIDIRECTIONAL_SEQUENCE_RNN, 29,697 bytes, sha256 ab"])
    assert not _matches([_line_pattern("all 15 checks passed on litert 2.3.0")],
                        ["all 14 checks passed on litert 2.4.1"])
    assert _matches([_line_pattern("max abs error 1.79e-07")], ["max abs error 3.2e-06"])


# docs/cli.md and --help ---------------------------------------------------------------------------------------


def _options(command: click.Command) -> dict[str, click.Option]:
    """A command's options by each of their names (--help is every command's, and not listed)."""
    return {name: param for param in command.params if isinstance(param, click.Option)
            for name in param.opts + param.secondary_opts if name not in ("-h", "--help")}


def _documented(section: str) -> dict[str, list[str]]:
    """The options a docs/cli.md section lists, with the values it gives them (`--merge concat\\|none`): those in
    its heading, and those that open a row of its option table."""
    heading, _, body = section.partition("\n")
    listed = re.findall(r"\[?(-{1,2}[a-z][a-z0-9-]*(?:/--[a-z][a-z0-9-]*)?)(?: ([A-Za-z0-9_.|\\-]+))?\]?",
                        heading.split("`")[1] if "`" in heading else "")
    for row in re.findall(r"^\| `([^`]+)` \|", body, flags=re.MULTILINE):
        for group in row.split(", "):  # `-o, --output`
            words = group.split(" ")
            listed.append((words[0], words[1] if len(words) > 1 else ""))
    documented = {}
    for names, value in listed:
        for name in re.split(r"[/,]\s*", names):
            if name.startswith("-"):
                documented[name] = [v for v in value.replace("\\|", "|").split("|") if v] if "|" in value else []
    return documented


def _sections(text: str) -> dict[str, list[str]]:
    """docs/cli.md's `### \\`tflrnn COMMAND ...\\`` sections, by command."""
    found = {}
    for section in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        words = re.match(r"`tflrnn (\w+)", section)
        if words:
            found.setdefault(words[1], []).append(section)
    return found


def test_cli_md_names_every_option_of_every_command_and_only_those():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = _sections(text)
    assert set(sections) == set(tflrnn.cli.cli.commands), "a section per command"
    problems = []
    for name, command in tflrnn.cli.cli.commands.items():
        options = _options(command)
        documented = {}
        for section in sections[name]:
            documented.update(_documented(section))
        for param in {id(p): p for p in options.values()}.values():  # each option under any of its names
            if not set(param.opts + param.secondary_opts) & set(documented):
                problems.append(f"tflrnn {name} {param.opts[-1]} is not in docs/cli.md's section")
        for option in sorted(set(documented) - set(options)):
            problems.append(f"docs/cli.md lists {option} for tflrnn {name}, which has no such option")
        for option, values in documented.items():
            choices = getattr(options.get(option), "type", None)
            if values and isinstance(choices, click.Choice):
                shown = set(values) - {"none"} if "none" not in choices.choices else set(values)
                if not shown <= set(choices.choices):
                    problems.append(f"docs/cli.md gives {option} {'|'.join(values)}; it takes "
                                    f"{'|'.join(choices.choices)}")
    global_options = set(_options(tflrnn.cli.cli)) - {"--version"}
    for option in sorted(global_options):
        if f"tflrnn {option} " not in text:
            problems.append(f"docs/cli.md does not show `tflrnn {option} ...`")
    assert not problems, problems


def test_every_inline_command_takes_the_options_it_is_shown_with():
    """`tflrnn verify --debug` in a page, say, where --debug is an option of tflrnn itself."""
    problems = []
    for page in PAGES:
        for span in re.findall(r"`(tflrnn [^`]+)`", page.read_text(encoding="utf-8")):
            words = span.replace("[", " ").replace("]", " ").split()
            words = words[:words.index("...")] if "..." in words else words
            if len(words) < 2 or not (words[1] in tflrnn.cli.cli.commands or words[1].startswith("-")):
                continue  # `tflrnn 0.2.0`: the tool's name, not a command
            global_options = _options(tflrnn.cli.cli)
            words = words[1:]
            while words and words[0].startswith("-"):  # tflrnn's own options come before the command
                if words[0] not in global_options:
                    problems.append(f"{page.name}: `{span}`: tflrnn has no option {words[0]} before a command")
                words = words[1:]
            if not words:
                continue
            command = tflrnn.cli.cli.commands.get(words[0])
            if command is None:
                problems.append(f"{page.name}: `{span}`: no command {words[0]!r}")
                continue
            rest, known = words[1:], _options(command)
            problems += [f"{page.name}: `{span}`: tflrnn {command.name} has no option {word}" for word in rest
                         if word.startswith("--") and word.split("=")[0] not in known]
    assert not problems, problems


def test_the_help_says_what_the_options_take():
    """Help that went stale once: a batch offered as DYNAMIC (always refused), defaults that omitted the source's,
    and verify's help naming one runtime of four."""
    build = tflrnn.cli.build.get_help(click.Context(tflrnn.cli.build, info_name="build"))
    assert "--batch-size INTEGER " in build and "DYNAMIC" not in build.split("--batch-size", 1)[1].split("\n")[0]
    flat = " ".join(build.split())
    assert "Steps per invoke (default: the source's, else 1)" in flat
    assert "Batch (default: the source's, else 1)" in flat
    assert "(default: the source's, else batch-major)" in flat
    verify = " ".join(tflrnn.cli.verify.get_help(click.Context(tflrnn.cli.verify, info_name="verify")).split())
    for runtime in ("LiteRT", "tf.lite", "CompiledModel", "TFLite Micro"):
        assert runtime in verify.split("Options:")[0], runtime


def test_the_manifest_and_config_keys_are_all_documented():
    """docs/cli.md lists every key a manifest entry and a config file take (the schemas hold them)."""
    from tflrnn.config import load_schema

    text = " ".join((ROOT / "docs" / "cli.md").read_text(encoding="utf-8").split())
    entry = text.split("Entry keys:", 1)[1].split(". ", 1)[0]
    keys = set(load_schema("manifest.schema.json")["$defs"]["settings"]["properties"]) | {"name"}
    listed = set(re.findall(r"`(\w+)`", entry))
    assert keys - listed == set() and listed - keys == set(), (keys - listed, listed - keys)
    config = text.split("## Config files", 1)[1].split("```", 1)[0]
    ours = {"num_units", "units", "activation", "name", "input_size", "time_steps", "batch_size", "time_major", "seed",
            "batch_input_shape", "return_sequences", "cells", "layers", "use_bias", "quantize", "asymmetric_inputs",
            "bidirectional", "merge", "lowering", "state", "recurrence", "calibration", "io", "return_state",
            "go_backwards", "dtype", "reuse"}
    schema = set(load_schema("cell-config.schema.json")["properties"])
    assert ours <= schema  # tflrnn's keys (the rest are Keras options with no effect on inference)
    missing = {key for key in ours if not re.search(rf"`[^`]*\b{key}\b[^`]*`", config)}
    assert not missing, missing
