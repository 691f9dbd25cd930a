"""``results.html``: one self-contained page to read a whole benchmark run, offline, with a double click.

The page has the run's table (accuracy with its 95% interval, failures by kind, tokens, time), the chart (the
PNG, embedded as base64), the paired comparison of every pair of methods, and a browser of every example: the
question, the gold, each method's answer and its whole trajectory (ReAct's thoughts, actions and observations;
PAL's program, stdout and the sandbox's result or error; CoT's rationale; self-consistency's samples and vote),
side by side. It filters by method and by outcome (correct, wrong, each failure kind, methods disagreeing, "A
right and B wrong" for each pair), and searches the question text.

Safety: questions and model output are untrusted text. The static part is escaped with ``html.escape``; the
examples travel as JSON in a ``<script type="application/json">`` block with ``<``, ``>``, ``&``, U+2028 and
U+2029 escaped, so no string can close the block; the page's script builds every node with ``textContent``,
never ``innerHTML``; and a Content-Security-Policy forbids any network access and runs only the page's own script
and style (allowed by their SHA-256), so even a slip in escaping could not run injected code.

Speed: the list is virtual (only the rows in view exist in the DOM) and a question's details are built when it
is opened, so a full GSM8K run (1,319 questions x several methods) opens and filters at once. The prompts are
left out (the same few-shot prompt per method, and by far the largest field); ``samples.jsonl`` has them.

Deliberately not here: any server, any external asset (no CDN, fonts or libraries), and editing or re-scoring.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentkit.eval.compare import CI_METHOD, TEST_METHOD, Comparison
from agentkit.result import TRUNCATED, failure_label

__all__ = ["render_html", "page_data", "json_for_script"]

_EXECUTION_KEYS = ("ok", "value", "error", "stdout", "stdout_truncated")
_STEP_KEYS = ("n", "thought", "action", "argument", "observation", "status", "error", "reasked")


def json_for_script(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: nothing in it can end the element."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def _compact(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v not in (None, "", [], {}, False)}


def _slim(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows of one result (a record, a self-consistency sample or a ReAct fallback)."""
    out: dict[str, Any] = {
        "answer": result.get("answer"),
        "correct": result.get("correct"),
        "failure": result.get("failure"),
        "error": result.get("error"),
        "method": result.get("method"),
        "completions": result.get("completions"),
        "program": result.get("program"),
        "votes": result.get("votes"),
        "tokens": (result.get("prompt_tokens") or 0) + (result.get("completion_tokens") or 0),
        "seconds": (result.get("timing") or {}).get("duration"),
    }
    if isinstance(result.get("execution"), Mapping):
        out["execution"] = _compact({k: result["execution"].get(k) for k in _EXECUTION_KEYS})
        out["execution"]["ok"] = bool(result["execution"].get("ok"))
    trajectory = result.get("trajectory")
    if isinstance(trajectory, Mapping):
        out["trajectory"] = _compact(
            {
                "steps": [_compact({k: s.get(k) for k in _STEP_KEYS}) for s in trajectory.get("steps") or []],
                "finished": trajectory.get("finished"),
                "forced_finish": trajectory.get("forced_finish"),
                "fallback": _slim(trajectory["fallback"]) if isinstance(trajectory.get("fallback"), Mapping) else None,
            }
        )
    if result.get("samples"):
        out["samples"] = [_slim(s) for s in result["samples"] if isinstance(s, Mapping)]
        if not trajectory:
            out["completions"] = None  # self-consistency: the samples' own completions, shown with each sample
    return _compact(out)  # False is left out too: a missing "correct" reads as not correct


