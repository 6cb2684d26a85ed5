"""The caps on what an upload may expand to, checked while it is read (never after).

Sizes answer 413, counts 422, each with its own code and ``details`` naming the setting:

==========================  ===================  ======  =========================================
setting (``TUNESERVE_*``)   code                 status  what is counted
==========================  ===================  ======  =========================================
``MAX_DATASET_BYTES``       ``dataset_too_large``  413   decoded bytes: the file for CSV and JSONL
                                                         (their text is the file); for Parquet the
                                                         read columns' uncompressed size from the
                                                         footer first, then their decoded size
``MAX_CELL_BYTES``          ``cell_too_large``     413   UTF-8 bytes of one cell (one label of a
                                                         label list)
(8 x ``MAX_CELL_BYTES``)    ``row_too_large``      413   characters of one CSV or JSONL line
``MAX_ROWS``                ``too_many_rows``      422   data rows
``MAX_COLUMNS``             ``too_many_columns``   422   columns of the file
``MAX_LABELS``              ``too_many_labels``    422   distinct labels
``MAX_LABEL_CHARS``         ``label_too_long``     422   characters of one label
==========================  ===================  ======  =========================================
"""

from __future__ import annotations

from pydantic import Field

from app.datasets.failures import LimitExceeded, SettingsLimits, limit_details

#: a CSV or JSONL line may hold this many cells' worth of characters
ROW_CELLS = 8


class IngestLimits(SettingsLimits):
    max_columns: int = Field(1000, description="Most columns the file may have.")
    max_cell_bytes: int = Field(1024 * 1024, description="Most UTF-8 bytes of one cell.")
    max_rows: int = Field(1_000_000, description="Most data rows the file may have.")
    max_dataset_bytes: int = Field(256 * 1024 * 1024, description="Most decoded bytes.")
    max_labels: int = Field(1000, description="Most distinct labels.")
    max_label_chars: int = Field(200, description="Longest label, in characters.")
    min_examples_per_class: int = Field(5, description="Smaller classes are reported.")

    @property
    def max_row_chars(self) -> int:
        return ROW_CELLS * self.max_cell_bytes

    def columns(self, count: int) -> None:
        if count > self.max_columns:
            raise LimitExceeded(
                f"the file has {count} columns; at most {self.max_columns} are allowed "
                "(TUNESERVE_MAX_COLUMNS)",
                code="too_many_columns",
                status=422,
                details=limit_details("MAX_COLUMNS", self.max_columns, found=count),
            )

    def rows(self, count: int, *, exact: bool) -> None:
        """``exact``: the file says how many rows it has; else ``count`` rows were read so far."""
        if count > self.max_rows:
            found = f"{count} rows" if exact else f"more than {self.max_rows} rows"
            raise LimitExceeded(
                f"the file has {found}; at most {self.max_rows} are allowed (TUNESERVE_MAX_ROWS)",
                code="too_many_rows",
                status=422,
                details=limit_details("MAX_ROWS", self.max_rows, found=count if exact else None),
            )

    def dataset_bytes(self, count: int, *, what: str) -> None:
        """``what`` says what was counted, with ``{n}`` for the count."""
        if count > self.max_dataset_bytes:
            raise LimitExceeded(
                f"{what.format(n=count)}; at most {self.max_dataset_bytes} bytes are allowed "
                "(TUNESERVE_MAX_DATASET_BYTES)",
                code="dataset_too_large",
                status=413,
                details=limit_details("MAX_DATASET_BYTES", self.max_dataset_bytes, found=count),
            )

    def cell(self, size: int | None, *, where: str, column: str | None) -> None:
        """``size`` None: the reader only knows the cell is over the cap."""
        if size is None or size > self.max_cell_bytes:
            what = f"a value of {column!r}" if column is not None else "a field"
            how = f"is {size} bytes" if size is not None else "is too long"
            raise LimitExceeded(
                f"{where}: {what} {how}; at most {self.max_cell_bytes} bytes a cell are allowed "
                "(TUNESERVE_MAX_CELL_BYTES)",
                code="cell_too_large",
                status=413,
                details=limit_details(
                    "MAX_CELL_BYTES", self.max_cell_bytes, found=size, where=where, column=column
                ),
            )

    def text_cell(self, value: str, *, where: str, column: str) -> None:
        """The cell check for a decoded string, encoding it only when it could be too long."""
        if len(value) * 4 > self.max_cell_bytes:
            self.cell(len(value.encode("utf-8", "surrogatepass")), where=where, column=column)

    def row_chars(self, size: int, *, where: str) -> None:
        if size > self.max_row_chars:
            raise LimitExceeded(
                f"{where} is longer than {self.max_row_chars} characters "
                f"({ROW_CELLS} x TUNESERVE_MAX_CELL_BYTES)",
                code="row_too_large",
                status=413,
                details=limit_details("MAX_CELL_BYTES", self.max_cell_bytes, where=where),
            )

    def labels(self, count: int, *, where: str) -> None:
        if count > self.max_labels:
            raise LimitExceeded(
                f"{where}: more than {self.max_labels} distinct labels; at most "
                f"{self.max_labels} are allowed (TUNESERVE_MAX_LABELS). Is the label column "
                "right?",
                code="too_many_labels",
                status=422,
                details=limit_details("MAX_LABELS", self.max_labels, where=where),
            )

    def label(self, label: str, *, where: str, column: str) -> None:
        if len(label) > self.max_label_chars:
            raise LimitExceeded(
                f"{where}: a label in {column!r} is {len(label)} characters; at most "
                f"{self.max_label_chars} are allowed (TUNESERVE_MAX_LABEL_CHARS)",
                code="label_too_long",
                status=422,
                details=limit_details(
                    "MAX_LABEL_CHARS",
                    self.max_label_chars,
                    found=len(label),
                    where=where,
                    column=column,
                ),
            )
