"""Split one dataset into clients: iid, dirichlet (label skew), shards, natural groups.

shards: `classes_per_client` k gives every client exactly k distinct classes, each class
dealt to about as many clients and its examples split evenly among them;
`shards_per_client` is McMahan's split as flwr-datasets' ShardPartitioner makes it (which
may leave a few examples to no client). dirichlet redraws, as Flower does, until every
client holds at least `min_partition_size` examples (holdout included).

The assignment of examples to clients is vectorised (no Python loop over examples); each
client's holdout is drawn lazily, when the client is looked up, from a generator seeded by
(seed, client_id), so splitting 1,000,000 examples over 100,000 clients costs ~0.2 s and a
client costs only when it is used. Same arguments, same partition, always.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from app.errors import InvalidInput
from app.federated import label_skew
from app.federated.seeds import generator

KINDS = ("iid", "dirichlet", "shards", "natural")
DEFAULTS: dict[str, dict[str, Any]] = {
    "iid": {},
    "dirichlet": {"alpha": 0.5, "min_partition_size": 10},
    "shards": {"classes_per_client": 2},
    "natural": {"by": None},
}
# Parameters a kind takes beyond its defaults; shards takes exactly one of its two.
OPTIONAL: dict[str, tuple[str, ...]] = {"shards": ("shards_per_client",)}
# flwr-datasets' DirichletPartitioner raises after its 11th draw (tries 0..10).
DIRICHLET_DRAWS = 11


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields with np.array_equal
class ClientData:
    """One client's examples as read-only int64 indices into the dataset, ascending."""

    client_id: int
    train: np.ndarray
    holdout: np.ndarray
    key: str | None  # natural: the client's value of the `by` array, as a string


class Partition(Sequence[ClientData]):
    """The clients of a partition, by client id; `partition[i]` builds client i's ClientData."""

    def __init__(self, client_of: np.ndarray, counts: np.ndarray, num_holdout: np.ndarray,
                 keys: tuple[str, ...] | None, seed: int) -> None:
        # Each example's client (-1: none, shards_per_client's remainder), for statistics.
        self.client_of = _frozen(client_of)
        # Dataset indices grouped by client; stable, so ascending within each client.
        self._order = _frozen(np.argsort(client_of, kind="stable"))
        unheld = len(client_of) - int(counts.sum())  # the -1s sort first
        self._offsets = unheld + np.concatenate([[0], np.cumsum(counts)])
        self.num_holdout = _frozen(num_holdout)
        self.num_train = _frozen(counts - num_holdout)
        self.keys = keys
        self._seed = seed

    def __len__(self) -> int:
        return len(self.num_train)

    @overload
    def __getitem__(self, index: int) -> ClientData: ...

    @overload
    def __getitem__(self, index: slice) -> list[ClientData]: ...

    def __getitem__(self, index: int | slice) -> ClientData | list[ClientData]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        cid = range(len(self))[index]  # negative indices and IndexError as for a list
        examples = self._order[self._offsets[cid]:self._offsets[cid + 1]]
        k = int(self.num_holdout[cid])
        if k == 0:
            train, holdout = examples, examples[:0]
        else:
            keep = np.ones(len(examples), dtype=bool)
            keep[generator(self._seed, "holdout", cid).permutation(len(examples))[:k]] = False
            train, holdout = _frozen(examples[keep]), _frozen(examples[~keep])
        return ClientData(cid, train, holdout, None if self.keys is None else self.keys[cid])


def class_ids(label_array: np.ndarray) -> np.ndarray:
    """Class ids (int64) of one-hot or probability rows (argmax) or of integer ids."""
    a = np.asarray(label_array)
    if a.ndim == 2 and a.shape[1] == 1 and a.dtype.kind in "iu":
        a = a[:, 0]  # a column of ids, not a one-class one-hot
    if a.ndim == 1 and a.dtype.kind in "iu":
        if a.size and a.min() < 0:
            raise InvalidInput(f"label: class ids must be >= 0, found {int(a.min())}")
        return a.astype(np.int64)
    if a.ndim == 2 and a.shape[1] > 1 and a.dtype.kind in "biuf":
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise InvalidInput("label: label rows hold NaN or infinite values")
        return np.argmax(a, axis=1).astype(np.int64)
    raise InvalidInput("label: expected one-hot or probability rows [N, classes] or integer "
                       f"class ids [N], got shape {list(a.shape)} and dtype {a.dtype}")


