"""The browse page's inline style, script and icons, and the policy that allows only them.

Nothing is loaded from anywhere: the policy is `default-src 'none'`, this
style and this script allowed by their SHA-256, images and media from the
server itself (thumbnails and players of the listed files), requests to it
(uploads), and forms that submit to it (`?q=`). The icons are one inline
SVG sprite, used by reference.

The page works without the script: sorting, paging and `?q=` are links and
a form. The script adds the instant filter of the rows shown, uploads (by
picker or drag and drop, each with its SHA-256 as `Content-Digest`),
and local times.
"""

from __future__ import annotations

import base64
import hashlib

# Above this many bytes a file is sent without a Content-Digest: SubtleCrypto
# digests a whole buffer, so the page would hold the file in memory.
DIGEST_MAX_BYTES = 256 * 1024 * 1024

STYLE = """
:root{color-scheme:light dark;--bg:#fff;--fg:#1d2329;--muted:#5b6876;--line:#e1e6eb;
--panel:#f5f7f9;--link:#0b5cad;--hover:#eef3f8;--dir:#c58a12;--img:#2f8f5b;--vid:#b23a6b;
--aud:#6b4fbb;--arc:#8a5a2b;--txt:#4a5a6a;--ok:#1a7f37;--bad:#c62828}
@media (prefers-color-scheme:dark){:root{--bg:#121619;--fg:#e4eaf0;--muted:#98a4b0;
--line:#2a3138;--panel:#1a2026;--link:#79b8ff;--hover:#1f272e;--dir:#e3b341;--img:#56d364;
--vid:#ff7bb0;--aud:#b9a2ff;--arc:#d0a070;--txt:#a8b4c0;--ok:#4ac26b;--bad:#ff7b72}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1100px;padding:1rem 1.25rem 3rem;background:var(--bg);
color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--link);text-decoration:none}
a:hover,a:focus{text-decoration:underline}
.sprite{position:absolute;width:0;height:0;overflow:hidden}
svg.i{width:20px;height:20px;flex:none;fill:none;stroke:currentColor;stroke-width:1.8;
stroke-linecap:round;stroke-linejoin:round;vertical-align:-4px}
.dir{color:var(--dir)}.img{color:var(--img)}.vid{color:var(--vid)}.aud{color:var(--aud)}
.arc{color:var(--arc)}.txt,.file{color:var(--txt)}
nav.crumbs{font-size:1.25rem;font-weight:600;margin:.2rem 0 .3rem;overflow-wrap:anywhere}
nav.crumbs .sep{color:var(--muted);margin:0 .3rem;font-weight:400}
nav.crumbs a[aria-current]{color:var(--fg)}
nav.crumbs a.top{display:inline-flex;gap:.4rem;align-items:center}
.meta{color:var(--muted);margin:.1rem 0 .8rem;font-size:.92rem}
form.find{display:flex;gap:.5rem;margin:.6rem 0;flex-wrap:wrap}
input,button{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);
border-radius:6px;padding:.3rem .55rem}
input[type=search]{flex:1;min-width:10rem;max-width:28rem}
button{cursor:pointer;background:var(--panel)}
table{border-collapse:collapse;width:100%}
th,td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left;
vertical-align:middle}
th{font-weight:600;white-space:nowrap;font-size:.9rem}
th a{color:var(--fg)}
th[aria-sort=ascending] a::after{content:" \\25B2";font-size:.7em}
th[aria-sort=descending] a::after{content:" \\25BC";font-size:.7em}
td.n{overflow-wrap:anywhere;width:100%}
td.n .row{display:flex;gap:.55rem;align-items:center}
td.s,td.m,th.s,th.m{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.s,td.m{color:var(--muted);font-size:.9rem}
tbody tr:hover td{background:var(--hover)}
img.thumb{width:40px;height:40px;object-fit:cover;border-radius:4px;flex:none;
background:var(--panel)}
details.play{margin:.3rem 0 0 2.1rem}
details.play summary{cursor:pointer;color:var(--muted);font-size:.88rem}
details.play video{display:block;max-width:100%;max-height:60vh;margin-top:.4rem;
border-radius:6px;background:#000}
details.play audio{display:block;width:100%;max-width:28rem;margin-top:.4rem}
nav.pages{display:flex;gap:1rem;align-items:center;justify-content:center;margin:1rem 0;
flex-wrap:wrap}
nav.pages .off{color:var(--muted)}
#upload{border:1px dashed var(--line);border-radius:8px;padding:.6rem .8rem;margin:.8rem 0;
background:var(--panel)}
#upload[hidden],tr[hidden]{display:none}
#upload .fields{display:flex;gap:.6rem 1rem;flex-wrap:wrap;align-items:center}
#upload.over{border-color:var(--link);background:var(--hover)}
#uploads{list-style:none;margin:.5rem 0 0;padding:0}
#uploads li{display:flex;gap:.6rem;align-items:center;flex-wrap:wrap;padding:.15rem 0}
#uploads .name{overflow-wrap:anywhere;min-width:8rem}
#uploads progress{width:10rem}
#uploads .ok{color:var(--ok)}#uploads .bad{color:var(--bad)}
.empty{color:var(--muted);padding:1rem .5rem}
footer{margin-top:2rem;color:var(--muted);font-size:.85rem}
@media (max-width:600px){body{padding:.6rem .6rem 2rem;font-size:14px}
th.m,td.m{display:none}img.thumb{width:32px;height:32px}nav.crumbs{font-size:1.1rem}}
"""

