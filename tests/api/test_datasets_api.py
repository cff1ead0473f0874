"""Datasets: upload an .npz, list, read, delete; every refusal names the array at fault."""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from tests.helpers import assert_problem, new_session, upload

RNG = np.random.default_rng(11)
N = 24
X = RNG.random((N, 28, 28), dtype=np.float32)
Y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, N)]


def npz(**arrays: np.ndarray) -> bytes:
    """An .npz in memory."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def post_dataset(client: httpx.Client, user: str, data: bytes, name: str = "ds",
                 model_id: str | None = None) -> httpx.Response:
    form = {"name": name} | ({"model_id": model_id} if model_id else {})
    return client.post(f"/v1/users/{user}/datasets", files={"file": ("d.npz", data)}, data=form)


def new_dataset(client: httpx.Client, user: str, data: bytes, **kw: str) -> dict:  # type: ignore[type-arg]
    r = post_dataset(client, user, data, **kw)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def head_id(client: httpx.Client, head_bytes: bytes) -> str:
    return upload(client, head_bytes, "head")


def test_upload_get_list_delete(client: httpx.Client) -> None:
    data = npz(x=X, y=Y)
    ds = new_dataset(client, "dora", data, name="digits")
    assert ds["id"].startswith("ds") and ds["user_id"] == "dora" and ds["name"] == "digits"
    assert ds["num_examples"] == N
    assert ds["arrays"] == {"x": {"shape": [N, 28, 28], "dtype": "float32"},
                            "y": {"shape": [N, 10], "dtype": "float32"}}
    assert ds["sha256"] == hashlib.sha256(data).hexdigest() and ds["size_bytes"] == len(data)
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds
    other = new_dataset(client, "emil", data)

    listed = [d["id"] for d in client.get("/v1/users/dora/datasets").json()["items"]]
    assert ds["id"] in listed and other["id"] not in listed
    assert [d["id"] for d in client.get("/v1/users/emil/datasets").json()["items"]] == [
        other["id"]]

    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert_problem(client.get(f"/v1/datasets/{ds['id']}"), 404, ds["id"])
    assert_problem(client.delete(f"/v1/datasets/{ds['id']}"), 404, ds["id"])
    assert ds["id"] not in [d["id"] for d in client.get("/v1/users/dora/datasets").json()["items"]]


def test_upload_checked_against_the_model(client: httpx.Client, mlp_id: str,
                                          head_id: str) -> None:
    ds = new_dataset(client, "dora", npz(x=X, y=Y), model_id=mlp_id)
    assert ds["num_examples"] == N
    # Integers where the model takes floats are fine (cast when the job loads them) ...
    pixels = (X * 255).astype(np.uint8)
    assert new_dataset(client, "dora", npz(x=pixels, y=Y), model_id=mlp_id)["arrays"]["x"][
        "dtype"] == "uint8"
    # ... and so are int64 labels for an int32 input.
    feats = RNG.random((N, 64), dtype=np.float32)
    labels = RNG.integers(0, 4, N)
    assert new_dataset(client, "dora", npz(bottleneck=feats, label=labels),
                       model_id=head_id)["arrays"]["label"] == {"shape": [N], "dtype": "int64"}


def _single_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


def _zip_of_text() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("notes.txt", "not an array")
    return buf.getvalue()


def _pickled() -> bytes:
    buf = io.BytesIO()
    objs = np.empty(N, dtype=object)
    objs[:] = [{"label": i} for i in range(N)]
    np.savez(buf, x=X, y=objs)  # savez pickles object arrays
    return buf.getvalue()


@functools.cache
def _zip_bomb() -> bytes:
    """A small .npz that unpacks to more than the 256 MiB dataset limit."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (300 * 2**20,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("x.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(2**20)
        for _ in range(300):
            member.write(chunk)
    return buf.getvalue()


