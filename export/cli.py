"""The `keras-models` command: tour, export, inspect, list.

Each subcommand imports what it needs (Keras, TensorFlow, the converters, the library) when it runs, so
that `--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _load_calibration(path: str):
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: calibration file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise SystemExit(f"error: cannot read calibration file {str(path)!r}: {error}") from error
    if hasattr(data, "files"):  # .npz: one array per model input, in file order
        return [data[name] for name in data.files]
    return data


def _cmd_export(args):
    if not (args.tflite or args.onnx):
        raise SystemExit("error: give --tflite OUT.tflite and/or --onnx OUT.onnx")
    source = Path(args.model)
    if not source.is_file():
        raise SystemExit(f"error: model file {str(source)!r} does not exist")
    if source.suffix == ".keras" and not zipfile.is_zipfile(source):
        size = source.stat().st_size
        raise SystemExit(
            f"error: {str(source)!r} is not a valid .keras archive: a .keras file is a zip archive, and this "
            f"one ({size:,} bytes) is {'empty' if size == 0 else 'truncated or not a zip archive'}"
        )

    import keras

    import export
    import keras_models  # noqa: F401  (registers every keras-models class for safe loading)

    try:
        model = keras.saving.load_model(source, compile=False)  # export needs no optimizer or loss
    except Exception as error:
        raise SystemExit(f"error: cannot load {str(source)!r} as a Keras model: {error}") from error
    calibration = _load_calibration(args.calibration) if args.calibration else None
    generation = {"generation": True, "max_length": args.max_length} if args.generation else {}
    if args.max_length is not None and not args.generation:
        raise SystemExit("error: --max-length applies only with --generation")
    try:
        if args.tflite:
            report = export.to_tflite(
                model,
                args.tflite,
                quantization=args.quantize,
                representative_data=calibration,
                batch_size=args.batch_size,
                int8_io=args.int8_io,
                streaming=args.streaming,
                **generation,
            )
            print(report)
            if calibration is not None and not (args.streaming or args.generation):
                print(export.verify(model, args.tflite, _first_samples(calibration)))
        if args.onnx:
            report = export.to_onnx(model, args.onnx, opset=args.opset, batch_size=args.batch_size,
                                    streaming=args.streaming, **generation)
            print(report)
            if calibration is not None and not (args.streaming or args.generation):
                print(export.verify(model, args.onnx, _first_samples(calibration)))
    except export.ExportError as error:
        raise SystemExit(f"error: {error}") from error


def _first_samples(calibration, count=8):
    if isinstance(calibration, list):
        return [c[:count] for c in calibration]
    return calibration[:count]


def _cmd_inspect(args):
    import export

    try:
        print(export.inspect(args.artifact))
    except export.ExportError as error:
        raise SystemExit(f"error: {error}") from error


def _cmd_list(args):
    import keras_models

    try:
        infos = keras_models.list_models(family=args.family)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    name_width = max([len("name"), *(len(info.name) for info in infos)])
    family_width = max([len("family"), *(len(info.family) for info in infos)])
    print(f"{'name':<{name_width}}  {'family':<{family_width}}  description")
    for info in infos:
        print(f"{info.name:<{name_width}}  {info.family:<{family_width}}  {info.description}")


def _cmd_tour(args):
    from export.tour_cases import tour_cases

    try:
        tour_cases(args.families)  # an unknown family is an error before anything is imported or written
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit(f"error: --epochs must be a positive integer; got {args.epochs}")
    if args.seed < 0:
        raise SystemExit(f"error: --seed must be a non-negative integer; got {args.seed}")

    import keras

    from export.tour import run_tour

    xla = args.xla or ("on" if keras.backend.backend() == "tensorflow" else "default")
    results = run_tour(
        output_dir=Path(args.output),
        families=args.families or None,
        verbose=not args.quiet,
        xla={"on": True, "off": False, "default": None}[xla],
        epochs=args.epochs,
        seed=args.seed,
    )
    return 0 if all(r.error is None for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-models",
        description="Build, train and ship classic model families as TFLite and ONNX.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    tour = commands.add_parser(
        "tour",
        help="train, export and verify one small model per family",
        description="Trains one small model per family on the current Keras backend (KERAS_BACKEND), exports "
        "each to TFLite and ONNX through TensorFlow (in a TensorFlow subprocess when another backend "
        "trained), runs the files in LiteRT and onnxruntime and prints a table.",
    )
    tour.add_argument("--output", default="tour_output", help="folder for the exported files")
    tour.add_argument("--families", nargs="*", help="only these families")
    tour.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    tour.add_argument(
        "--xla",
        choices=["on", "off", "default"],
        help="compile the training step (XLA on TensorFlow, jax.jit on JAX, torch.compile on PyTorch), "
        "not, or as each family's measured default on this backend and device. Default: on under "
        "TensorFlow; the library default elsewhere (jit under JAX, eager under PyTorch, where "
        "torch.compile costs minutes per model on a CPU)",
    )
    tour.add_argument("--epochs", type=int, help="train each Keras model for this many epochs (a quick check)")
    tour.add_argument("--seed", type=int, default=0,
                      help="seed for the random generators, set before each model (default 0: the same table every run)")
    tour.set_defaults(func=_cmd_tour)

    exp = commands.add_parser("export", help="export a saved .keras model to TFLite and/or ONNX")
    exp.add_argument("model", help="the .keras file")
    exp.add_argument("--tflite", help="the .tflite file to write")
    exp.add_argument("--onnx", help="the .onnx file to write")
    exp.add_argument("--quantize", choices=["dynamic", "float16", "int8"], help="TFLite quantization")
    exp.add_argument("--calibration", help=".npy (or .npz, one array per input) of representative inputs")
    exp.add_argument("--int8-io", action="store_true", help="int8 inputs and outputs with --quantize int8")
    exp.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    exp.add_argument("--batch-size", type=int, help="fix the batch axis (default: dynamic)")
    exp.add_argument("--streaming", action="store_true",
                     help="write a one-step model of a recurrent network (inputs without the time axis, "
                          "states state_0, state_1, ...)")
    exp.add_argument("--generation", action="store_true",
                     help="write the parts a device generates tokens with (encode, decode); run them with "
                          "export.generate(path, token_ids)")
    exp.add_argument("--max-length", type=int, help="with --generation: the longest sequence to generate")
    exp.set_defaults(func=_cmd_export)

    insp = commands.add_parser("inspect", help="show inputs, outputs, operators and size of an artifact")
    insp.add_argument("artifact", help="a .tflite or .onnx file")
    insp.set_defaults(func=_cmd_inspect)

    lst = commands.add_parser("list", help="list the models keras_models.build knows")
    lst.add_argument("--family", help="only this family")
    lst.set_defaults(func=_cmd_list)

    commands.add_parser(
        "launch", add_help=False,
        help="run a training script as several local processes joined by jax.distributed "
             "(keras-models launch --help)")
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["launch"]:  # its own parser: everything after the script goes to the script
        from keras_models.distributed.launcher import main as launch_main

        return launch_main(argv[1:], prog="keras-models launch")
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