def partition_spec(partition: Mapping[str, Any]) -> dict[str, Any]:
    """The partition spec checked, with its defaults filled in (InvalidInput names the field)."""
    if not isinstance(partition, Mapping):
        raise InvalidInput("partition: must be an object such as {\"kind\": \"iid\"}")
    kind = partition.get("kind")
    if kind not in KINDS:
        got = "missing" if kind is None else f"unknown partition {kind!r}"
        raise InvalidInput(f"partition.kind: {got} (known: {', '.join(KINDS)})")
    takes = (*DEFAULTS[kind], *OPTIONAL.get(kind, ()))
    for name in partition:
        if name != "kind" and name not in takes:
            raise InvalidInput(f"partition.{name}: unknown parameter for {kind} (it takes "
                               f"{', '.join(takes) or 'no parameter'})")
    if kind == "shards" and "shards_per_client" in partition:
        if "classes_per_client" in partition:
            raise InvalidInput("partition.shards_per_client: give either classes_per_client "
                               "or shards_per_client, not both")
        return {"kind": kind, "shards_per_client": _count(partition, "shards_per_client", 1)}
    spec = {"kind": kind, **DEFAULTS[kind], **partition}
    if kind == "dirichlet":
        alpha = spec["alpha"]
        if not _is_number(alpha) or not alpha > 0 or not math.isfinite(alpha):
            raise InvalidInput(f"partition.alpha: must be a finite number > 0, got {alpha!r}")
        spec["alpha"] = float(alpha)
        spec["min_partition_size"] = _count(spec, "min_partition_size", 0)
    elif kind == "shards":
        spec["classes_per_client"] = _count(spec, "classes_per_client", 1)
    elif kind == "natural" and not (isinstance(spec["by"], str) and spec["by"]):
        raise InvalidInput("partition.by: the natural partition needs the name of an extra "
                           "array of the dataset, one value per example")
    return spec


def make_clients(*, num_examples: int, partition: Mapping[str, Any], clients: int,
                 holdout: float, seed: int, labels: np.ndarray | None,
                 natural: np.ndarray | None) -> Partition:
    """Split examples 0..num_examples-1 into clients as the spec says (natural ignores clients)."""
    spec = partition_spec(partition)
    kind = spec["kind"]
    if not (_is_int(num_examples) and num_examples >= 1):
        raise InvalidInput("dataset_id: the dataset has no examples")
    if kind != "natural" and not (_is_int(clients) and clients >= 1):
        raise InvalidInput(f"clients: must be an integer >= 1, got {clients!r}")
    if not (_is_number(holdout) and 0.0 <= holdout < 1.0):
        raise InvalidInput(f"holdout: must be a number in [0, 1), got {holdout!r}")
    if not (_is_int(seed) and seed >= 0):
        raise InvalidInput(f"seed: must be an integer >= 0, got {seed!r}")
    if kind != "natural" and clients > num_examples:  # refused before any allocation
        who = f"client {num_examples}" if kind == "iid" else "some client"
        raise InvalidInput(f"partition: {who} gets no examples ({num_examples} examples over "
                           f"{clients} clients); lower clients")
    spc = spec.get("shards_per_client")
    if spc is not None and clients * spc > num_examples:
        raise InvalidInput(f"partition: {clients} clients x {spc} shards_per_client make more "
                           f"shards than the {num_examples} examples; lower clients or "
                           "partition.shards_per_client")
    rng = generator(seed, "partition")
    keys = None
    if kind == "iid":
        client_of = _iid(num_examples, clients, rng)
    elif kind == "shards":
        client_of = _shards(_labels(labels, num_examples, kind), clients, spec, rng)
    elif kind == "dirichlet":
        ids = _labels(labels, num_examples, kind)
        client_of = _dirichlet(ids, clients, spec["alpha"], spec["min_partition_size"],
                               holdout, rng)
    else:
        client_of, keys = _natural(natural, num_examples, spec["by"])
        clients = len(keys)
    counts = np.bincount(client_of[client_of >= 0], minlength=clients)
    _refuse_empty(counts, holdout)
    return Partition(client_of, counts, _num_holdout(counts, holdout), keys, seed)


