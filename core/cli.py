"""The ``lingoforge`` command line: a thin click layer.

Commands live in ``lingoforge.commands.*`` and are imported only when invoked, so ``lingoforge tasks``
does not pay for importing torch. Domain errors become ``click.ClickException`` here and only here.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from . import __version__
from .errors import LingoforgeError
from .noise import quiet_known_noise
from .plugins import get_registry

# name -> ("module:attribute", one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "tasks": ("lingoforge.commands.tasks:tasks", "List the available tasks."),
    "plugins": ("lingoforge.commands.tasks:plugins", "List installed plugins, their hooks, tasks and load errors."),
    "new-task": ("lingoforge.commands.new_task:new_task", "Scaffold an installable task plugin package."),
    "generate": ("lingoforge.commands.generate:generate", "Write synthetic multilingual examples for a task."),
    "data": ("lingoforge.commands.data:data", "Check and split datasets."),
    "labels": ("lingoforge.commands.labels:labels", "Label counts per language, rare and near-duplicate labels."),
    "tokens": ("lingoforge.commands.tokens:tokens", "Per-language token statistics and max length advice."),
    "plan": ("lingoforge.commands.plan:plan", "Estimate memory and time for training a base model."),
    "train": ("lingoforge.commands.train:train", "Train one LoRA adapter (QLoRA) on mixed-language data."),
    "eval": ("lingoforge.commands.evaluate:eval_cmd", "Evaluate a model per language and write a report."),
    "predict": ("lingoforge.commands.predict:predict", "Batch prediction to JSONL, resumable."),
    "export": ("lingoforge.commands.export:export", "Merge, convert to GGUF, quantize and write a Modelfile."),
    "deploy": ("lingoforge.commands.deploy:deploy", "Create the model on an Ollama server and check it."),
    "run": ("lingoforge.commands.run:run", "Run the whole pipeline from task to deployed model."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module on first use and maps domain errors to ClickException."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else (self.commands[name].get_short_help_str(70)))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LingoforgeError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lingoforge")
def cli() -> None:
    """Fine-tune one Qwen 2.5 model per business task on mixed-language data, and ship it to Ollama."""


def main() -> None:
    """Console-script entry point: known third-party noise is filtered before plugins or commands import
    anything, then plugins may add commands before click parses the arguments."""
    quiet_known_noise()
    get_registry().add_commands(cli)
    cli()


if __name__ == "__main__":
    main()
