// The dev mailbox list: "select all shown", the count selected, and a confirmation before deleting.
(() => {
  "use strict";
  const form = document.getElementById("devmail-list");
  if (!form) return;
  const boxes = () => [...form.querySelectorAll("input[data-devmail-select]")];
  const all = form.querySelector("[data-select-all]");
  const count = document.getElementById("devmail-selected");
  const update = () => {
    const n = boxes().filter((b) => b.checked).length;
    count.textContent = n ? `${n} selected` : "";
    all.checked = n > 0 && n === boxes().length;
    all.indeterminate = n > 0 && n < boxes().length;
  };
  all.addEventListener("change", () => {
    boxes().forEach((b) => { b.checked = all.checked; });
    update();
  });
  form.addEventListener("change", (event) => {
    if (event.target.matches("[data-devmail-select]")) update();
  });
  form.addEventListener("submit", (event) => {
    const n = boxes().filter((b) => b.checked).length;
    if (n === 0) {
      event.preventDefault();
      count.textContent = "Select at least one message.";
    } else if (!window.confirm(`Delete ${n} message(s)?`)) {
      event.preventDefault();
    }
  });
  update();
})();
