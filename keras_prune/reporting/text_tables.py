"""`as_text`: a `rich` table (or any renderable) as the plain text a terminal would show, for
the `table()` methods of the results that print one."""


class _Discard:
    """A file that drops what is written: the console records the text, prints nothing."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def as_text(renderable, width):
    """`renderable` laid out `width` columns wide, as plain text (no colours).

    Example:

    ```python
    from rich.table import Table
    table = Table("layer", "drop")
    table.add_row("conv1", "0.012")
    print(as_text(table, width=40))
    ```
    """
    from rich.console import Console

    console = Console(record=True, width=width, file=_Discard())
    console.print(renderable)
    return console.export_text()
