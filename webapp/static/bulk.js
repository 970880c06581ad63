// A bulk action's progress page (webapp/templates/bulk.html): polls its JSON until the job is done,
// then shows the result and, where it can be undone, the Undo button while its seconds last.
"use strict";
(function () {
  const card = document.getElementById("bulk");
  if (!card) return;
  const $ = (id) => document.getElementById(id);
  const undoForm = $("bulk-undo-form");
  let undoTimer = null;

  function showUndo(seconds) {
    if (!undoForm) return;
    clearInterval(undoTimer);
    let left = seconds;
    const tick = () => {
      if (left <= 0) { undoForm.hidden = true; clearInterval(undoTimer); return; }
      undoForm.hidden = false;
      $("bulk-undo-left").textContent = `${Math.ceil(left)} s left`;
      left -= 0.25;
    };
    tick();
    undoTimer = setInterval(tick, 250);
  }

  function render(p) {
    const done = p.applied + p.skipped;
    $("bulk-bar").max = Math.max(p.total, 1);
    $("bulk-bar").value = done;
    $("bulk-applied").textContent = p.applied;
    $("bulk-skipped").textContent = p.skipped;
    $("bulk-state").textContent = p.state;
    card.dataset.state = p.state;
    const finished = p.state === "done" || p.state === "undone" || p.state === "failed";
    $("bulk-status").textContent = finished
      ? `Done: ${p.applied} applied, ${p.skipped} skipped`
      : `${done} of ${p.total} done`;
    const reasons = $("bulk-reasons");
    reasons.replaceChildren(...p.skipped_reasons.map((r) => {
      const li = document.createElement("li");
      li.textContent = `${r.count} ${r.stage === "undo" ? "not undone" : "skipped"}: ${r.reason}`;
      return li;
    }));
    if (p.state === "done" && p.undo_seconds_left > 0) showUndo(p.undo_seconds_left);
    return finished;
  }

  async function poll() {
    for (let i = 0; i < 2400; i++) {  // at most ten minutes of polling
      let p;
      try {
        const r = await fetch(card.dataset.progressUrl, { headers: { Accept: "application/json" } });
        if (!r.ok) return;
        p = await r.json();
      } catch (e) { return; }
      if (render(p)) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  const initial = JSON.parse($("bulk-initial").textContent);
  if (!render(initial)) poll();
})();