SCRIPT = """
"use strict";
(function () {
  var q = document.getElementById("q");
  var table = document.getElementById("entries");
  var shown = document.getElementById("shown");
  if (q && table) {
    var rows = Array.prototype.filter.call(table.tBodies[0].rows, function (row) {
      return row.dataset.name !== undefined;
    });
    var names = rows.map(function (row) { return row.dataset.name.toLowerCase(); });
    var filter = function () {
      var text = q.value.toLowerCase(), count = 0;
      rows.forEach(function (row, i) {
        var ok = !text || names[i].indexOf(text) >= 0;
        row.hidden = !ok;
        if (ok) { count += 1; }
      });
      shown.textContent = text ? count + " of " + rows.length + " on this page" : "";
    };
    q.addEventListener("input", filter);
    document.addEventListener("keydown", function (e) {
      if (e.key === "/" && document.activeElement !== q) { e.preventDefault(); q.focus(); }
    });
  }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    t.title = new Date(t.getAttribute("datetime")).toLocaleString();
  });
  var panel = document.getElementById("upload");
  if (!panel) { return; }
  var KEY = "ferryman-token";
  var base = panel.dataset.base, most = Number(panel.dataset.digestMax);
  var token = document.getElementById("token"), replace = document.getElementById("replace");
  var list = document.getElementById("uploads"), picker = document.getElementById("files");
  token.value = sessionStorage.getItem(KEY) || "";
  token.addEventListener("input", function () {
    if (token.value) { sessionStorage.setItem(KEY, token.value); }
    else { sessionStorage.removeItem(KEY); }
  });
  document.getElementById("forget").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    token.value = "";
  });
  var WHY = {
    400: "refused", 401: "a token is needed: type it above",
    403: "this token may not write here", 404: "no such place",
    409: "something else is in the way (a directory?)", 411: "the size must be known",
    412: "a file of that name is there: tick Replace to overwrite it",
    413: "too large for this server", 503: "the server is busy: try again",
    507: "the server has no room for it"
  };
  var queue = [], busy = false, sent = 0;
  var b64 = function (buffer) {
    var bytes = new Uint8Array(buffer), text = "";
    for (var i = 0; i < bytes.length; i += 32768) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 32768));
    }
    return btoa(text);
  };
  var digestOf = function (file) {
    if (!window.crypto || !crypto.subtle) {
      return Promise.resolve([null, "no digest: the browser allows it only on https or localhost"]);
    }
    if (file.size > most) {
      return Promise.resolve([null, "no digest: larger than " + most + " bytes"]);
    }
    return file.arrayBuffer().then(function (buffer) {
      return crypto.subtle.digest("SHA-256", buffer);
    }).then(function (d) { return ["sha-256=:" + b64(d) + ":", ""]; });
  };
  var send = function (file) {
    var item = document.createElement("li");
    var name = document.createElement("span"), bar = document.createElement("progress");
    var state = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    bar.max = 1;
    bar.value = 0;
    state.textContent = "hashing";
    item.append(name, bar, state);
    list.append(item);
    var finish = function (ok, text) {
      state.className = ok ? "ok" : "bad";
      state.textContent = text;
      item.dataset.state = ok ? "done" : "failed";
      if (ok) { sent += 1; }
      busy = false;
      next();
    };
    digestOf(file).then(function (found) {
      var digest = found[0], note = found[1];
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", base + encodeURIComponent(file.name));
      xhr.setRequestHeader("Accept", "application/json");
      if (token.value) { xhr.setRequestHeader("Authorization", "Bearer " + token.value); }
      if (digest) { xhr.setRequestHeader("Content-Digest", digest); }
      if (!replace.checked) { xhr.setRequestHeader("If-None-Match", "*"); }
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { bar.value = e.loaded / e.total; }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          bar.value = 1;
          finish(true, digest ? "stored, SHA-256 verified" : "stored (" + note + ")");
          return;
        }
        var detail = "";
        try { detail = JSON.parse(xhr.responseText).detail || ""; } catch (e) { detail = ""; }
        var why = WHY[xhr.status] || "failed";
        finish(false, xhr.status + ": " + why + (detail ? " (" + detail + ")" : ""));
      });
      xhr.addEventListener("error", function () { finish(false, "the connection failed"); });
      state.textContent = "sending";
      xhr.send(file);
    }, function () { finish(false, "the file could not be read"); });
  };
  var next = function () {
    if (busy) { return; }
    var file = queue.shift();
    if (file) { busy = true; send(file); return; }
    if (sent) { document.getElementById("reload").hidden = false; }
  };
  var add = function (files) {
    Array.prototype.forEach.call(files, function (f) { queue.push(f); });
    next();
  };
  picker.addEventListener("change", function () { add(picker.files); picker.value = ""; });
  document.addEventListener("dragover", function (e) {
    e.preventDefault();
    panel.classList.add("over");
  });
  document.addEventListener("dragleave", function () { panel.classList.remove("over"); });
  document.addEventListener("drop", function (e) {
    e.preventDefault();
    panel.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) { add(e.dataTransfer.files); }
  });
  panel.hidden = false;
})();
"""

