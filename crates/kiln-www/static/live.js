// Live updates for kiln's pages, without a build step. A page names the event patterns it
// follows (body[data-live]) and the parts of it that change (elements with data-live-region and
// an id). One server-sent events stream carries the events; after one, the page is fetched again
// and only those parts are replaced, so what is typed into a form is kept. The browser resumes
// the stream by itself after a cut, and the server replays the durable events it missed; the
// page is read once more after each handshake for the rest.
//
// A log that is still being written is followed: new lines are appended as text, never as markup.
"use strict";
(function () {
  const root = document.body.dataset.root || "/";
  const topics = (document.body.dataset.live || "").split(" ").filter(Boolean);
  const pre = document.getElementById("log");
  const following = pre && pre.dataset.live === "true";
  if (following) topics.push("logs/" + pre.dataset.logid + "/*");
  if (!topics.length || !window.EventSource) return;

  let refreshTimer = null;
  async function refresh() {
    refreshTimer = null;
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const region of document.querySelectorAll("[data-live-region]")) {
      const fresh = doc.getElementById(region.id);
      if (fresh) region.replaceWith(document.importNode(fresh, true));
    }
    document.dispatchEvent(new CustomEvent("kiln:refreshed"));
  }

  // A failed refresh (the master restarting, say) leaves the page as it is until the next event.
  function refreshOrWarn() {
    refresh().catch((e) => {
      refreshTimer = null;
      console.warn("refreshing the page:", e);
    });
  }

  function appendLines(content, isStdio) {
    const lines = content.split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    let n = Number(pre.dataset.next);
    for (const raw of lines) {
      const stream = isStdio ? raw.charAt(0) : "o";
      const span = document.createElement("span");
      span.className = "line " + (stream === "e" || stream === "h" ? stream : "o");
      span.id = "L" + n;
      const a = document.createElement("a");
      a.className = "n";
      a.href = "#L" + n;
      a.textContent = String(n + 1);
      span.appendChild(a);
      span.appendChild(document.createTextNode(isStdio ? raw.slice(1) : raw));
      pre.appendChild(span);
      n += 1;
    }
    pre.dataset.next = String(n);
  }

  // Log fetches run one after another, each from where the last one stopped.
  let logQueue = Promise.resolve();
  function followLog(log) {
    logQueue = logQueue.then(async () => {
      const next = Number(pre.dataset.next);
      if (log.num_lines > next) {
        const url = root + "api/v2/logs/" + log.logid + "/contents?offset=" + next + "&limit=" + (log.num_lines - next);
        const body = await fetch(url).then((r) => r.json());
        const chunk = body.logchunks && body.logchunks[0];
        if (chunk) appendLines(chunk.content, log.type === "s");
      }
      if (log.complete) pre.dataset.live = "false";
      document.dispatchEvent(new CustomEvent("kiln:log", { detail: log }));
    }).catch((e) => console.warn("following the log:", e));
  }

  const url = root + "sse/listen?" + topics.map((t) => "path=" + encodeURIComponent(t)).join("&");
  const source = new EventSource(url);
  // The stream delivers what happens from its handshake on; what happened between the page's
  // rendering (or a cut) and the handshake is caught up by reading the page, or the log, once.
  source.addEventListener("handshake", () => {
    if (following) {
      fetch(root + "api/v2/logs/" + pre.dataset.logid)
        .then((r) => r.json())
        .then((body) => body.logs && body.logs[0] && followLog(body.logs[0]))
        .catch((e) => console.warn("catching up the log:", e));
    }
    if (document.querySelector("[data-live-region]") && !refreshTimer) {
      refreshTimer = setTimeout(refreshOrWarn, 0);
    }
  });
  source.addEventListener("event", (e) => {
    const data = JSON.parse(e.data);
    if (following && data.key[0] === "logs" && String(data.message.logid) === pre.dataset.logid) {
      followLog(data.message);
      return;
    }
    if (!refreshTimer) refreshTimer = setTimeout(refreshOrWarn, 250);
  });
})();
