"""The HTML report's inline style and script, and the Content-Security-Policy that allows only them.

The page loads nothing: its policy is `default-src 'none'`, with this style
and this script allowed by their SHA-256. So even a name that got past the
escaping could neither run a script nor make a request.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2329;--muted:#5b6876;--line:#d6dde4;
--panel:#f4f6f8;--ok:#1a7f37;--bad:#c62828;--k-missing:#d1364b;--k-zero_byte:#b7791f;
--k-size_mismatch:#dd6b20;--k-digest_mismatch:#8e44ad;--k-unexpected:#0b7a8a;
--k-unreadable:#66707a}
@media (prefers-color-scheme:dark){:root{--bg:#121619;--fg:#e4eaf0;--muted:#98a4b0;
--line:#2f363d;--panel:#1b2127;--ok:#4ac26b;--bad:#ff7b72;--k-missing:#ff6b81;
--k-zero_byte:#f2c14e;--k-size_mismatch:#ff9f43;--k-digest_mismatch:#c58af9;
--k-unexpected:#3cc8da;--k-unreadable:#a7b1bb}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1200px;padding:1rem 1.25rem 3rem;background:var(--bg);
color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.5rem;margin:.3rem 0 .4rem}
h2{font-size:1.15rem;margin:1.8rem 0 .7rem;padding-bottom:.3rem;border-bottom:1px solid var(--line)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
.verdict{display:inline-block;padding:.15rem .7rem;border-radius:8px;font-weight:600}
.verdict.ok{color:var(--ok);border:1px solid var(--ok)}
.verdict.bad{color:var(--bad);border:1px solid var(--bad)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.2rem;margin:0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(290px,1fr));gap:1rem}
figure.chart{margin:0;padding:.8rem;background:var(--panel);border:1px solid var(--line);
border-radius:8px}
figure.chart figcaption{font-weight:600;overflow-wrap:anywhere;margin-bottom:.4rem}
figure.chart figcaption span{display:block;font-weight:400;color:var(--muted);font-size:.9em}
svg.bars{display:block;width:100%;height:auto}
svg.bars text{fill:var(--fg);font-size:13px;font-family:inherit}
svg.bars text.zero{fill:var(--muted)}
svg.bars line{stroke:var(--line)}
.k-missing{fill:var(--k-missing);background:var(--k-missing)}
.k-zero_byte{fill:var(--k-zero_byte);background:var(--k-zero_byte)}
.k-size_mismatch{fill:var(--k-size_mismatch);background:var(--k-size_mismatch)}
.k-digest_mismatch{fill:var(--k-digest_mismatch);background:var(--k-digest_mismatch)}
.k-unexpected{fill:var(--k-unexpected);background:var(--k-unexpected)}
.k-unreadable{fill:var(--k-unreadable);background:var(--k-unreadable)}
.swatch{display:inline-block;width:.75em;height:.75em;border-radius:2px;margin-right:.4em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{padding:.32rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--panel);font-weight:600;white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.zero{color:var(--muted)}
td.key{overflow-wrap:anywhere;min-width:14rem}
td.store{overflow-wrap:anywhere;min-width:9rem}
td.bad,span.bad{color:var(--bad)}
td.bad{overflow-wrap:anywhere;min-width:9rem}
td.good{color:var(--ok)}
tbody tr:hover td{background:var(--panel)}
details.kind{margin:.9rem 0;border:1px solid var(--line);border-radius:8px;
padding:.2rem .7rem .5rem}
details.kind>summary{cursor:pointer;font-weight:600;padding:.35rem 0}
details.kind>summary .count{color:var(--muted);font-weight:400}
.note{color:var(--muted);margin:.3rem 0}
#filters{display:flex;flex-wrap:wrap;gap:.6rem 1rem;align-items:center;margin:.6rem 0}
#filters[hidden],details.kind[hidden]{display:none}
#filters label{display:flex;gap:.4rem;align-items:center}
input,select{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);
border-radius:6px;padding:.25rem .45rem;max-width:22rem}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
footer{margin-top:2.5rem;color:var(--muted);font-size:.85rem}
@media (max-width:600px){body{padding:.6rem .7rem 2rem;font-size:14px}
.charts{grid-template-columns:1fr}}
@media print{#filters{display:none}details.kind{break-inside:avoid-page}}
"""

# Filters (store, kind, key text) and sortable columns. Not needed to read the page:
# without it every table is shown whole and in the order the audit found things.
SCRIPT = """
"use strict";
(function () {
  var filters = document.getElementById("filters");
  if (filters) {
    var store = document.getElementById("f-store");
    var kind = document.getElementById("f-kind");
    var text = document.getElementById("f-text");
    var apply = function () {
      var s = store.value, k = kind.value, t = text.value.toLowerCase();
      document.querySelectorAll("details.kind").forEach(function (group) {
        var visible = 0;
        var kindOk = !k || group.dataset.kind === k;
        Array.prototype.forEach.call(group.querySelectorAll("tbody tr"), function (row) {
          var ok = kindOk && (!s || row.dataset.store === s) &&
            (!t || row.cells[0].textContent.toLowerCase().indexOf(t) >= 0);
          row.hidden = !ok;
          if (ok) { visible += 1; }
        });
        group.hidden = visible === 0;
      });
    };
    store.addEventListener("change", apply);
    kind.addEventListener("change", apply);
    text.addEventListener("input", apply);
    filters.hidden = false;
  }
  var sortBy = function (th) {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col], y = b.cells[col];
      if (x.dataset.v !== undefined && y.dataset.v !== undefined) {
        return dir * (Number(x.dataset.v) - Number(y.dataset.v));
      }
      return dir * x.textContent.localeCompare(y.textContent);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  };
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.tabIndex = 0;
    th.title = "sort";
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th); }
    });
  });
})();
"""


def _hash_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_hash_source(STYLE)}; script-src {_hash_source(SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)
