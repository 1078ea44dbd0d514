"""The typer application. Thin: every command parses options and calls the library."""

from __future__ import annotations

import typer

from echoclr.cli import data_cmds, demo_cmd, gradcam_cmd, train_cmds
from echoclr.cli import eval_cmds
from echoclr.cli import bench_cmds
from echoclr.cli import experiment_cmds
from echoclr.cli import embed_cmds

app = typer.Typer(
    name="echoclr",
    help="Self-supervised contrastive learning on echocardiogram videos (EchoCLR).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_cmds.register(app)
demo_cmd.register(app)
train_cmds.register(app)
gradcam_cmd.register(app)
eval_cmds.register(app)
bench_cmds.register(app)
experiment_cmds.register(app)
embed_cmds.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