def _many_members(count: int) -> bytes:
    """A zip of `count` members that are not even arrays: the count alone must refuse it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            zf.writestr(f"a{i}.npy", b"junk")
    return buf.getvalue()


def _twice_named() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for arr in (X, X):
            member = io.BytesIO()
            np.save(member, arr)
            zf.writestr("x.npy", member.getvalue())
    return buf.getvalue()


BAD_FILES: dict[str, tuple[Callable[[], bytes], tuple[str, ...]]] = {
    "not-a-zip": (lambda: b"x,y\n1,2\n", ("not an .npz",)),
    "single-npy": (_single_npy, ("not an .npz",)),
    "zip-of-text": (_zip_of_text, ("'notes.txt'", "not an .npy")),
    "pickled-objects": (_pickled, ("'y'", "pickle")),
    "first-dims-differ": (lambda: npz(x=X, y=Y[:-1]), ("'x'", "'y'", "first dimension")),
    "scalar": (lambda: npz(x=X, y=Y, lr=np.float32(0.1)), ("'lr'", "scalar")),
    "strings": (lambda: npz(x=X, y=np.array([str(i) for i in range(N)])), ("'y'", "dtype")),
    "complex": (lambda: npz(x=X.astype(np.complex64), y=Y), ("'x'", "complex64")),
    "no-arrays": (lambda: npz(), ("no arrays",)),
    "no-examples": (lambda: npz(x=X[:0], y=Y[:0]), ("no examples",)),
    "zip-bomb": (_zip_bomb, ("unpacks to", "limit")),
    "too-many-arrays": (lambda: _many_members(10_000), ("10000 arrays", "limit is 256")),
    "one-array-too-many": (lambda: npz(**{f"a{i}": Y[:, 0] for i in range(257)}),
                           ("257 arrays", "limit is 256")),
    "name-twice": (_twice_named, ("'x'", "twice")),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_with_the_reason(client: httpx.Client, case: str) -> None:
    make, needles = BAD_FILES[case]
    assert_problem(post_dataset(client, "dora", make()), 422, *needles)


def test_upload_dataset_at_the_array_limit(client: httpx.Client) -> None:
    arrays = {f"a{i:03d}": Y[:, i % 10] for i in range(256)}
    body = new_dataset(client, "dora", npz(**arrays))
    assert len(body["arrays"]) == 256 and body["num_examples"] == N


def test_arrays_must_fit_the_models_train_signature(client: httpx.Client, mlp_id: str,
                                                   head_id: str) -> None:
    before = client.get("/v1/users/fritz/datasets").json()["items"]
    labels = RNG.integers(0, 10, N)
    assert_problem(post_dataset(client, "fritz", npz(x=X, label=labels), model_id=mlp_id), 422,
                   "'x', 'y'", "missing 'y'", "unexpected 'label'")
    assert_problem(post_dataset(client, "fritz", npz(x=X[:, :, :27], y=Y), model_id=mlp_id),
                   422, "array 'x'", "[28, 27]", "[28, 28]")
    assert_problem(post_dataset(client, "fritz", npz(x=X, y=labels), model_id=mlp_id),
                   422, "array 'y'", "[]", "[10]")
    feats = RNG.random((N, 64), dtype=np.float32)
    assert_problem(post_dataset(client, "fritz", npz(bottleneck=feats, label=labels * 1.0),
                                model_id=head_id), 422, "array 'label'", "float64", "int32")
    assert_problem(post_dataset(client, "fritz", npz(bottleneck=feats > 0.5, label=labels),
                                model_id=mlp_id), 422, "missing 'x', 'y'")
    assert client.get("/v1/users/fritz/datasets").json()["items"] == before  # nothing stored


def test_unknown_model_id_is_404(client: httpx.Client) -> None:
    assert_problem(post_dataset(client, "dora", npz(x=X, y=Y), model_id="mdl_nope"), 404,
                   "mdl_nope")


def test_mismatch_without_model_id_is_refused_at_job_creation(
        client: httpx.Client, mlp_id: str, head_id: str) -> None:
    feats = RNG.random((N, 64), dtype=np.float32)
    wrong = new_dataset(client, "gina", npz(bottleneck=feats, label=RNG.random(N)))
    sid = new_session(client, "gina", head_id)
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": wrong["id"], "epochs": 1, "batch_size": 4}), 422, "array 'label'", "int32")
    mlp_ds = new_dataset(client, "gina", npz(x=X, y=Y))
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": mlp_ds["id"], "epochs": 1, "batch_size": 4}), 422, "'bottleneck'",
        "missing", "unexpected 'x'")
    assert client.get("/v1/users/gina/jobs").json()["items"] == []


def test_another_users_dataset_is_not_found(client: httpx.Client, mlp_id: str) -> None:
    theirs = new_dataset(client, "hugo", npz(x=X, y=Y))
    sid = new_session(client, "ida", mlp_id)
    assert_problem(client.post(f"/v1/sessions/{sid}/jobs", json={
        "dataset_id": theirs["id"], "epochs": 1, "batch_size": 4}), 404, theirs["id"])
    assert client.get("/v1/users/ida/jobs").json()["items"] == []
