"""The static trace browser: ONE self-contained `traces.html` (inline CSS and JS, no server, no external assets).

Every sample is a table row: the prompt, the target, and per model the completion, parsed label, each reward and
the judge's verdict and rationale. Completions are untrusted: every piece of sample text goes through
`html.escape` and lands in element text or quoted attributes only; no sample text is ever placed inside the
<script>, so a completion containing `<script>` or `</script>` is shown, not run.

Filtering works on data attributes each row carries (`data-disagree`, `data-fail`, `data-intent`), so it can be
checked without a browser. The page honours a URL hash, e.g. `traces.html#filter=disagree&intent=track_order`
(used by `benchmarks/check_trace_browser.sh` for headless screenshots). Column headers sort on click.
"""

from __future__ import annotations

from html import escape
from typing import Any

from rlft.report.summary import decoding_text, headline_rows

CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:18px}h2{font-size:15px;margin-top:20px}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f0f0f0;cursor:pointer;position:sticky;top:0}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.m.fail{background:#fff3f3}tr.disagree td.idx{border-left:4px solid #e69f00}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12px/1.3 ui-monospace,monospace;
max-height:12em;overflow:auto}
.ok{color:#137333}.bad{color:#b3261e}.muted{color:#777}
.bar{margin:8px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.curves{display:flex;gap:12px;flex-wrap:wrap}
svg.curve{border:1px solid #ddd;background:#fff}svg .ax{stroke:#888}svg .ln{fill:none;stroke:#1f77b4;stroke-width:2}
svg .pt{fill:#1f77b4}svg text{font:10px sans-serif;fill:#444}svg .yl{text-anchor:end}
table.head td,table.head th{width:auto}
"""

# Nothing may be fetched: no network, no external files (inline style and script only).
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

# Static: no sample text is interpolated into this string.
JS = """
(function(){
  var rows = Array.prototype.slice.call(document.querySelectorAll('#traces tbody tr'));
  var show = document.getElementById('show'), intent = document.getElementById('intent');
  var count = document.getElementById('count');
  function visible(tr, mode, label){
    if (mode === 'disagree' && tr.dataset.disagree !== '1') return false;
    if (mode === 'fail' && tr.dataset.fail !== '1') return false;
    if (label && tr.dataset.intent !== label) return false;
    return true;
  }
  function apply(){
    var n = 0;
    rows.forEach(function(tr){
      var v = visible(tr, show.value, intent.value);
      tr.style.display = v ? '' : 'none'; if (v) n++;
    });
    count.textContent = n + ' of ' + rows.length + ' samples shown';
    var h = 'filter=' + encodeURIComponent(show.value) +
            (intent.value ? '&intent=' + encodeURIComponent(intent.value) : '');
    if (location.hash.slice(1) !== h) { try { history.replaceState(null, '', '#' + h); } catch (e) {} }
  }
  function fromHash(){
    var params = {};
    location.hash.replace(/^#/, '').split('&').forEach(function(kv){
      var i = kv.indexOf('='); if (i > 0) params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1));
    });
    if (params.filter && ['all','disagree','fail'].indexOf(params.filter) >= 0) show.value = params.filter;
    if (params.intent !== undefined) intent.value = params.intent;
  }
  show.addEventListener('change', apply); intent.addEventListener('change', apply);
  window.addEventListener('hashchange', function(){ fromHash(); apply(); });
  document.querySelectorAll('#traces th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = !th.classList.contains('sorted-asc');
      document.querySelectorAll('#traces th').forEach(function(o){ o.classList.remove('sorted-asc','sorted-desc'); });
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      var body = document.querySelector('#traces tbody');
      rows.sort(function(a, b){
        var x = a.children[col].dataset.v, y = b.children[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function(tr){ body.appendChild(tr); });
    });
  });
  fromHash(); apply();
})();
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def headline_table(models: list[dict]) -> str:
    header, rows = headline_rows(models)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="head"><tr>{head}</tr>{body}</table>'


