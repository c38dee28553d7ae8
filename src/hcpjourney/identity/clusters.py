"""From scored pairs to HCPs: constrained clustering and stable hcp_ids.

Clustering is connected components over the pairs at or above the match
threshold, built greedily from the most to the least probable pair, with
guards against chaining: a union that would put two different NPIs (or two
records a data steward declared distinct) into one HCP is refused, so such a
cluster splits along the NPI evidence. Steward "match" decisions are applied
first, as certain links.

Stable ids: a new cluster takes the hcp_id held by most of its records in the
previous build (ties: the oldest id, then the smaller id); each previous id
goes to at most one cluster. A cluster with no previous id gets a new one
derived from its smallest record_id. Merges (a cluster absorbing records of
several previous HCPs), splits (records of one previous HCP now in several
clusters) and new HCPs are returned as identity events.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class _Components:
    """Union-find over record indices with per-component NPI and cannot-link guards."""

    def __init__(self, npi: Sequence[str | None]) -> None:
        n = len(npi)
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)
        self.npi: list[str | None] = list(npi)
        self.cannot: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.refused_npi = 0
        self.refused_decision = 0

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = int(parent[root])
        while parent[a] != root:
            parent[a], a = root, int(parent[a])
        return root

    def add_cannot_link(self, a: int, b: int) -> None:
        self.cannot[self.find(a)].append((a, b))
        self.cannot[self.find(b)].append((a, b))

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        na, nb = self.npi[ra], self.npi[rb]
        if na is not None and nb is not None and na != nb:
            self.refused_npi += 1
            return False
        ca, cb = self.cannot.get(ra), self.cannot.get(rb)
        if ca and cb:
            small = ca if len(ca) <= len(cb) else cb
            for x, y in small:
                fx, fy = self.find(x), self.find(y)
                if {fx, fy} == {ra, rb}:
                    self.refused_decision += 1
                    return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        self.npi[ra] = na if na is not None else nb
        if rb in self.cannot:
            self.cannot[ra].extend(self.cannot.pop(rb))
        return True

    def labels(self) -> np.ndarray:
        return np.fromiter((self.find(i) for i in range(len(self.parent))), np.int64,
                           count=len(self.parent))


@dataclass
class Clustering:
    record_ids: pa.Array  # sorted record ids
    labels: np.ndarray  # component label per record (index of its root)
    refused_npi: int = 0
    refused_decision: int = 0


def cluster(
    record_ids: pa.Array,
    npi: pa.Array,
    pairs: pa.Table,
    threshold: float,
    *,
    must_link: Iterable[tuple[str, str]] = (),
    cannot_link: Iterable[tuple[str, str]] = (),
) -> Clustering:
    """Cluster records (``record_ids`` sorted, ``npi`` aligned) over ``pairs`` >= ``threshold``."""
    comp = _Components(npi.to_pylist())
    index = {r: i for i, r in enumerate(record_ids.to_pylist())}
    for a, b in cannot_link:
        if a in index and b in index:
            comp.add_cannot_link(index[a], index[b])
    for a, b in must_link:
        if a in index and b in index:
            comp.union(index[a], index[b])
    strong = pairs.filter(pc.greater_equal(pairs.column("match_probability"), threshold))
    if strong.num_rows:
        li = pc.index_in(strong.column("record_id_l"), value_set=record_ids).to_numpy(
            zero_copy_only=False)
        ri = pc.index_in(strong.column("record_id_r"), value_set=record_ids).to_numpy(
            zero_copy_only=False)
        p = strong.column("match_probability").to_numpy()
        lo, hi = np.minimum(li, ri), np.maximum(li, ri)
        order = np.lexsort((hi, lo, -p))  # most probable first; ties by record order
        for i in order.tolist():
            comp.union(int(lo[i]), int(hi[i]))
    return Clustering(record_ids=record_ids, labels=comp.labels(),
                      refused_npi=comp.refused_npi, refused_decision=comp.refused_decision)


# ------------------------------------------------------------------ stable ids
def new_hcp_id(key: str, taken: set[str]) -> str:
    """'H' + 12 hex of sha256(key); a salted variant if that id was ever used."""
    n = 0
    while True:
        text = key if n == 0 else f"{key}#{n}"
        hid = "H" + hashlib.sha256(text.encode()).hexdigest()[:12]
        if hid not in taken:
            return hid
        n += 1


@dataclass
class Event:
    kind: str  # merge | split | new
    hcp_id: str
    other_hcp_id: str | None
    record_ids: list[str]
    reason: str


@dataclass
class Assignment:
    hcp_ids: pa.Array  # aligned with Clustering.record_ids
    events: list[Event] = field(default_factory=list)


def assign_ids(
    clustering: Clustering,
    previous: dict[str, str],
    *,
    age: dict[str, int] | None = None,
    taken: set[str] | None = None,
) -> Assignment:
    """Stable hcp_ids for ``clustering`` given the previous build's record -> hcp_id.

    ``age`` ranks previous ids (smaller = older); ``taken`` holds every id ever
    issued, so a retired id is never given to another HCP.
    """
    rids = clustering.record_ids.to_pylist()
    labels = clustering.labels
    age = age or {}
    taken = set(taken or ()) | set(previous.values())
    members: dict[int, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels.tolist()):
        members[lab].append(i)
    # (cluster, previous id) -> number of the cluster's records holding it
    votes: dict[tuple[int, str], int] = defaultdict(int)
    prev_of = [previous.get(r) for r in rids]
    for i, lab in enumerate(labels.tolist()):
        h = prev_of[i]
        if h is not None:
            votes[(lab, h)] += 1
    # smallest record id of each cluster (record ids are sorted: first member)
    first = {lab: rids[idx[0]] for lab, idx in members.items()}
    ranked = sorted(votes.items(), key=lambda kv: (-kv[1], age.get(kv[0][1], 1 << 62),
                                                   kv[0][1], first[kv[0][0]]))
    owner: dict[int, str] = {}
    owned: dict[str, int] = {}
    for (lab, h), _n in ranked:
        if lab in owner or h in owned:
            continue
        owner[lab] = h
        owned[h] = lab
    def previous_ids(lab: int) -> list[str]:
        return sorted({h for h in (prev_of[i] for i in members[lab]) if h is not None})

    events: list[Event] = []
    fresh: set[int] = set()
    for lab in sorted(members, key=lambda x: first[x]):
        if lab not in owner:
            hid = new_hcp_id(first[lab], taken)
            taken.add(hid)
            owner[lab] = hid
            fresh.add(lab)
            recs = [rids[i] for i in members[lab]]
            olds = previous_ids(lab)  # all of them live on in other clusters
            if olds:  # split off previous HCPs whose ids stayed with larger parts
                for o in olds:
                    moved = [rids[i] for i in members[lab] if prev_of[i] == o]
                    events.append(Event("split", hid, o, moved,
                                        "records of an HCP no longer link to the rest"))
            else:
                events.append(Event("new", hid, None, recs, "records that link to no known HCP"))
    # merges: previous ids whose records now sit in another id's cluster
    for lab, hid in owner.items():
        if lab in fresh:
            continue
        for o in (h for h in previous_ids(lab) if h != hid):
            moved = [rids[i] for i in members[lab] if prev_of[i] == o]
            if o in owned:  # that id lives on elsewhere: part of its records moved here
                events.append(Event("split", hid, o, moved,
                                    "records of an HCP now link to another HCP"))
            else:
                events.append(Event("merge", hid, o, moved, "records of two HCPs now link"))
    ids = [owner[lab] for lab in labels.tolist()]
    return Assignment(hcp_ids=pa.array(ids, pa.string()), events=events)
