"""The peer network: preferential attachment with KOL hubs, grown chunk by chunk.

Edge direction: ``src_record_id`` is the person who looks to ``dst_record_id``
(refers patients to, attends talks of, co-authors with, sits on a board with),
so influence flows from dst to src and in-degree measures influence.
"""

from __future__ import annotations

import numpy as np

from hcpjourney.contract.schemas import RELATIONSHIP_KINDS
from hcpjourney.simulate.population import People, Records
from hcpjourney.simulate.world import Window

KIND = {k: i for i, k in enumerate(RELATIONSHIP_KINDS)}


class Network:
    def __init__(self, n_total: int) -> None:
        self.attract = np.zeros(n_total)
        self.indeg = np.zeros(n_total)
        self.kol = np.zeros(n_total, dtype=bool)
        self.cardio = np.zeros(n_total, dtype=bool)
        self.org = np.zeros(n_total, dtype=np.int64)
        self.record = np.empty(n_total, dtype=object)
        self.filled = 0

    def add_chunk(self, rng: np.random.Generator, people: People, recs: Records,
                  window: Window) -> dict[str, np.ndarray]:
        g = people.gidx
        hi = int(g[-1]) + 1
        pareto = np.minimum(rng.pareto(1.3, people.n), 25.0)
        self.attract[g] = np.where(people.kol, 8.0 + 20.0 * pareto, 1.0 + 0.5 * people.cardio)
        self.kol[g] = people.kol
        self.cardio[g] = people.cardio
        self.org[g] = people.org
        self.record[g] = np.asarray(recs.ids, dtype=object)[recs.rep_record]
        self.filled = hi
        # preferential attachment: each new person links to m earlier/current persons
        m = 1 + rng.poisson(1.5, people.n) + 2 * people.kol
        src = np.repeat(g, m)
        w = self.attract[:hi] + self.indeg[:hi]
        cw = np.cumsum(w)
        dst = np.searchsorted(cw, rng.random(src.size) * cw[-1], side="right")
        dst = np.minimum(dst, hi - 1)
        # colleagues in the same organisation within the chunk
        order = np.lexsort((g, people.org))
        same = people.org[order][1:] == people.org[order][:-1]
        pick = same & (rng.random(same.size) < 0.35)
        c_src = g[order][1:][pick]
        c_dst = g[order][:-1][pick]
        src = np.concatenate([src, c_src])
        dst = np.concatenate([dst, c_dst])
        keep = src != dst
        src, dst = src[keep], dst[keep]
        key = src.astype(np.int64) * (hi + 1) + dst
        _u, first = np.unique(key, return_index=True)
        first.sort()
        src, dst = src[first], dst[first]
        # kinds
        k = src.size
        u = rng.random(k)
        kind = np.where(u < 0.5, KIND["referral"], KIND["coauthor"])
        kind = np.where((~self.cardio[src]) & self.cardio[dst], KIND["referral"], kind)
        kind = np.where(self.kol[dst], np.where(u < 0.7, KIND["speaker_attendee"],
                                                KIND["coauthor"]), kind)
        kind = np.where(self.kol[dst] & self.kol[src],
                        np.where(u < 0.6, KIND["coauthor"], KIND["advisory_peer"]), kind)
        kind = np.where(self.org[src] == self.org[dst], KIND["affiliation"], kind)
        weight = np.ones(k)
        weight = np.where(kind == KIND["referral"], rng.integers(1, 21, k), weight)
        weight = np.where(kind == KIND["coauthor"], rng.integers(1, 6, k), weight)
        weight = np.where(kind == KIND["speaker_attendee"], rng.integers(1, 5, k), weight)
        weight = np.where(kind == KIND["advisory_peer"], rng.integers(1, 4, k), weight)
        np.add.at(self.indeg, dst, 1.0)
        ts = window.t0 + rng.integers(3600, window.t1 - window.t0 - 3600, k)
        return {"src": self.record[src], "dst": self.record[dst], "kind": kind,
                "weight": weight.astype(float), "ts": ts, "src_g": src, "dst_g": dst}