def _iid(n: int, clients: int, rng: np.random.Generator) -> np.ndarray:
    # np.array_split's sizes: the first n % clients clients get one example more.
    sizes = np.full(clients, n // clients, dtype=np.int64)
    sizes[: n % clients] += 1
    client_of = np.empty(n, dtype=np.int64)
    client_of[rng.permutation(n)] = np.repeat(np.arange(clients), sizes)
    return client_of


def _shards(ids: np.ndarray, clients: int, spec: Mapping[str, Any],
            rng: np.random.Generator) -> np.ndarray:
    class_sizes = np.bincount(ids)
    present = np.flatnonzero(class_sizes)
    if present.size < 2:
        raise InvalidInput(f"partition: shards needs labels of 2 classes or more, the "
                           f"dataset's labels hold {present.size}; use iid")
    by_label = label_skew.sorted_by_label(ids, rng)
    if "shards_per_client" in spec:
        return label_skew.mcmahan_shards(by_label, clients, spec["shards_per_client"], rng)
    k = spec["classes_per_client"]
    if k > present.size:
        raise InvalidInput(f"partition.classes_per_client: {k} is more than the "
                           f"{present.size} classes the dataset's labels hold")
    dealt = label_skew.deal_classes(present.size, clients, k, rng)
    holders = np.bincount(dealt.ravel(), minlength=present.size)
    short = np.flatnonzero(class_sizes[present] < holders)
    if short.size:
        c = short[0]
        raise InvalidInput(f"partition.classes_per_client: class {present[c]} has "
                           f"{class_sizes[present[c]]} examples for {holders[c]} clients; lower "
                           "clients or partition.classes_per_client")
    return label_skew.by_classes(by_label, class_sizes[present], dealt)


def _dirichlet(ids: np.ndarray, clients: int, alpha: float, min_size: int, holdout: float,
               rng: np.random.Generator) -> np.ndarray:
    # Redrawn while a client is under min_size or keeps no training example; the class's
    # examples are shuffled first, where Flower cuts them in dataset order.
    if clients * min_size > len(ids):
        raise InvalidInput(f"partition.min_partition_size: {clients} clients x {min_size} "
                           f"examples is more than the dataset's {len(ids)}; lower "
                           "partition.min_partition_size or clients")
    by_label = label_skew.sorted_by_label(ids, rng)
    class_sizes = np.bincount(ids)
    class_sizes = class_sizes[class_sizes > 0]
    for _ in range(DIRICHLET_DRAWS):
        client_of = label_skew.dirichlet_draw(by_label, class_sizes, clients, alpha, rng)
        counts = np.bincount(client_of, minlength=clients)
        if counts.min() >= min_size and (counts - _num_holdout(counts, holdout) >= 1).all():
            return client_of
    if min_size > 1 and counts.min() < min_size:
        c = int(np.argmin(counts))
        raise InvalidInput(f"partition.min_partition_size: no draw of {DIRICHLET_DRAWS} gave "
                           f"every client {min_size} examples (client {c} got {counts[c]}); "
                           "lower partition.min_partition_size or clients, or raise "
                           "partition.alpha")
    return client_of  # after the last draw; make_clients says which client is short


def _natural(by: np.ndarray | None, n: int, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if by is None:
        raise InvalidInput(f"partition.by: the dataset has no array named {name!r}")
    values = np.asarray(by)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or len(values) != n:
        raise InvalidInput(f"partition.by: array {name!r} must hold one value per example "
                           f"(shape [{n}]), got shape {list(values.shape)}")
    if values.dtype.kind not in "biufUS" or (
            values.dtype.kind == "f" and not np.isfinite(values).all()):
        raise InvalidInput(f"partition.by: array {name!r} must hold integer or string ids, "
                           f"got {values.dtype}")
    distinct, client_of = np.unique(values, return_inverse=True)
    keys = tuple(v.decode(errors="replace") if isinstance(v, bytes) else str(v)
                 for v in distinct.tolist())
    return client_of.astype(np.int64), keys


def _labels(labels: np.ndarray | None, n: int, kind: str) -> np.ndarray:
    if labels is None:
        raise InvalidInput(f"label: the {kind} partition needs labels")
    ids = class_ids(labels)
    if len(ids) != n:
        raise InvalidInput(f"label: has {len(ids)} rows, the dataset has {n} examples")
    return ids


def _num_holdout(counts: np.ndarray, holdout: float) -> np.ndarray:
    # Rounded half up: robust to 0.1 * 10 = 1.0000000000000002, where a ceiling is not.
    return np.floor(counts * holdout + 0.5).astype(np.int64)


def _refuse_empty(counts: np.ndarray, holdout: float) -> None:
    empty = np.flatnonzero(counts == 0)
    n, clients = int(counts.sum()), len(counts)
    if len(empty):  # only dirichlet can leave one empty once the counts were checked
        raise InvalidInput(f"partition: client {empty[0]} gets no examples ({n} examples over "
                           f"{clients} clients); raise partition.alpha or lower clients "
                           f"({DIRICHLET_DRAWS} draws tried)")
    num_holdout = _num_holdout(counts, holdout)
    starved = np.flatnonzero(counts - num_holdout == 0)
    if len(starved):
        c = starved[0]
        raise InvalidInput(f"holdout: client {c} keeps no training example after holdout "
                           f"({counts[c]} in all, {num_holdout[c]} held out); lower holdout")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    a.flags.writeable = False
    return a


def _count(spec: Mapping[str, Any], name: str, least: int) -> int:
    value = spec[name]
    if not (_is_int(value) and value >= least):
        raise InvalidInput(f"partition.{name}: must be an integer >= {least}, got {value!r}")
    return int(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool)
