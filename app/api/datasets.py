"""A user's datasets: upload an .npz, list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from app.api.auth import OwnUser, PrincipalDep, check_owner
from app.api.deps import CtxDep, Cursor, Limit, Name, listed
from app.errors import PayloadTooLarge
from app.schemas import examples
from app.schemas.common import TEXT_PATTERN, ListOf
from app.schemas.training import Dataset
from app.services import datasets

router = APIRouter(tags=["datasets"])


@router.post("/v1/users/{user_id}/datasets", status_code=201, response_model=Dataset,
             summary="Upload a dataset",
             description="Upload an `.npz` whose arrays are named after the `train` "
             "signature's inputs and share their first dimension (the examples). With "
             "`model_id`, the arrays are checked against that model's signature now (422 "
             "naming the array); otherwise when a job uses them.")
async def upload_dataset(
    ctx: CtxDep, who: PrincipalDep, user_id: OwnUser,
    file: Annotated[UploadFile, File(description=".npz with arrays named after train inputs")],
    name: Name,
    model_id: Annotated[str | None, Form(description="Check the arrays against this model's "
                                                     "train signature now",
                                         pattern=TEXT_PATTERN,
                                         examples=[examples.MODEL_ID])] = None,
) -> Dataset:
    """Upload a dataset; arrays share their first dimension (the examples)."""
    limit = ctx.settings.max_dataset_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"dataset file is over the limit of {limit} bytes")
    row = await run_in_threadpool(datasets.create, ctx, user_id=user_id, name=name, data=data,
                                  model_id=model_id)
    return Dataset.model_validate(row)


@router.get("/v1/users/{user_id}/datasets", response_model=ListOf[Dataset],
            summary="List a user's datasets",
            description="The user's datasets, newest first, a page at a time.")
def list_datasets(ctx: CtxDep, who: PrincipalDep, user_id: OwnUser, limit: Limit = 50,
                  cursor: Cursor = None) -> ListOf[Dataset]:
    """The user's datasets, newest first."""
    page = datasets.get_all(ctx, user_id=user_id, limit=limit, cursor=cursor)
    return listed(Dataset, page)


@router.get("/v1/datasets/{dataset_id}", response_model=Dataset, summary="Get a dataset",
            description="A dataset: its number of examples and each array's shape and "
            "dtype.")
def get_dataset(ctx: CtxDep, who: PrincipalDep, dataset_id: str) -> Dataset:
    """One dataset."""
    row = datasets.get(ctx, dataset_id=dataset_id)
    check_owner(who, row.user_id, "dataset", dataset_id)
    return Dataset.model_validate(row)


@router.delete("/v1/datasets/{dataset_id}", status_code=204, response_class=Response,
               summary="Delete a dataset",
               description="Delete the dataset and its file.")
def delete_dataset(ctx: CtxDep, who: PrincipalDep, dataset_id: str) -> Response:
    """Delete a dataset."""
    check_owner(who, datasets.get(ctx, dataset_id=dataset_id).user_id, "dataset", dataset_id)
    datasets.delete(ctx, dataset_id=dataset_id)
    return Response(status_code=204)
