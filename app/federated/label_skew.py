"""Label-skewed splits: classes dealt to clients, McMahan's shards, Dirichlet proportions.

Each function returns every example's client (-1 for an example no client holds) from
integer class ids and a generator; the checks that name a spec field live in partition.py.
All three first shuffle the examples and then sort them stably by label, so that a run of
one class is a random subset of it rather than a run of the dataset's order (which may
follow writers or time).
"""

from __future__ import annotations

import numpy as np


def sorted_by_label(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Example indices shuffled, then sorted stably by class id."""
    shuffled = rng.permutation(len(ids))
    return shuffled[np.argsort(ids[shuffled], kind="stable")]


def deal_classes(num_classes: int, clients: int, per_client: int,
                 rng: np.random.Generator) -> np.ndarray:
    """[clients, per_client] distinct class indices, each class dealt to about as many clients.

    The classes are laid out as shuffled passes of all classes, and client i takes slots
    i*k..i*k+k-1: inside a pass every class appears once, so the classes' client counts
    differ by at most one. Where a client's slots straddle two passes, the new pass puts
    the classes that client already took last, which keeps its k classes distinct (k <= C).
    """
    c, k = num_classes, per_client
    slots = clients * k
    passes = -(-slots // c)
    seq = rng.permuted(np.tile(np.arange(c, dtype=np.int64), (passes, 1)), axis=1).ravel()
    if c % k:  # only then can a client's slots straddle a pass boundary
        flat = seq.tolist()  # plain lists: a numpy call per boundary costs 10x more
        for start in range(c, passes * c, c):
            taken = set(flat[start - start % k:start])
            if taken and not taken.isdisjoint(flat[start:start + k - len(taken)]):
                row = flat[start:start + c]
                flat[start:start + c] = ([x for x in row if x not in taken]
                                         + [x for x in row if x in taken])
        seq = np.array(flat, dtype=np.int64)
    return seq[:slots].reshape(clients, k)


def by_classes(by_label: np.ndarray, class_sizes: np.ndarray, dealt: np.ndarray) -> np.ndarray:
    """Each class's examples split evenly (array_split sizes) among the clients dealt it.

    A class dealt to no client (clients x k under the number of classes) goes to none (-1).
    """
    clients, k = dealt.shape
    slot_class = dealt.ravel()
    slot_client = np.repeat(np.arange(clients, dtype=np.int64), k)
    order = np.argsort(slot_class, kind="stable")  # slots grouped by class, as by_label is
    holders = np.bincount(slot_class, minlength=len(class_sizes))
    first = np.concatenate([[0], np.cumsum(holders)[:-1]])
    cls = slot_class[order]
    rank = np.arange(slot_class.size) - first[cls]
    sizes = class_sizes[cls] // holders[cls] + (rank < class_sizes[cls] % holders[cls])
    client_of = np.full(len(by_label), -1, dtype=np.int64)
    dealt_out = np.repeat(holders > 0, class_sizes)  # fewer slots than classes leave some out
    client_of[by_label[dealt_out]] = np.repeat(slot_client[order], sizes)
    return client_of


def mcmahan_shards(by_label: np.ndarray, clients: int, per_client: int,
                   rng: np.random.Generator) -> np.ndarray:
    """flwr-datasets' ShardPartitioner with num_shards_per_node given, nothing else.

    Shards of floor(n / (clients x per_client)) consecutive examples of the label order;
    a permutation of the whole shards, its first clients x per_client dealt per_client to
    each client in turn. As in Flower, the examples past the last whole shard, and any
    whole shard beyond the dealt ones, go to no client (-1).
    """
    n = len(by_label)
    num_shards = clients * per_client
    size = n // num_shards
    usable = n // size
    picked = rng.permutation(usable)[:num_shards]
    owner = np.full(usable, -1, dtype=np.int64)
    owner[picked] = np.repeat(np.arange(clients, dtype=np.int64), per_client)
    client_of = np.full(n, -1, dtype=np.int64)
    client_of[by_label[:usable * size]] = np.repeat(owner, size)
    return client_of


def dirichlet_draw(by_label: np.ndarray, class_sizes: np.ndarray, clients: int, alpha: float,
                   rng: np.random.Generator) -> np.ndarray:
    """One draw: per class, proportions ~ Dir(alpha) over clients, cut as Flower cuts them.

    flwr-datasets' DirichletPartitioner takes the floor of the cumulative sums and gives
    the rest to the last client; its self-balancing is not applied here.
    """
    client_of = np.empty(len(by_label), dtype=np.int64)
    start = 0
    for size in class_sizes:
        proportions = rng.dirichlet(np.full(clients, alpha))
        cuts = np.minimum((np.cumsum(proportions) * size).astype(np.int64)[:-1], size)
        per_client = np.diff(np.concatenate([[0], cuts, [size]]))
        client_of[by_label[start:start + size]] = np.repeat(np.arange(clients), per_client)
        start += size
    return client_of