def page_data(
    methods: Mapping[str, Sequence[Mapping[str, Any]]],
    comparisons: Sequence[Comparison] = (),
) -> dict[str, Any]:
    """The JSON the page's script reads: one entry per question (in dataset order), each method's result under
    it, and ``repeat_of`` (the id of the first question with the same text) where a question repeats."""
    questions: dict[str, dict[str, Any]] = {}
    for name, records in methods.items():
        for r in records:
            q = questions.setdefault(
                r["id"],
                {
                    "id": r["id"],
                    "index": r.get("index", 0),
                    "question": r["question"],
                    "gold": r.get("gold"),
                    "results": {},
                },
            )
            q["results"][name] = _slim(r)
    ordered = sorted(questions.values(), key=lambda q: q["index"])
    first: dict[str, str] = {}
    for q in ordered:
        if first.setdefault(q["question"], q["id"]) != q["id"]:
            q["repeat_of"] = first[q["question"]]
    failures = sorted({r["failure"] for records in methods.values() for r in records if r.get("failure")})
    return {
        "methods": list(methods),
        "failures": failures,
        "failure_labels": {f: failure_label(f) for f in sorted({*failures, TRUNCATED})},  # length: "truncated"
        "pairs": [[c.a, c.b] for c in comparisons],
        "questions": ordered,
    }


# --- the static part (escaped on the server side) -----------------------------------------------------------------


