"""``elysium completion SHELL``: the script that teaches a shell to complete ``elysium``."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

COMPLETE_VAR = "_ELYSIUM_COMPLETE"  # click's own name for the ``elysium`` program


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script of SHELL.

    \b
    Examples:
      elysium completion bash > ~/.local/share/bash-completion/completions/elysium
      eval "$(elysium completion zsh)"
    """
    root = click.get_current_context().find_root().command
    cls = get_completion_class(shell)
    assert cls is not None  # the choice above lists only shells click knows
    click.echo(cls(root, {}, "elysium", COMPLETE_VAR).source())
