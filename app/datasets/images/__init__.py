"""Image datasets: a zip of images (class folders, or a ``labels.csv`` / ``labels.jsonl``)
vetted from its central directory (:mod:`.archive`), laid out into rows (:mod:`.layout`),
each image decoded with Pillow one at a time (:mod:`.decode`), counted (:mod:`.report`) and
written to the canonical Parquet table (:mod:`.ingest`). The zip is never extracted to disk.
"""