def _sha256(source: str) -> str:
    """A CSP source that allows exactly this inline script or style and nothing else."""
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _js_json(value: Any) -> str:
    """JSON spelled as the page's ``JSON.stringify`` spells it (the filter options' values)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _summary_table(table: tuple[Sequence[str], Sequence[Sequence[str]]]) -> str:
    head, rows = table
    return (
        "<table class=summary><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
        + "</tbody></table>"
    )


def _comparisons_table(comparisons: Sequence[Comparison]) -> str:
    if not comparisons:
        return ""
    head = [
        "A",
        "B",
        "n",
        "both right",
        "only A right",
        "only B right",
        "both wrong",
        "A − B (points)",
        "95% CI",
        "McNemar p",
    ]
    rows = []
    for c in comparisons:

        def cell(count: int, which: str, c: Comparison = c) -> str:
            return (
                f'<td><button class=pairfilter data-filter="{_e(_js_json(["pair", c.a, c.b, which]))}" '
                f'title="show these questions">{count}</button></td>'
            )

        rows.append(
            f"<tr><td>{_e(c.a)}</td><td>{_e(c.b)}</td><td>{c.n}</td>{cell(c.both, 'both')}"
            f"{cell(c.only_a, 'only_a')}{cell(c.only_b, 'only_b')}{cell(c.neither, 'neither')}"
            f"<td>{100 * c.difference:+.1f}</td><td>{100 * c.ci95[0]:+.1f} to {100 * c.ci95[1]:+.1f}</td>"
            f"<td class={'sig' if c.p_value < 0.05 else 'nonsig'}>{c.p_value:.3g}</td></tr>"
        )
    return (
        "<h2>Paired comparisons</h2><p class=note>Each pair on the questions both answered. The interval is "
        f"{_e(CI_METHOD)}; the p-value is the {_e(TEST_METHOD)}. Click a count to list those questions.</p>"
        "<table class=pairs><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def render_html(
    *,
    config: Mapping[str, Any],
    data: Mapping[str, Any],
    table: tuple[Sequence[str], Sequence[Sequence[str]]],
    comparisons: Sequence[Comparison],
    chart_png: bytes | None = None,
) -> str:
    """The whole page as one string. ``data`` is :func:`page_data`'s; ``table`` the comparison table's
    (header, rows) of text cells (``report.summary_rows``)."""
    dataset, model, shots = config.get("dataset", "?"), config.get("model", "?"), config.get("shots", "?")
    n = len(data["questions"])
    repeats = sum("repeat_of" in q for q in data["questions"])
    facts = [f"model {model}", f"{shots}-shot", f"{n} examples", f"methods: {', '.join(data['methods'])}"]
    if repeats:
        facts.append(f"{repeats} repeat an earlier question (each scored on its own)")
    generation = config.get("generation")
    if generation:
        facts.append("generation: " + json.dumps(generation, ensure_ascii=False, sort_keys=True))
    chart = (
        f'<img class=chart alt="accuracy by method with 95% intervals" '
        f'src="data:image/png;base64,{base64.b64encode(chart_png).decode("ascii")}">'
        if chart_png
        else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; img-src data:; "
        f"style-src '{_sha256(_CSS)}'; script-src '{_sha256(_JS)}'\">"
        f"<title>{_e(dataset)} · {_e(model)} — agentkit benchmark</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Benchmark: {_e(dataset)}</h1><p class=facts>{_e(' · '.join(facts))}</p></header>"
        f"<section class=top><div>{_summary_table(table)}{_comparisons_table(comparisons)}</div>{chart}</section>"
        "<h2>Examples</h2>"
        "<div class=controls>"
        "<label>Method <select id=method></select></label>"
        "<label>Show <select id=outcome></select></label>"
        '<label>Search <input id=search type=search placeholder="question text or id"></label>'
        "<span id=count></span><span class=hint>↑/↓ or j/k to move</span></div>"
        "<div class=browser><div id=list tabindex=0><div id=spacer></div></div><div id=detail></div></div>"
        f"<script type=application/json id=data>{json_for_script(data)}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )


_CSS = """
:root{--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--line:#d0d7de;--muted:#57606a;--bg2:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:12px 20px;
  max-width:1600px;color:#1f2328}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:18px 0 6px}
.facts,.note,.hint,#count{color:var(--muted)}.note{margin:4px 0}.hint{font-size:12px}
.top{display:flex;gap:20px;align-items:flex-start;flex-wrap:wrap}.chart{max-width:520px;width:100%}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}th{background:var(--bg2)}
td.sig{font-weight:600;color:var(--ok)}
button.pairfilter{font:inherit;border:0;background:none;color:#0969da;cursor:pointer;padding:0;text-decoration:underline}
.controls{display:flex;gap:14px;align-items:center;flex-wrap:wrap;margin:6px 0 8px}
select,input{font:inherit;padding:2px 4px}input[type=search]{width:260px}
.browser{display:grid;grid-template-columns:minmax(360px,1fr) 1fr;gap:12px;height:80vh}
@media (max-width:900px){.browser{grid-template-columns:1fr;height:auto}#list{height:45vh}}
#list{position:relative;overflow-y:auto;border:1px solid var(--line);border-radius:6px;outline:none}
#spacer{position:relative}
.row{position:absolute;left:0;right:0;height:30px;display:flex;gap:8px;align-items:center;padding:0 8px;
  border-bottom:1px solid #eaeef2;cursor:pointer;white-space:nowrap;overflow:hidden}
.row:hover{background:var(--bg2)}.row.sel{background:#ddf4ff}
.row .idx{color:var(--muted);width:44px;flex:none;text-align:right}
.row .q{flex:1;overflow:hidden;text-overflow:ellipsis}.row .chips{flex:none;display:flex;gap:3px}
.chip{display:inline-block;border-radius:10px;padding:0 7px;font-size:12px;border:1px solid transparent;
  max-width:130px;overflow:hidden;text-overflow:ellipsis}
.chip.ok{background:#dafbe1;color:var(--ok)}.chip.wrong{background:#ffebe9;color:var(--bad)}
.chip.fail{background:#fff8c5;color:var(--warn)}.chip.none{background:var(--bg2);color:var(--muted)}
#detail{overflow-y:auto;border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.qtext{white-space:pre-wrap;font-size:15px;margin:6px 0}.meta{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px;margin-top:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px;min-width:0}.card.focus{border-color:#0969da}
.card h3{font-size:14px;margin:0 0 4px;display:flex;gap:6px;align-items:center;flex-wrap:wrap}
.label{font-size:12px;font-weight:600;color:var(--muted);margin-top:6px;text-transform:uppercase;letter-spacing:.03em}
pre{white-space:pre-wrap;word-break:break-word;background:var(--bg2);padding:6px;border-radius:4px;margin:2px 0;
  font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;max-height:360px;overflow:auto}
.step{border-left:3px solid var(--line);padding-left:8px;margin:6px 0}.step.bad{border-color:var(--bad)}
.err{color:var(--bad);white-space:pre-wrap}.votes span{margin-right:8px}
details{margin:4px 0}summary{cursor:pointer;color:var(--muted)}
.empty{color:var(--muted);padding:20px}
"""

_JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("data").textContent);
  var Q = DATA.questions, M = DATA.methods, ROW = 30;
  var listEl = document.getElementById("list"), spacer = document.getElementById("spacer");
  var detailEl = document.getElementById("detail"), countEl = document.getElementById("count");
  var methodSel = document.getElementById("method"), outcomeSel = document.getElementById("outcome");
  var searchEl = document.getElementById("search");
  var shown = [], selected = -1;
  Q.forEach(function (q) { q._lower = (q.question + " " + q.id).toLowerCase(); });

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function option(sel, value, text) { var o = el("option", null, text); o.value = value; sel.appendChild(o); }
  function group(sel, label) {
    var g = document.createElement("optgroup");
    g.label = label;
    sel.appendChild(g);
    return g;
  }

  // outcome of one method on one question: "ok", "wrong", a failure kind, or "none" (not run)
  function outcome(r) { return !r ? "none" : r.correct ? "ok" : (r.failure || "wrong"); }

  option(methodSel, "", "all methods");
  M.forEach(function (m) { option(methodSel, m, m); });
  option(outcomeSel, "[]", "everything");
  option(outcomeSel, JSON.stringify(["ok"]), "correct");
  option(outcomeSel, JSON.stringify(["wrong"]), "wrong answer");
  option(outcomeSel, JSON.stringify(["failed"]), "failed (any kind)");
  DATA.failures.forEach(function (f) {
    option(outcomeSel, JSON.stringify(["failure", f]), "failed: " + DATA.failure_labels[f]);
  });
  if (M.length > 1) option(outcomeSel, JSON.stringify(["disagree"]), "methods disagree");
  if (DATA.pairs.length) {
    var g = group(outcomeSel, "pairs");
    DATA.pairs.forEach(function (p) {
      [["only_a", p[0] + " right, " + p[1] + " not"], ["only_b", p[1] + " right, " + p[0] + " not"],
       ["both", "both " + p[0] + " and " + p[1] + " right"], ["neither", "neither " + p[0] + " nor " + p[1]]]
        .forEach(function (w) { option(g, JSON.stringify(["pair", p[0], p[1], w[0]]), w[1]); });
    });
  }

  function matches(q, filter, method) {
    var names = method ? [method] : M, kind = filter[0];
    if (!kind) return true;
    if (kind === "disagree") {
      var right = M.filter(function (m) { return q.results[m] && q.results[m].correct; }).length;
      var ran = M.filter(function (m) { return q.results[m]; }).length;
      return right > 0 && right < ran;
    }
    if (kind === "pair") {
      var a = q.results[filter[1]], b = q.results[filter[2]];
      if (!a || !b) return false;
      return {both: a.correct && b.correct, only_a: a.correct && !b.correct,
              only_b: !a.correct && b.correct, neither: !a.correct && !b.correct}[filter[3]];
    }
    return names.some(function (m) {
      var o = outcome(q.results[m]);
      if (kind === "ok" || kind === "wrong") return o === kind;
      if (kind === "failed") return o !== "ok" && o !== "wrong" && o !== "none";
      return o === filter[1];
    });
  }

  function applyFilters(keepSelection) {
    var filter = JSON.parse(outcomeSel.value || "[]"), method = methodSel.value;
    var needle = searchEl.value.trim().toLowerCase();
    var current = selected >= 0 ? shown[selected] : null;
    shown = Q.filter(function (q) {
      return (!needle || q._lower.indexOf(needle) >= 0) && matches(q, filter, method);
    });
    countEl.textContent = shown.length + " of " + Q.length + " questions";
    spacer.style.height = (shown.length * ROW) + "px";
    selected = keepSelection && current ? shown.indexOf(current) : -1;
    if (selected < 0 && shown.length) selected = 0;
    renderRows(true);
    renderDetail();
  }

  var drawn = {};
  function renderRows(force) {
    if (force) { spacer.textContent = ""; drawn = {}; }
    var first = Math.max(0, Math.floor(listEl.scrollTop / ROW) - 10);
    var last = Math.min(shown.length, Math.ceil((listEl.scrollTop + listEl.clientHeight) / ROW) + 10);
    Object.keys(drawn).forEach(function (k) {
      if (k < first || k >= last) { spacer.removeChild(drawn[k]); delete drawn[k]; }
    });
    for (var i = first; i < last; i++) {
      if (drawn[i]) { drawn[i].classList.toggle("sel", i === selected); continue; }
      drawn[i] = rowNode(i);
      spacer.appendChild(drawn[i]);
    }
  }

  function chip(r, label) {
    var o = outcome(r), cls = o === "ok" ? "ok" : o === "wrong" ? "wrong" : o === "none" ? "none" : "fail";
    var text = o === "ok" ? "✓ " : o === "wrong" ? "✗ " : o === "none" ? "– " : "⚠ ";
    var c = el("span", "chip " + cls, text + (label || (o === "ok" || o === "wrong" ? r.answer : o)));
    c.title = (label ? label + ": " : "") + (o === "ok" ? "correct" : o === "wrong" ? "wrong" : o === "none" ?
      "not run" : "failed: " + o) + (r && r.answer != null ? " — answer " + r.answer : "");
    return c;
  }

  function rowNode(i) {
    var q = shown[i], row = el("div", "row" + (i === selected ? " sel" : ""));
    row.style.top = (i * ROW) + "px";
    row.dataset.id = q.id;
    add(row, el("span", "idx", q.index + 1), el("span", "q", q.question));
    var chips = el("span", "chips");
    M.forEach(function (m) { add(chips, chip(q.results[m], M.length > 1 ? m : null)); });
    add(row, chips);
    row.addEventListener("click", function () { select(i); });
    return row;
  }

  function select(i) {
    if (i < 0 || i >= shown.length) return;
    selected = i;
    var top = i * ROW;
    if (top < listEl.scrollTop) listEl.scrollTop = top;
    else if (top + ROW > listEl.scrollTop + listEl.clientHeight) listEl.scrollTop = top + ROW - listEl.clientHeight;
    renderRows(false);
    renderDetail();
  }

  function pre(text, cls) { return el("pre", cls, text); }
  function label(text) { return el("div", "label", text); }

  function renderTrajectory(t, parent) {
    (t.steps || []).forEach(function (s) {
      var bad = s.status === "malformed" || s.status === "unknown_tool" || s.status === "bad_arguments";
      var step = el("div", "step" + (bad ? " bad" : ""));
      add(step, label("Thought " + s.n), pre(s.thought || "(none)"));
      var action = s.action ? s.action + "[" + (s.argument == null ? "" : s.argument) + "]" : "(no valid action)";
      add(step, label("Action " + s.n + (s.reasked ? " (re-asked)" : "")), pre(action));
      if (s.error) add(step, el("div", "err", s.error));
      if (s.observation != null) add(step, label("Observation " + s.n), pre(s.observation));
      add(parent, step);
    });
    add(parent, el("div", "meta", t.finished ? "finished with Finish[…]" :
      t.forced_finish ? "ran out of steps (forced finish)" : "did not finish"));
    if (t.fallback) {
      add(parent, label("fallback: " + (t.fallback.method || "")));
      var box = el("div", "card");
      renderBody(t.fallback, box);
      add(parent, box);
    }
  }

  function renderBody(r, parent) {
    if (r.error) add(parent, el("div", "err", r.error));
    if (r.trajectory) renderTrajectory(r.trajectory, parent);
    if (r.program) {
      add(parent, label("Program"), pre(r.program));
      var x = r.execution;
      if (x) {
        if (x.stdout) add(parent, label("stdout" + (x.stdout_truncated ? " (truncated)" : "")), pre(x.stdout));
        var value = JSON.stringify(x.value === undefined ? null : x.value);
        add(parent, label("Sandbox"), x.ok ? pre("returned " + value) : pre(x.error || "failed", "err"));
      }
    }
    if (r.votes) {
      var votes = el("div", "votes");
      Object.keys(r.votes).sort(function (a, b) { return r.votes[b] - r.votes[a]; })
        .forEach(function (k) { add(votes, el("span", null, k + " × " + r.votes[k])); });
      add(parent, label("Vote"), votes);
    }
    if (r.samples) {
      add(parent, label("Samples (" + r.samples.length + ")"));
      r.samples.forEach(function (s, i) {
        var d = el("details"), sum = el("summary", null, "sample " + (i + 1) + ": " +
          (s.answer != null ? s.answer : "no answer") +
          (s.failure ? " — " + (DATA.failure_labels[s.failure] || s.failure) : ""));
        add(d, sum);
        d.addEventListener("toggle", function () {
          if (d.open && d.childNodes.length === 1) renderBody(s, d);
        });
        add(parent, d);
      });
    } else if (!r.trajectory && !r.program && r.completions) {
      r.completions.forEach(function (c, i) {
        add(parent, label(r.completions.length > 1 ? "Completion " + (i + 1) : "Completion"), pre(c));
      });
    }
    if ((r.trajectory || r.program) && r.completions) {
      var raw = el("details");
      add(raw, el("summary", null, "raw completions (" + r.completions.length + ")"));
      r.completions.forEach(function (c) { add(raw, pre(c)); });
      add(parent, raw);
    }
  }

  function renderDetail() {
    detailEl.textContent = "";
    if (selected < 0 || !shown.length) {
      add(detailEl, el("div", "empty", "No question matches these filters."));
      return;
    }
    var q = shown[selected];
    add(detailEl, el("div", "meta", "#" + (q.index + 1) + " · id " + q.id +
      (q.repeat_of ? " · repeats the question of " + q.repeat_of : "")));
    add(detailEl, el("div", "qtext", q.question));
    var gold = el("div");
    add(gold, el("b", null, "Gold: "), el("span", null, q.gold));
    add(detailEl, gold);
    var cards = el("div", "cards");
    M.forEach(function (m) {
      var r = q.results[m], card = el("div", "card" + (methodSel.value === m ? " focus" : ""));
      var h = el("h3", null, m + " ");
      add(h, chip(r));
      add(card, h);
      if (r) {
        add(card, el("div", "meta", "answer: " + (r.answer != null ? r.answer : "(none)") +
          (r.tokens ? " · " + r.tokens + " tokens" : "") + (r.seconds ? " · " + r.seconds.toFixed(2) + " s" : "")));
        renderBody(r, card);
      }
      add(cards, card);
    });
    add(detailEl, cards);
  }

  listEl.addEventListener("scroll", function () { window.requestAnimationFrame(function () { renderRows(false); }); });
  window.addEventListener("resize", function () { renderRows(false); });
  methodSel.addEventListener("change", function () { applyFilters(true); });
  outcomeSel.addEventListener("change", function () { applyFilters(true); });
  searchEl.addEventListener("input", function () { applyFilters(true); });
  document.addEventListener("keydown", function (ev) {
    if (ev.target === searchEl || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowDown" || ev.key === "j") { select(selected + 1); ev.preventDefault(); }
    if (ev.key === "ArrowUp" || ev.key === "k") { select(selected - 1); ev.preventDefault(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.pairfilter"), function (b) {
    b.addEventListener("click", function () {
      outcomeSel.value = b.dataset.filter;
      methodSel.value = "";
      applyFilters(false);
      listEl.scrollIntoView({behavior: "smooth", block: "start"});
    });
  });
  applyFilters(false);
})();
"""
