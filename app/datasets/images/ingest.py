"""Turn an uploaded zip of images into the canonical image table the trainer reads.

The zip is vetted (:mod:`.archive`), its rows planned (:mod:`.layout`), then each image is
read from the zip, decoded, converted and shrunk (:mod:`.decode`) one at a time and written to
the Parquet file in row groups of at most :data:`ROW_GROUP_ROWS` rows, through the atomic
writer of :mod:`app.datasets.canonical`. Canonical columns (nothing else, no nulls): ``image``
(binary: PNG of the RGB copy), ``label`` (string; ``image-classification``) or ``labels``
(list<string>; ``image-multilabel``), ``width``, ``height`` (int32, the original size),
``mode`` (the original Pillow mode), ``source`` (the member's path in the zip).

As for tables (:mod:`app.datasets.ingest`): a fatal problem raises
:class:`~app.errors.DatasetInvalid` (422, details = the report), a cap or an unsafe archive its
own 413 or 422 (:mod:`.limits`), an upload that does not claim to be a zip 415; nothing is
written at ``dest`` then.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from app.contract.tasks import IMAGE_MULTILABEL
from app.datasets.canonical import (
    IMAGE_COLUMNS,
    IMAGE_META_COLUMNS,
    AtomicParquetWriter,
    canonical_schema,
)
from app.datasets.failures import IngestFailure, LimitExceeded
from app.datasets.images.archive import IMAGE_EXTENSIONS, Archive, Corrupt, open_archive
from app.datasets.images.decode import decode_image
from app.datasets.images.layout import ImageColumns, Item, plan
from app.datasets.images.limits import ImageLimits
from app.datasets.images.report import ImageStats, ImageValidationReport
from app.datasets.limits import IngestLimits
from app.errors import DatasetInvalid, UnsupportedMediaType

#: a row group holds at most this many images (and about :data:`ROW_GROUP_BYTES` of PNG)
ROW_GROUP_ROWS = 256
ROW_GROUP_BYTES = 8 * 1024 * 1024
_DECLARED = {"zip", "application/zip", "application/x-zip-compressed"}


def claim_zip(filename: str, declared: str | None) -> None:
    """An image dataset is a zip: by its declared format, else its extension (415 if not)."""
    if declared is not None and declared.strip():
        if declared.split(";")[0].strip().lower() in _DECLARED:
            return
        raise UnsupportedMediaType(
            f"unsupported format {declared!r} for an image dataset; upload a zip ('zip')"
        )
    suffix = PurePath(filename).suffix.lower()
    if suffix != ".zip":
        raise UnsupportedMediaType(
            f"an image dataset is a .zip of images (class folders, or images and a labels.csv "
            f"or labels.jsonl); {filename!r} is {suffix or 'without an extension'}"
        )


def ingest_zip(
    src: Path,
    *,
    filename: str,
    task: str,
    columns: ImageColumns,
    dest: Path,
    limits: IngestLimits,
    image_limits: ImageLimits,
    declared_format: str | None = None,
) -> ImageValidationReport:
    """Validate the zip at ``src``; write the canonical Parquet atomically to ``dest``."""
    claim_zip(filename, declared_format)
    stats = ImageStats(store_max_side=image_limits.image_store_max_side)
    label_name = "labels" if task == IMAGE_MULTILABEL else "label"
    schema = canonical_schema((*IMAGE_COLUMNS[task], *IMAGE_META_COLUMNS))
    writer: AtomicParquetWriter | None = None
    try:
        with open_archive(src, image_limits) as archive:
            items = plan(archive, task=task, columns=columns, limits=limits, stats=stats)
            writer = AtomicParquetWriter(
                dest, schema, flush_rows=ROW_GROUP_ROWS, flush_size=ROW_GROUP_BYTES
            )
            for item in items:
                row = _row(archive, item, label_name, image_limits, stats)
                if row is not None:
                    writer.add(row)
        _check_result(task, stats, image_limits)
        writer.commit(dest)
    except (IngestFailure, UnicodeDecodeError) as exc:
        if writer is not None:
            writer.abort()
        if isinstance(exc, LimitExceeded):
            raise exc.to_app_error() from None
        message = str(exc)
        if isinstance(exc, UnicodeDecodeError):
            message = (
                f"the labels file is not valid UTF-8: byte 0x{exc.object[exc.start]:02x} "
                "cannot be decoded; save it as UTF-8"
            )
        report = stats.report(min_examples=limits.min_examples_per_class, errors=[message])
        raise DatasetInvalid(message, details=report.model_dump()) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return stats.report(min_examples=limits.min_examples_per_class, errors=[])


def _row(
    archive: Archive, item: Item, label_name: str, limits: ImageLimits, stats: ImageStats
) -> dict[str, object] | None:
    """The canonical row of one image, or None when it is corrupt (counted)."""
    name = item.member.name
    expected = IMAGE_EXTENSIONS[item.member.suffix]
    try:
        data = archive.read(item.member)
        decoded = decode_image(data, name=name, expected=expected, limits=limits)
    except Corrupt as exc:
        stats.corrupt(name, str(exc))
        return None
    stats.keep(
        name,
        item.label,
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        digest=decoded.digest,
    )
    return {
        "image": decoded.png,
        label_name: item.label,
        "width": decoded.width,
        "height": decoded.height,
        "mode": decoded.mode,
        "source": name,
    }


def _check_result(task: str, stats: ImageStats, limits: ImageLimits) -> None:
    s = stats.section
    if s.files and s.corrupt / s.files > limits.image_max_corrupt_share:
        shown = ", ".join(repr(c.name) for c in s.corrupt_files[:5])
        raise IngestFailure(
            f"{s.corrupt} of {s.files} images ({s.corrupt / s.files:.1%}) cannot be decoded; at "
            f"most {limits.image_max_corrupt_share:.1%} may be (TUNESERVE_IMAGE_MAX_CORRUPT_SHARE)"
            f": {shown}"
        )
    if not s.decoded:
        raise IngestFailure("no image could be used: every row was dropped or undecodable")
    labels = sorted(stats.label_counts)
    if len(labels) < 2:
        what = "distinct labels" if task == IMAGE_MULTILABEL else "classes"
        raise IngestFailure(f"{task} needs at least 2 {what}; found {len(labels)}: {labels}")
