"""MODEL.md, the model card of an exported model dir: what it was trained on, how it was scored,
what it is for and where it is likely to fail. Written from ``model.yaml`` alone."""

from __future__ import annotations

# Known corpora (matched in the training dir's path or protocol name) -> what their speech is.
CORPORA = {
    "emodb": "acted German speech (Berlin Database of Emotional Speech: 10 actors, scripted sentences, studio recordings)",
    "iemocap": "acted and improvised English dyadic sessions (IEMOCAP: 10 actors, studio recordings)",
    "recola": "spontaneous French dyadic interactions over video conference (RECOLA)",
    "enterface": "induced English speech of mostly non-native speakers (eNTERFACE'05)",
}


def _corpus(desc: dict) -> str | None:
    proto = desc.get("protocol") or {}
    text = f"{proto.get('train_dir') or ''} {(proto.get('protocol') or {}).get('name') or ''}".lower()
    return next((v for k, v in CORPORA.items() if k in text), None)


def _pct(x) -> str:
    return f"{100 * x:.1f}" if isinstance(x, (int, float)) else "n/a"


def _scores(desc: dict) -> list[str]:
    scores = desc.get("scores") or {}
    if not scores:
        return ["No scores were found in the exp dir (`scores/*.json`): this model has not been evaluated "
                "by `emotk score`. Do not use it before it is."]
    lines = ["| set | head | metric | value | 95% CI (speaker bootstrap) | utterances | speakers |",
             "|---|---|---|---|---|---|---|"]
    for set_name, s in scores.items():
        for head, h in s["heads"].items():
            n_spk = len(s.get("speakers") or []) or "?"
            n_utt = (h.get("counts") or {}).get("utterances", "?")
            for metric, value in (h.get("metrics") or {}).items():
                ci = h.get("ua_ci95") if metric == "ua" else None
                if h["kind"] == "class":
                    val, ci_text = _pct(value), f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "n/a"
                else:
                    val, ci_text = f"{value:.3f}" if isinstance(value, (int, float)) else "n/a", "n/a"
                lines.append(f"| {set_name} | {head} | {metric} | {val} | {ci_text} | {n_utt} | {n_spk} |")
    lines += ["", "Class metrics in %. Confidence intervals resample test speakers (1000 draws, seed 0); they are "
              "given for UA of class heads, where the scores hold per-speaker confusions, and are rough with few "
              "speakers. Regression heads: no interval (the scores hold no per-speaker statistics)."]
    return lines


def model_card(desc: dict) -> str:
    model, proto = desc["model"], desc.get("protocol")
    corpus = desc.get("data_note") or _corpus(desc)
    if corpus and desc.get("synthetic") and not desc.get("data_note"):
        corpus = f"a SYNTHETIC look-alike (espeak-ng speech, simulated emotion) of {corpus}; not real speech"
    out = [f"# Model card: {model['name']}", "",
           f"Exported by emotk {desc['emotk_version']} (model dir format {desc['format']}) from "
           f"`{desc['source']['exp_dir']}`.", "", "## Model", "",
           f"- Family `{model['name']}` ({desc['framework']}), parameters: `{model.get('params') or {}}`"]
    for n, s in desc["inputs"].items():
        conf = (desc.get("data_conf") or {}).get("feats" if s["kind"] == "feats" else n) or {}
        detail = {"feats": f"{conf.get('type', 'table ' + s['table'])} at {conf.get('sample_rate', '?')} Hz, "
                           f"stack {s.get('stack', 1)}, splice {s.get('splice', [0, 0])}",
                  "wav": f"raw samples at {s.get('sample_rate')} Hz",
                  "vector": f"utterance-level vector ({s['table']}, {s['dim']} dims)"}[s["kind"]]
        out.append(f"- Input `{n}`: {detail}; normalization in training `{s['norm']}`")
    for h, s in desc["heads"].items():
        what = ", ".join(s["names"]) if s.get("names") else h
        out.append(f"- Head `{h}` ({s['kind']}): {what}")
    seg = desc["segments"]
    if seg["mode"] != "none":
        out.append(f"- Trained on pieces: {seg['mode']}, {seg['length']} s; utterance outputs are the mean over pieces")
    out += ["", "## Training data and protocol", ""]
    if corpus:
        out.append(f"- Data: {corpus}.")
    if proto:
        p = proto.get("protocol") or {}
        out += [f"- Training set: {proto['train']['utterances']} utterances of {proto['train']['speakers']} speakers "
                f"(`{proto.get('train_dir')}`); selection (early stopping, hyper-parameters) on the valid set: "
                f"{proto['valid']['utterances']} utterances of {proto['valid']['speakers']} speakers, never on test.",
                f"- Protocol: {p.get('name') or 'not recorded'}"
                + (f", fold `{p.get('fold')}`" if p.get("fold") else "")
                + ("" if not p else ", speaker-independent" if p.get("speaker_independent") else
                   ", **speaker-dependent (test speakers were seen in training)**") + f"; seed {proto.get('seed')}."]
    else:
        out.append("- No provenance record in the exp dir: the training data are not documented here.")
    out += ["", "## Metrics", "", *_scores(desc), "", "## Normalization of an unseen speaker", ""]
    for n, s in desc["normalization"].items():
        out.append(f"- `{n}` (trained with `{s['trained']}`): {s['unseen_speaker']}.")
    out.append(f"- Training statistics: {desc['global_stats_source']}.")
    out += ["", "## Intended use", "",
            "Research on speech emotion recognition: scoring recordings similar to the training data (language, "
            "recording conditions, speaking style, label set) and comparing systems. The outputs are estimates of "
            "the emotion a listener would label, from the voice only; they are not a measurement of what a person "
            "feels.", "", "## Limits", ""]
    if corpus:
        out.append(f"- Trained on {corpus}: expect lower accuracy on other languages, spontaneous speech, other "
                   "microphones and noise.")
    if proto:
        out.append(f"- Few training speakers ({proto['train']['speakers']}): speaker-to-speaker variation is large; "
                   "see the confidence intervals.")
    out += ["- Labels are those of the training corpus only: "
            + "; ".join(f"{h}: {', '.join(s['names'])}" for h, s in desc["heads"].items() if s.get("names")) + ".",
            "- Recordings shorter than about 0.5 s, silent or with several speakers give unreliable outputs "
            "(`emotk infer` warns on short and silent files).",
            "- Not for decisions about individuals (hiring, health, policing, surveillance).", "",
            "## Versions", "", *[f"- {k}: {v}" for k, v in desc["versions"].items()], ""]
    return "\n".join(out)
