"""The help pages, written as a man page or `git help` writes them: a one-line summary per
command, placeholders that read as values (`-o FILE`, `--batch-size N`), and an `Examples:`
section taken from the end of the command's docstring.

A command's docstring is its help: the first line is its summary in `seqcli --help`, the
paragraphs after it its description, and the lines after `Examples:` are shown as written.
"""

from __future__ import annotations

import inspect
import sys

from typer.core import TyperArgument, TyperCommand, TyperGroup

EXAMPLES = "Examples:"
"""The line of a docstring after which its examples start."""

UNBOUNDED = 2**31 - 1
"""A maximum this large is a technical limit, not one a user needs to read in the help."""

PLACEHOLDERS = {int: "N", float: "F"}
"""The placeholder of an option without a `metavar`, by its type (anything else: TEXT)."""


def split_help(text: str | None) -> tuple[str, str]:
    """(description, examples) of a command's docstring."""
    text = inspect.cleandoc(text or "")
    description, _, examples = text.partition(f"\n{EXAMPLES}\n")
    return description.strip(), inspect.cleandoc(examples)


def summary_line(text: str | None) -> str:
    """A docstring's first paragraph on one line: the command's summary, never cut short."""
    first = split_help(text)[0].split("\n\n")[0]
    return " ".join(first.split())


def placeholder(param) -> str:
    """What an option's value is called in the help: its `metavar`, else one by type."""
    if param.metavar:
        return param.metavar
    described = getattr(param, "type_descriptor", None)
    if getattr(described, "is_choice", False) and described.choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in described.choices) + "]"
    annotation = getattr(described, "annotation", None)
    return " ".join([PLACEHOLDERS.get(annotation, "TEXT")] * max(param.nargs, 1))


def _names(param) -> str:
    """`-o, --output FILE`, `--shuffle / --no-shuffle`: short names first."""
    def joined(names):
        return ", ".join(sorted(names, key=lambda name: (name.startswith("--"), name)))

    text = joined(param.opts)
    if param.secondary_opts:
        text += " / " + joined(param.secondary_opts)
    if not (param.is_flag or param.count):
        text += f" {placeholder(param)}"
    return text


def _value_range(param, name: str) -> str | None:
    """`1<=N<=65536`, `N>=1`: the bounds of a number option, by its placeholder's name."""
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if high is not None and high >= UNBOUNDED:
        high = None
    if low is not None and high is not None:
        return f"{low}<={name}<={high}"
    if low is not None:
        return f"{name}>={low}"
    return f"{name}<={high}" if high is not None else None


def _default(param) -> str | None:
    """The default a help line shows, if any."""
    if isinstance(param.show_default, str):
        return param.show_default
    default = param.default
    if not param.show_default or default is None or callable(default):
        return None
    if getattr(param, "is_bool_flag", False):
        if param.secondary_opts:
            return (param.opts if default else param.secondary_opts)[0]
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default)) or None
    return str(default)


def _help_line(param, name: str) -> str:
    """The help of a parameter, followed by its default, bounds and whether it is required."""
    extra = []
    default = _default(param)
    if default is not None and not param.required:
        extra.append(f"default: {default}")
    bounds = _value_range(param, name)
    if bounds:
        extra.append(bounds)
    if param.required:
        extra.append("required")
    text = param.help or ""
    return f"{text}  [{'; '.join(extra)}]" if extra else text


def _usage_name(argument) -> str:
    """`MODEL`, `[INPUT]`, `MODEL...`: an argument in the usage line."""
    name = argument.metavar or argument.name.upper()
    name = name if argument.required else f"[{name}]"
    return f"{name}..." if argument.nargs != 1 else name


class _HelpPage:
    """What the command and the group share: summary, parameters, examples."""

    def __init__(self, *args, help: str | None = None, **kwargs):
        description, self.examples = split_help(help)
        super().__init__(*args, help=description or None, **kwargs)

    def get_short_help_str(self, limit: int = 45) -> str:
        """The summary line, whole (the help of `seqcli` wraps it rather than cut it)."""
        return self.short_help or summary_line(self.help)

    def collect_usage_pieces(self, ctx) -> list[str]:
        """`[OPTIONS] MODEL [INPUT]`."""
        pieces = [self.options_metavar] if self.options_metavar else []
        pieces += [_usage_name(param) for param in self.get_params(ctx)
                   if isinstance(param, TyperArgument)]
        return pieces

    def format_options(self, ctx, formatter) -> None:
        """Arguments and options, each with its placeholder, default and bounds."""
        arguments, options = [], []
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if isinstance(param, TyperArgument):
                name = param.metavar or param.name.upper()
                arguments.append((name, _help_line(param, name)))
            else:
                options.append((_names(param), _help_line(param, placeholder(param))))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter) -> None:
        """The examples, as written in the docstring."""
        if self.examples:
            with formatter.section(EXAMPLES.rstrip(":")):
                for line in self.examples.splitlines():
                    formatter.write(f"{'':>{formatter.current_indent}}{line}".rstrip() + "\n")

    def get_help(self, ctx) -> str:
        """The help page, in characters stdout can show (`seqcli.io.terminal`)."""
        from seqcli.io.terminal import printable

        return printable(super().get_help(ctx), sys.stdout)


class SeqcliCommand(_HelpPage, TyperCommand):
    """A seqcli command (`seqcli summary`, ...)."""


class SeqcliGroup(_HelpPage, TyperGroup):
    """`seqcli` itself: its options, its commands with their summaries, its examples."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        """`[OPTIONS] COMMAND [ARGS]...`."""
        return [*super().collect_usage_pieces(ctx), self.subcommand_metavar]

    def format_options(self, ctx, formatter) -> None:
        """Options, then the commands."""
        super().format_options(ctx, formatter)
        self.format_commands(ctx, formatter)
