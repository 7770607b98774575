"""Shell completion for bash, zsh, fish and PowerShell, as typer provides it (`seqcli
--install-completion`, `--show-completion`): command names, options, and file paths for
arguments and option values (the shell's own file completion, when seqcli suggests nothing).

typer renders each suggestion's help through rich, which wraps text longer than the terminal
and so splits one zsh or fish suggestion over several lines; here the help is one plain line.
Loaded only when the shell asks for completions (`_SEQCLI_COMPLETE` is set).
"""

from __future__ import annotations

from typer._click.shell_completion import CompletionItem, add_completion_class
from typer._completion_classes import FishComplete, PowerShellComplete, ZshComplete


def _one_line(text: str | None) -> str:
    """`text` on one line, its whitespace collapsed."""
    return " ".join((text or "").split())


class _ZshComplete(ZshComplete):
    """zsh, each suggestion `"value":"help"`."""

    def format_completion(self, item: CompletionItem) -> str:
        """`"value":"help"`, quoted for zsh's `_arguments`."""
        def escape(text: str) -> str:
            return (text.replace('"', '""').replace("'", "''").replace("$", "\\$")
                    .replace("`", "\\`").replace(":", r"\\:"))

        if item.help:
            return f'"{escape(item.value)}":"{escape(_one_line(item.help))}"'
        return f'"{escape(item.value)}"'


class _FishComplete(FishComplete):
    """fish, each suggestion `value<TAB>help`."""

    def format_completion(self, item: CompletionItem) -> str:
        """`value<TAB>help`."""
        if item.help:
            return f"{item.value}\t{_one_line(item.help)}"
        return f"{item.value}"


class _PowerShellComplete(PowerShellComplete):
    """PowerShell, each suggestion `value:::help`."""

    def format_completion(self, item: CompletionItem) -> str:
        """`value:::help`."""
        return f"{item.value}:::{_one_line(item.help) or ' '}"


def register() -> None:
    """Answer the shells with one-line help (after typer registered its own classes)."""
    add_completion_class(_ZshComplete, "zsh")
    add_completion_class(_FishComplete, "fish")
    add_completion_class(_PowerShellComplete, "powershell")
    add_completion_class(_PowerShellComplete, "pwsh")
