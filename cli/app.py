"""The typer application. Thin: every command parses options and calls the library.

Errors are turned into exit codes in one place, :class:`ErrorReportingGroup`, so every command behaves the same:
a user-facing error prints one ``error: ...`` line on stderr and exits 2 (usage/input) or 1 (runtime failure), see
:mod:`echoclr.errors`; an unexpected exception prints one line and exits 1. ``echoclr --debug COMMAND ...`` lets
the exception through with its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
import typer.core

from echoclr.cli import data_cmds, demo_cmd, gradcam_cmd, train_cmds
from echoclr.cli import eval_cmds
from echoclr.cli import bench_cmds
from echoclr.cli import experiment_cmds
from echoclr.cli import export_cmd
from echoclr.cli import embed_cmds
from echoclr.errors import EXIT_RUNTIME, exit_code_for


class ErrorReportingGroup(typer.core.TyperGroup):
    """The root command group: runs the chosen command and reports its exception as one line and an exit code."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            # click's own usage errors (unknown option, missing argument) already print and exit 2
            if isinstance(exc, typer.TyperException) or ctx.params.get("debug"):
                raise
            code = exit_code_for(exc)
            message = str(exc).strip() or type(exc).__name__
            if code is None:  # not an error we raise for users: a bug, say so without the traceback
                code = EXIT_RUNTIME
                message = f"unexpected {type(exc).__name__}: {message} (rerun with --debug for the traceback)"
            print(f"error: {message}", file=sys.stderr, flush=True)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=ErrorReportingGroup,
    name="echoclr",
    help="Self-supervised contrastive learning on echocardiogram videos (EchoCLR).\n\n"
    "Exit codes: 0 success, 2 bad input or usage (the message says what to change), 1 the run failed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    pass  # --debug is read by ErrorReportingGroup.invoke from the context


data_cmds.register(app)
demo_cmd.register(app)
train_cmds.register(app)
gradcam_cmd.register(app)
eval_cmds.register(app)
bench_cmds.register(app)
experiment_cmds.register(app)
export_cmd.register(app)
embed_cmds.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
