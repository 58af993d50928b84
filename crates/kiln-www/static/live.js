// Live updates for kiln's pages, without a build step: a log that is still being written is
// followed, its new lines appended as text (never as markup).
"use strict";
(function () {
  const root = document.body.dataset.root || "/";

  function appendLines(pre, content, isStdio) {
    const lines = content.split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    let n = Number(pre.dataset.next);
    for (const raw of lines) {
      const stream = isStdio ? raw.charAt(0) : "o";
      const text = isStdio ? raw.slice(1) : raw;
      const span = document.createElement("span");
      span.className = "line " + (stream === "e" || stream === "h" ? stream : "o");
      span.id = "L" + n;
      const a = document.createElement("a");
      a.className = "n";
      a.href = "#L" + n;
      a.textContent = String(n + 1);
      span.appendChild(a);
      span.appendChild(document.createTextNode(text));
      pre.appendChild(span);
      n += 1;
    }
    pre.dataset.next = String(n);
  }

  async function followLog(pre) {
    const id = pre.dataset.logid;
    const isStdio = pre.dataset.type === "s";
    for (;;) {
      const meta = await fetch(root + "api/v2/logs/" + id).then((r) => r.json());
      const log = meta.logs && meta.logs[0];
      if (!log) return;
      const next = Number(pre.dataset.next);
      if (log.num_lines > next) {
        const url = root + "api/v2/logs/" + id + "/contents?offset=" + next + "&limit=" + (log.num_lines - next);
        const body = await fetch(url).then((r) => r.json());
        const chunk = body.logchunks && body.logchunks[0];
        if (chunk) appendLines(pre, chunk.content, isStdio);
      }
      if (log.complete) {
        pre.dataset.live = "false";
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  const pre = document.getElementById("log");
  if (pre && pre.dataset.live === "true") followLog(pre).catch((e) => console.warn("log follow stopped", e));
})();