_ICON_PATHS = {
    "dir": '<path d="M3 6.5A1.5 1.5 0 0 1 4.5 5h4l2 2h9A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1'
    '-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"/>',
    "file": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4"/>',
    "txt": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4M9 12h6M9 15h6M9 18h4"/>',
    "img": '<rect x="3" y="4" width="18" height="16" rx="2"/><circle cx="9" cy="10" r="2"/>'
    '<path d="M21 16l-5-5-9 9"/>',
    "vid": '<rect x="3" y="6" width="13" height="12" rx="2"/><path d="M16 10l5-3v10l-5-3z"/>',
    "aud": '<path d="M9 18V5l11-2v13"/><circle cx="6.5" cy="18" r="2.5"/>'
    '<circle cx="17.5" cy="16" r="2.5"/>',
    "arc": '<rect x="3" y="4" width="18" height="5" rx="1"/><path d="M5 9v11h14V9M10 13h4"/>',
    "up": '<path d="M12 19V5M5 12l7-7 7 7"/>',
    "home": '<path d="M3 11l9-8 9 8M5 9.5V21h14V9.5"/>',
}
ICONS = frozenset(_ICON_PATHS)
SPRITE = (
    '<svg class="sprite" aria-hidden="true">'
    + "".join(
        f'<symbol id="i-{name}" viewBox="0 0 24 24">{paths}</symbol>'
        for name, paths in _ICON_PATHS.items()
    )
    + "</svg>"
)


def icon(name: str) -> str:
    """An icon of the sprite, coloured by its kind's class."""
    return f'<svg class="i {name}" aria-hidden="true"><use href="#i-{name}"/></svg>'


def _hash_source(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_hash_source(STYLE)}; script-src {_hash_source(SCRIPT)}; "
    "img-src 'self'; media-src 'self'; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
