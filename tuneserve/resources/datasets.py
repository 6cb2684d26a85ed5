"""``client.datasets``: upload, list, read, preview and delete datasets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from tuneserve._core import Call
from tuneserve._payloads import DataFormat, UploadData, dataset_body
from tuneserve.models import Dataset, DatasetPreview, LabelCount
from tuneserve.resources._base import AsyncResource, SyncResource, path

_ONE = "/v1/datasets/{}"


def _upload_call(
    data: UploadData,
    *,
    task: str | None,
    name: str | None,
    text_column: str | None,
    label_column: str | None,
    text_pair_column: str | None,
    image_column: str | None,
    filename: str | None,
    format: DataFormat | None,
) -> Call:
    fields = {
        "task": task,
        "name": name,
        "text_column": text_column,
        "label_column": label_column,
        "text_pair_column": text_pair_column,
        "image_column": image_column,
    }
    body = dataset_body(data, fields=fields, filename=filename, format=format)
    return Call("POST", "/v1/datasets", body=body)


class Datasets(SyncResource):
    def upload(
        self,
        data: UploadData,
        *,
        task: str | None = None,
        name: str | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        text_pair_column: str | None = None,
        image_column: str | None = None,
        filename: str | None = None,
        format: DataFormat | None = None,
    ) -> Dataset:
        """Upload a dataset: a file path (streamed), the file's bytes (give ``filename`` or
        ``format``), a pandas DataFrame (sent as Parquet when pyarrow is installed, else
        CSV; or as ``format``) or a list of dicts (sent as JSON Lines). ``task`` defaults to
        the server's (``text-classification``); a fatal problem raises ``InvalidInput``
        (``dataset_invalid``, the validation report in ``details``)."""
        call = _upload_call(
            data,
            task=task,
            name=name,
            text_column=text_column,
            label_column=label_column,
            text_pair_column=text_pair_column,
            image_column=image_column,
            filename=filename,
            format=format,
        )
        return Dataset.model_validate(self._t.request(call))

    def list(self, *, page_size: int = 50) -> Iterator[Dataset]:
        """Every dataset of the tenant, newest first (pages fetched as needed)."""
        return self._pages("/v1/datasets", Dataset, {"limit": page_size})

    def get(self, dataset_id: str) -> Dataset:
        return self._get(path(_ONE, dataset_id), Dataset)

    def preview(self, dataset_id: str, *, limit: int = 20) -> DatasetPreview:
        """The first rows, each text cut short."""
        return self._get(path(_ONE + "/preview", dataset_id), DatasetPreview, {"limit": limit})

    def labels(self, dataset_id: str, *, page_size: int = 100) -> Iterator[LabelCount]:
        """Every label with its count, most frequent first."""
        return self._pages(path(_ONE + "/labels", dataset_id), LabelCount, {"limit": page_size})

    def delete(self, dataset_id: str) -> None:
        """Delete the dataset (``Conflict`` while an unfinished job uses it)."""
        self._t.request(Call("DELETE", path(_ONE, dataset_id)))


class AsyncDatasets(AsyncResource):
    async def upload(
        self,
        data: UploadData,
        *,
        task: str | None = None,
        name: str | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        text_pair_column: str | None = None,
        image_column: str | None = None,
        filename: str | None = None,
        format: DataFormat | None = None,
    ) -> Dataset:
        """As :meth:`Datasets.upload`."""
        call = _upload_call(
            data,
            task=task,
            name=name,
            text_column=text_column,
            label_column=label_column,
            text_pair_column=text_pair_column,
            image_column=image_column,
            filename=filename,
            format=format,
        )
        return Dataset.model_validate(await self._t.request(call))

    def list(self, *, page_size: int = 50) -> AsyncIterator[Dataset]:
        return self._pages("/v1/datasets", Dataset, {"limit": page_size})

    async def get(self, dataset_id: str) -> Dataset:
        return await self._get(path(_ONE, dataset_id), Dataset)

    async def preview(self, dataset_id: str, *, limit: int = 20) -> DatasetPreview:
        return await self._get(
            path(_ONE + "/preview", dataset_id), DatasetPreview, {"limit": limit}
        )

    def labels(self, dataset_id: str, *, page_size: int = 100) -> AsyncIterator[LabelCount]:
        return self._pages(path(_ONE + "/labels", dataset_id), LabelCount, {"limit": page_size})

    async def delete(self, dataset_id: str) -> None:
        await self._t.request(Call("DELETE", path(_ONE, dataset_id)))
