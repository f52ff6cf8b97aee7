"""MkDocs hooks (`hooks:` in mkdocs.yml): the CLI reference is written from the parser itself when
the site is built, so it lists every command and option the code has, with its help and default."""

from __future__ import annotations

import argparse

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' signature)
    if MARKER not in markdown:
        return markdown
    from vizneuron.cli import build_parser

    return markdown.replace(MARKER, cli_reference(build_parser()))


def cli_reference(parser: argparse.ArgumentParser, prefix: str = "vizneuron") -> str:
    """One section per (sub)command: its usage line, description and a table of its options."""
    parts = []
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = [a for a in parser._actions if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]
    if prefix != "vizneuron" or options:
        parts.append(f"### `{prefix}`\n")
        if parser.description:
            parts.append(parser.description.strip() + "\n")
        parts.append("```\n" + parser.format_usage().replace("usage: ", "").strip() + "\n```\n")
        if options:
            rows = ["| argument | default | what it does |", "|---|---|---|"]
            for action in options:
                name = ", ".join(action.option_strings) or action.dest
                default = "" if action.default in (None, argparse.SUPPRESS, False) else f"`{action.default}`"
                text = (action.help or "").replace("|", "\\|").replace("\n", " ")
                if action.choices and not isinstance(action.choices, dict):
                    text += f" (one of: {', '.join(map(str, action.choices))})"
                rows.append(f"| `{name}` | {default} | {text} |")
            parts.append("\n".join(rows) + "\n")
    for group in subcommands:
        for name, sub in group.choices.items():
            parts.append(cli_reference(sub, f"{prefix} {name}"))
    return "\n".join(parts)