def _model_cell(m: dict) -> str:
    status = m.get("predicted")
    parsed = (f'<span class="{"ok" if m.get("correct") else "bad"}">{escape(str(status))}</span>'
              if status is not None else f'<span class="bad">({escape(str(m.get("parse_status") or "none"))})</span>')
    rewards = " ".join(f"{escape(k)}={escape(_fmt(v))}" for k, v in m.get("rewards", {}).items())
    judge = ""
    if m.get("judge_status") is not None:
        judge = f'<div class="muted">judge: {escape(str(m["judge_status"]))}'
        if m.get("policy") is not None:
            judge += f" verdict={escape(_fmt(m['policy']))}"
        judge += "</div>"
        if m.get("rationale"):
            judge += f"<pre>{escape(str(m['rationale']))}</pre>"
    sort_value = "" if m.get("correct") is None else str(int(m["correct"]))
    cls = "m fail" if m.get("fail") else "m"
    return (f'<td class="{cls}" data-v="{escape(sort_value)}"><pre>{escape(m["completion"])}</pre>'
            f"<div>parsed: {parsed}</div><div class=\"muted\">{rewards}</div>{judge}</td>")


def render(title: str, models: list[dict], samples: list[dict], curves_svg: list[str], meta: dict[str, Any]) -> str:
    """The whole page. `models`: summaries (rlft.report.summary.summarise); `samples`: rlft.report.files.samples."""
    names = [m["name"] for m in models]
    intents = sorted({s["intent"] for s in samples if s.get("intent")})
    options = "".join(f'<option value="{escape(i)}">{escape(i)}</option>' for i in intents)
    head = "<th>#</th><th>prompt</th><th>target</th>" + "".join(f"<th>{escape(n)}</th>" for n in names)
    body = []
    for s in samples:
        cls = " ".join(c for c, on in (("disagree", s["disagree"]), ("fail", s["fail"])) if on)
        prompt = s["input"] if isinstance(s["input"], str) else "\n".join(
            f"[{m.get('role', '')}] {m.get('content', '')}" for m in s["input"])
        cells = [f'<td class="idx" data-v="{s["index"]}">{s["index"]}</td>',
                 f'<td data-v="{escape(prompt[-200:])}"><pre>{escape(prompt)}</pre></td>',
                 f'<td data-v="{escape(str(s.get("target") or ""))}">{escape(str(s.get("target") or ""))}</td>']
        cells += [_model_cell(m) for m in s["models"]]
        body.append(f'<tr class="{cls}" data-disagree="{int(s["disagree"])}" data-fail="{int(s["fail"])}" '
                    f'data-intent="{escape(str(s.get("intent") or ""))}">{"".join(cells)}</tr>')
    settings = "".join(f"<li><b>{escape(m['name'])}</b>: {escape(m['source'])} — decoding "
                       f"<code>{escape(decoding_text(m.get('decoding')))}</code></li>" for m in models)
    info = "".join(f"<li>{escape(str(k))}: {escape(str(v))}</li>" for k, v in meta.items())
    curves = (f'<h2>Training curves</h2><div class="curves">{"".join(curves_svg)}</div>' if curves_svg else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body><h1>{escape(title)}</h1>
<h2>Headline (95% bootstrap intervals)</h2>{headline_table(models)}
<ul>{settings}{info}</ul>
{curves}
<h2>Samples</h2>
<div class="bar"><label>show <select id="show"><option value="all">all</option>
<option value="disagree">disagreements between models</option><option value="fail">failures (any model)</option>
</select></label><label>intent <select id="intent"><option value="">all intents</option>{options}</select></label>
<span id="count">{len(samples)} of {len(samples)} samples shown</span></div>
<table id="traces"><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(body)}
</tbody></table>
<script>{JS}</script></body></html>
"""
