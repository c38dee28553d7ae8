"""Reasons for each recommendation: its top drivers and the rules that removed the alternatives.

Drivers, in order:

* channel: the HCP's own engagement on this channel against peers ("opens 3.0x
  more emails than peers (6/9)"), or the model's probability when the HCP has
  too little history ("62% likely to accept");
* content: the content attribute with the largest positive effect for this HCP
  (fixed + segment + the HCP's own affinity): "efficacy content", "clinical
  tone", "detail aid", "key message: ...";
* timing: the best local weekday and hour ("Tue 18:00");
* journey: the expected move to the next stage ("consideration -> decision +4%").

Then ``not eligible: ...``: the per-HCP rules that removed alternatives (opt-outs,
missing opt-ins, contact caps, recent skips) and the catalogue-wide ones (MLR
status, expiry, quiet periods, no response history), with counts.

Strings are built column-wise (numpy/pyarrow); only the distinct per-HCP rule
patterns are formatted one by one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hcpjourney.nba.catalogue import RULE_TEXT, Catalogue
from hcpjourney.nba.eligibility import OPT_IN, OPT_OUT, Eligibility
from hcpjourney.nba.history import CONTENT_ATTRIBUTES, ContentVocab, Hcps
from hcpjourney.nba.models import WEEKDAYS, ActionCodes, Progression, ResponseModel, Timing

VERBS: dict[str, tuple[str, str, str]] = {
    # action type -> (verb, noun, likely-phrase)
    "email": ("opens", "emails", "to open"),
    "sms": ("clicks", "SMS", "to click"),
    "f2f_visit": ("accepts", "rep visits", "to accept"),
    "remote_visit": ("accepts", "remote visits", "to accept"),
    "phone_call": ("takes", "calls", "to take the call"),
    "webinar_invitation": ("registers for", "webinar invitations", "to register"),
    "msl_meeting": ("accepts", "MSL meetings", "to accept"),
    "sample": ("accepts", "sample drops", "to accept"),
}
ATTR_LABEL = {"theme": "content", "tonality": "tone", "format": "", "aesthetics": "design",
              "key_message": ""}
MIN_TOUCHES = 3


def slot_labels() -> np.ndarray:
    return np.array([f"{WEEKDAYS[s // 24]} {s % 24:02d}:00" for s in range(7 * 24)], dtype=object)


def _attr_text(attr: str, value: str) -> str:
    v = value.replace("_", " ")
    if attr == "key_message":
        return f"key message: {value}"
    if attr == "format":
        return v
    return f"{v} {ATTR_LABEL[attr]}"


def _join(parts: list[pa.Array], sep: str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep, null_handling="skip")


def channel_driver(model: ResponseModel, hix: np.ndarray, type_code: np.ndarray, p: np.ndarray,
                   type_names: list[str]) -> pa.Array:
    n = hix.size
    verb = np.array([VERBS.get(t, ("engages with", t, "to engage"))[0] for t in type_names], object)
    noun = np.array([VERBS.get(t, ("engages with", t, "to engage"))[1] for t in type_names], object)
    likely = np.array([VERBS.get(t, ("engages with", t, "to engage"))[2] for t in type_names], object)
    if model.hcp_rate is not None and model.hcp_touches is not None and model.channel_rate is not None:
        rate = model.hcp_rate[hix, type_code]
        cnt = model.hcp_touches[hix, type_code]
        peer = model.channel_rate[type_code]
    else:
        rate, cnt, peer = np.full(n, np.nan), np.zeros(n), np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = rate / peer
    strong = (cnt >= MIN_TOUCHES) & np.isfinite(ratio) & (ratio >= 1.2)
    eng = np.round(np.nan_to_num(rate) * cnt).astype(np.int64)
    txt_strong = (verb[type_code] + " " + np.char.mod("%.1f", np.nan_to_num(ratio)).astype(object)
                  + "\u00d7 more " + noun[type_code] + " than peers ("
                  + eng.astype(str).astype(object) + "/" + cnt.astype(np.int64).astype(str).astype(object)
                  + ")")
    pct = np.char.mod("%d", np.round(100 * p).astype(np.int64)).astype(object)
    txt_model = pct + "% likely " + likely[type_code]
    out = np.where(strong, txt_strong, txt_model)
    if model.fallback is not None:
        unscored = np.isfinite(model.fallback[type_code])
        out = np.where(unscored, "no response history yet: scored at the lowest channel rate (" + pct
                       + "%)", out)
    return pa.array(out.astype(str), pa.string())


def content_driver(model: ResponseModel, hcps: Hcps, vocab: ContentVocab, hix: np.ndarray,
                   attrs: dict[str, np.ndarray]) -> pa.Array:
    n = hix.size
    best = np.full(n, -np.inf)
    label = np.full(n, None, dtype=object)
    e = model.effects
    for a in CONTENT_ATTRIBUTES:
        c = attrs[a]
        has = c >= 0
        if not has.any():
            continue
        cc = np.maximum(c, 0)
        eff = e[f"attr:{a}"][cc] + e[f"hcp_attr:{a}"][hix, cc]
        if f"seg_attr:{a}" in e and hcps.segments is not None:
            eff = eff + np.einsum("ng,gn->n", hcps.segments[hix], e[f"seg_attr:{a}"][:, cc])
        eff = np.where(has, eff, -np.inf)
        texts = np.array([_attr_text(a, v) for v in vocab.values[a]] or [""], dtype=object)
        better = eff > best
        best = np.where(better, eff, best)
        label = np.where(better, texts[cc], label)
    label[~(best > 0.02)] = None
    return pa.array(label.tolist(), pa.string())


def timing_driver(timing: Timing, rows: np.ndarray, kind: np.ndarray) -> pa.Array:
    labels = slot_labels()
    return pa.array(labels[timing.slot[rows, kind]].astype(str), pa.string())


def journey_driver(progression: Progression, hcps: Hcps, hix: np.ndarray, type_code: np.ndarray,
                   prog: np.ndarray) -> pa.Array:
    if not progression.stage_names:
        return pa.nulls(hix.size, pa.string())
    names = ["no stage", *progression.stage_names]
    s = np.minimum(hcps.stage[hix], len(progression.stage_names))
    nxt = np.array([*progression.stage_names, ""], dtype=object)
    frm = np.array(names, dtype=object)
    txt = (frm[s] + " \u2192 " + nxt[s] + " +"
           + np.char.mod("%.1f", 100 * prog).astype(object) + "%")
    ok = (prog >= 0.005) & (s < len(progression.stage_names))
    out = np.asarray(txt, dtype=object)
    out[~ok] = None
    return pa.array(out.tolist(), pa.string())


def catalogue_blocked_text(catalogue: Catalogue) -> str | None:
    counts = Counter(b.rule for b in catalogue.blocked)
    if not counts:
        return None
    parts = [f"{k} {RULE_TEXT.get(rule, rule)}"
             for rule, k in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
    return "catalogue: " + ", ".join(parts)


def blocked_text(elig: Eligibility, catalogue: Catalogue, rows: np.ndarray,
                 opt_in_required: tuple[str, ...]) -> pa.Array:
    """Per row (an HCP index into the eligibility arrays): the rules that removed alternatives."""
    G = len(elig.groups)
    st = elig.status[rows]
    code = np.zeros(rows.size, dtype=np.int64)
    for g in range(G):  # 2 bits per group (opted out / missing opt-in), then caps and skips
        ch = elig.groups[g][0]
        code |= (st[:, g] == OPT_OUT).astype(np.int64) << (2 * g)
        if ch in opt_in_required:
            code |= (st[:, g] != OPT_IN).astype(np.int64) << (2 * g + 1)
    code |= elig.cap_week[rows].astype(np.int64) << (2 * G)
    code |= elig.cap_month[rows].astype(np.int64) << (2 * G + 1)
    code |= elig.skipped[rows].any(axis=1).astype(np.int64) << (2 * G + 2)
    uniq, inv = np.unique(code, return_inverse=True)
    common = catalogue_blocked_text(catalogue)
    texts: list[str | None] = []
    for u in uniq.tolist():
        parts: list[str] = []
        for g in range(G):
            ch, purpose = elig.groups[g]
            if u >> (2 * g) & 1:
                parts.append(f"{ch} ({purpose}: {RULE_TEXT['opted_out']})")
            elif u >> (2 * g + 1) & 1:
                parts.append(f"{ch} ({purpose}: {RULE_TEXT['no_opt_in']})")
        if u >> (2 * G) & 1:
            parts.append(RULE_TEXT["contact_cap_week"])
        if u >> (2 * G + 1) & 1:
            parts.append(RULE_TEXT["contact_cap_month"])
        if u >> (2 * G + 2) & 1:
            parts.append(RULE_TEXT["recently_skipped"])
        if common:
            parts.append(common)
        texts.append("not eligible: " + "; ".join(parts) if parts else None)
    return pa.array(texts, pa.string()).take(pa.array(inv))


def reasons(model: ResponseModel, hcps: Hcps, catalogue: Catalogue, codes: ActionCodes,
            vocab: ContentVocab, timing: Timing, progression: Progression, elig: Eligibility,
            rows: np.ndarray, hix: np.ndarray, action: np.ndarray, p: np.ndarray, prog: np.ndarray,
            opt_in_required: tuple[str, ...], explored: np.ndarray | None = None
            ) -> dict[str, pa.Array]:
    """Columns reason, drivers, timing and blocked for recommendation rows.

    ``rows`` index the arrays of ``timing`` and ``elig`` (the scored HCPs), ``hix``
    the HCP universe, ``action`` the catalogue.
    """
    type_names = [t.name for t in model.space.types]
    t_code = codes.type_code[action]
    attrs = {a: codes.attrs[a][action] for a in CONTENT_ATTRIBUTES}
    ch = channel_driver(model, hix, t_code, p, type_names)
    ct = content_driver(model, hcps, vocab, hix, attrs)
    tm = timing_driver(timing, rows, codes.kind[action])
    jr = journey_driver(progression, hcps, hix, t_code, prog)
    parts = [ch, ct, tm, jr]
    if explored is not None and explored.any():
        ex = pa.array(["exploration draw" if x else None for x in explored.tolist()], pa.string())
        parts = [ex, *parts]
    drivers = _join(parts, "; ")
    blocked = blocked_text(elig, catalogue, rows, opt_in_required)
    reason = _join([drivers, blocked], "; ")
    return {"reason": reason, "drivers": drivers, "timing": tm, "blocked": blocked}
